"""The command's own process: its prompt exit loses nothing, and its allocator is capped."""

from __future__ import annotations

import io
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

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
        from tfy_audit._cli.main import exit_now
        import atexit, logging, sys
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


def test_the_prompt_exit_skips_the_teardown_and_only_after_exit_now(tmp_path: Path) -> None:
    """`exit_now` ends the process before the interpreter frees its modules' objects (a
    finalizer of a module's object does not run); an exit without it tears down as usual."""
    script = """
        import sys
        from tfy_audit._cli.main import exit_now

        class Finalized:
            def __del__(self, write=open):  # builtins are gone by then
                write({marker!r}, "w").write("torn down")

        kept = Finalized()
        {ending}
        """
    prompt, plain = tmp_path / "prompt", tmp_path / "plain"
    done = _run(script.format(marker=str(prompt), ending="exit_now(4)"))
    assert (done.returncode, done.stderr) == (4, "")
    assert not prompt.exists()
    done = _run(script.format(marker=str(plain), ending="sys.exit(5)"))
    assert (done.returncode, done.stderr) == (5, "")
    assert plain.read_text() == "torn down"


def test_the_prompt_exit_is_registered_before_every_other_exit_handler() -> None:
    """`atexit` runs the last registered first: importing the command registers its prompt
    exit before any other handler, so every handler registered later runs before it."""
    done = _run(
        """
        import atexit
        registered = []
        register = atexit.register
        def recording(func, *args, **kwargs):
            registered.append(f"{func.__module__}.{func.__qualname__}")
            return register(func, *args, **kwargs)
        atexit.register = recording
        import tfy_audit._cli.main
        print(registered)
        """
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['tfy_audit._cli.process._exit_promptly', 'logging.shutdown']"


def test_the_collector_is_paused_for_the_imports_and_runs_again_for_the_work() -> None:
    """Paused by the command's own process until its imports are done, then frozen past them
    and running again before any command works; a library's caller's collector is left alone."""
    done = _run(
        """
        import gc, sys
        from tfy_audit._cli import process

        frozen = gc.get_freeze_count()  # 0 on 3.11; Python 3.12 freezes some at its start
        process.end_imports()  # not paused: a library's caller's collector, left alone
        assert gc.isenabled() and gc.get_freeze_count() == frozen
        process.begin_imports()
        assert not gc.isenabled()
        process.end_imports()
        assert gc.isenabled() and gc.get_freeze_count() > frozen

        seen = {}
        import tfy_audit._engine.sync as engine
        from tfy_audit._core.errors import UsageError

        def run_sync(options, progress=None):
            seen["sync"] = gc.isenabled()
            raise UsageError("stop here")

        engine.run_sync = run_sync
        import tfy_audit._cli.commands.rules as rules

        def rules_run(args):
            seen["rules"] = gc.isenabled()
            return rules.Outcome(0)

        rules.run = rules_run
        from tfy_audit._cli.main import main
        from tfy_audit._cli import main as cli

        for argv in (["sync", "--host", "http://127.0.0.1:9"], ["rules", "list"]):
            process.begin_imports()
            cli._own_process = True
            main(argv)
        print(seen)
        """
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "{'sync': True, 'rules': True}"


def test_httpx_is_imported_without_its_command_line_and_dlts_requests_helper_deferred() -> None:
    done = _run(
        """
        import sys
        from tfy_audit._cli import process

        assert "httpx" not in sys.modules and "dlt" not in sys.modules
        process.begin_imports()
        assert type(sys.modules["dlt.sources.helpers.requests"]).__name__ == "_Deferred"
        import httpx

        assert sys.modules["httpx._main"] is None and callable(httpx.main)
        process.end_imports()
        import httpx._main  # the real one, once the imports are done

        assert sys.modules["httpx._main"] is not None
        """
    )
    assert done.returncode == 0, done.stderr


class _ClosedPipe(io.StringIO):
    """stdout whose reader went away (`tfy-audit ... | head -1` after its line)."""

    def write(self, text: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")


@pytest.mark.parametrize("argv", [["rules", "list"], ["rules", "list", "--json"]])
def test_a_reader_that_goes_away_ends_the_run_quietly_as_lost_output(
    argv: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A closed stdout (`| head`) is no error to report: no line on stderr, no traceback, and
    the code of lost output (120), whether the text or the `--json` document was cut off."""
    from tfy_audit._cli.main import main

    monkeypatch.setattr(sys, "stdout", _ClosedPipe())
    assert main(argv) == 120
    assert capsys.readouterr().err == ""
