"""The command's own process: its prompt exit loses nothing, and its allocator is capped."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_output_and_exit_handlers_survive_the_prompt_exit(tmp_path: Path) -> None:
    marker = tmp_path / "atexit-ran"
    done = _run(
        f"""
        import atexit, logging, sys
        from tfy_audit._cli.main import exit_now
        atexit.register(lambda: open({str(marker)!r}, "w").write("yes"))
        logging.basicConfig(stream=sys.stderr, format="%(message)s")
        for i in range(20000):
            print(f"line {{i}}")  # block-buffered: a pipe, not a terminal
        logging.getLogger("t").warning("last words")
        exit_now(3)
        """
    )
    assert done.returncode == 3
    lines = done.stdout.splitlines()
    assert lines == [f"line {i}" for i in range(20000)]
    assert done.stderr.strip() == "last words"
    assert marker.read_text() == "yes"


def test_a_running_non_daemon_thread_is_waited_for(tmp_path: Path) -> None:
    marker = tmp_path / "thread-finished"
    done = _run(
        f"""
        import threading
        from tfy_audit._cli.main import exit_now
        started = threading.Event()
        def work():
            started.set()
            threading.Event().wait(0.3)
            open({str(marker)!r}, "w").write("finished")
        threading.Thread(target=work).start()
        started.wait(10)
        exit_now(0)
        """
    )
    assert done.returncode == 0, done.stderr
    assert marker.read_text() == "finished"


def test_output_that_cannot_be_written_fails_a_successful_exit() -> None:
    """As at the interpreter's own exit: a flush that fails (a closed pipe, a full disk) makes
    exit code 0 into 120; another code is kept."""
    script = """
        import io, sys
        from tfy_audit._cli.main import exit_now

        class Full(io.StringIO):
            def flush(self):
                raise OSError(28, "No space left on device")

        sys.stdout = Full()
        print("summary")
        exit_now({code})
        """
    assert _run(script.format(code=0)).returncode == 120
    assert _run(script.format(code=3)).returncode == 3


def test_malloc_arenas_are_capped_on_glibc() -> None:
    """The command caps glibc's arenas (in a process of its own here: the setting is global)."""
    done = _run(
        """
        import platform, sys
        from tfy_audit._core.memory import limit_malloc_arenas
        applied = limit_malloc_arenas(2)
        glibc = platform.libc_ver()[0] == "glibc"
        sys.exit(0 if applied == glibc else 1)
        """
    )
    assert done.returncode == 0, done.stderr
