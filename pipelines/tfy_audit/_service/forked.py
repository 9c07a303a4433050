"""Decoder processes forked from the `tfy-audit` command's own process before it imports dlt.

A spawned decoder (decoders.py) starts a fresh interpreter and imports pyarrow again: about a
third of a CPU-second each, and pyarrow's libraries mapped and made resident in every worker
(some 50 MB each, counted again in each process's RSS). Forked from the command once it has
imported what decoding needs and nothing else, a worker starts at once, shares those pages
with the command until it writes to them, and maps only the library pages it runs.

Forking is safe only while no other thread can hold a lock the worker will need: `start`
forks before the command imports dlt or starts a thread, and refuses (does nothing) otherwise,
leaving the sync to spawn its workers as a library caller's does. The one other thread then is
the background thread of the jemalloc that pyarrow bundles (started by its import; Arrow's
default pool is mimalloc, and Python allocates with glibc's malloc): it holds none of those
locks, and jemalloc takes and releases its own around a fork. Python 3.12 warns about forking a
process with any other thread; that warning is silenced here, for this reason.

The workers serve tasks (a function and its arguments, pickled) over a socket each, one task
at a time, and send back the result or the exception with its traceback. A worker ends when
told to, when its socket closes, or when the command ends (the kernel kills it then, `kill -9`
of the command included). They ignore SIGINT and SIGTERM: the command handles both and closes
the pool.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import os
import pickle
import queue
import signal
import socket
import sys
import threading
import traceback
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import BrokenExecutor, Executor, Future
from contextlib import contextmanager
from multiprocessing.connection import Connection
from typing import Any, Final

__all__ = ["DecoderGone", "ForkedDecoders", "start", "take"]


class DecoderGone(BrokenExecutor):
    """A forked decoder ended while a page was with it (killed, or out of memory)."""


class RemoteTraceback(Exception):
    """The traceback of an exception raised in a worker, as its cause (as concurrent.futures'
    process pool gives it)."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return f'\n"""\n{self.text}"""'


_STOP: Final = b""  # the message that tells a worker to end (a pickle is never empty)
_PR_SET_PDEATHSIG: Final = 1  # <linux/prctl.h>
# more workers than this are not forked ahead of a run that may not need them; the sync spawns
# them if it does
MAX_FORKED: Final = 16


_STOP_SIGNALS: Final = frozenset({signal.SIGINT, signal.SIGTERM})


@contextmanager
def stop_signals_blocked() -> Iterator[None]:
    """SIGINT and SIGTERM blocked while decoder processes are started, forked or spawned: a
    worker is born with the mask, so a Ctrl-C sent to the process group before it ignores
    both cannot run the command's handlers in it (nor end it with a traceback)."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def ignore_stop_signals() -> None:
    """In a decoder process: ignore SIGINT and SIGTERM, then let them through. Both reach the
    whole process group; the command handles them and stops its workers."""
    for signum in _STOP_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)


# How much a decoder process lowers its own CPU priority (a nice increment).
DECODER_NICENESS = 10


def give_way_to_the_command() -> None:
    """In a decoder process: lower its priority, so that where the decoders and the command
    contend for a core the command gets most of it (at niceness 10 a decoder's weight is about
    a tenth of the command's). The command is a run's serial part (dlt's extract, then a load
    on one core), and the next chunk is decoded while a chunk loads (loader.py): at equal
    priority two decoders took a share of the load's core and slowed it by more than they
    gained. The decoders also yield to other programs of normal priority on the machine (or in
    the container's cgroup). Only ever lowered, so no privilege is needed; where the platform
    has no niceness the decoder runs as it is."""
    with contextlib.suppress(AttributeError, OSError):
        os.nice(DECODER_NICENESS)


def _dumps(value: Any) -> bytes:
    return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)


def _fork() -> int:
    """os.fork(), without Python's warning about the other thread: the jemalloc that pyarrow
    bundles runs a background thread from its import (see the module docstring)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return os.fork()


_STARTED: ForkedDecoders | None = None


def start(workers: int) -> bool:
    """Fork `workers` decoder processes now, for the sync this process is about to run (see
    the module docstring); False, having forked none, where that is not safe or possible."""
    global _STARTED
    if (
        not 1 <= workers <= MAX_FORKED
        or _STARTED is not None
        or not sys.platform.startswith("linux")
        or threading.active_count() != 1
        or "dlt" in sys.modules
    ):
        return False
    # what decoding needs, imported before the fork so that every worker shares it
    from tfy_audit._service import pages  # noqa: F401

    try:
        _STARTED = ForkedDecoders(workers)
    except OSError:  # no fork here (a process limit, a sandbox): the sync spawns its decoders
        return False
    return True


def take() -> ForkedDecoders | None:
    """The decoders `start` forked, handed over once (None if it forked none)."""
    global _STARTED
    started, _STARTED = _STARTED, None
    return started


class ForkedDecoders(Executor):
    """An executor over forked decoder processes, one page at a time in each. It offers what
    decoders.Decoders does (`pool`, `close_soon`, `close`), so a sync uses either alike."""

    def __init__(self, workers: int) -> None:
        self._tasks: queue.SimpleQueue[
            tuple[Future[Any], Callable[..., Any], tuple[Any, ...]] | None
        ]
        self._tasks = queue.SimpleQueue()
        self._connections: list[Connection] = []
        self.pids: list[int] = []
        parent = os.getpid()
        try:
            with stop_signals_blocked():
                for _ in range(workers):
                    ours, theirs = socket.socketpair()
                    try:
                        pid = _fork()
                    except BaseException:
                        ours.close()
                        theirs.close()
                        raise
                    if pid == 0:  # the worker: it never returns
                        try:
                            ours.close()
                            for connection in self._connections:
                                connection.close()
                            _serve(Connection(theirs.detach()), parent)
                        finally:
                            os._exit(1)
                    theirs.close()
                    self.pids.append(pid)
                    self._connections.append(Connection(ours.detach()))
        except BaseException:
            self._close_connections()  # the workers forked so far end
            raise
        self._lock = threading.Lock()
        self._broken: str | None = None
        self._shut = False
        self._senders: list[threading.Thread] = []
        self._closer: threading.Thread | None = None
        self.pages_done = 0  # tasks answered with a result (the sync's debug log says how many)

    @property
    def pool(self) -> Executor:
        return self

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        if kwargs:
            raise TypeError("the forked decoders take positional arguments only")
        with self._lock:
            if self._broken is not None:
                raise DecoderGone(self._broken)
            if self._shut:
                raise RuntimeError("cannot submit a page after the decoders were closed")
            if not self._senders:
                # started at the first task, not at the fork: the fork must come before any
                # thread, and a sync that needs no decoding never starts them
                for index, connection in enumerate(self._connections):
                    sender = threading.Thread(
                        target=self._send_tasks,
                        args=(connection,),
                        name=f"tfy-decoder-{index}",
                        daemon=True,
                    )
                    sender.start()
                    self._senders.append(sender)
            future: Future[Any] = Future()
            self._tasks.put((future, fn, args))
            return future

    def _send_tasks(self, connection: Connection) -> None:
        """Hand this worker one task at a time until the pool closes or the worker ends."""
        while True:
            task = self._tasks.get()
            if task is None:
                return
            future, fn, args = task
            if not future.set_running_or_notify_cancel():
                continue
            try:
                task_bytes = _dumps((fn, args))
            except BaseException as exc:  # the task would not pickle: nothing was sent
                future.set_exception(exc)
                continue
            try:
                connection.send_bytes(task_bytes)
                answer = connection.recv_bytes()
            except BaseException as exc:
                # the worker ended, or the answer was cut short: the socket's messages can no
                # longer be told apart, so this worker serves no more pages
                why = f"a decoder process ended while decoding a page ({type(exc).__name__})"
                with self._lock:
                    self._broken = why
                future.set_exception(DecoderGone(why))
                self._fail_waiting(why)
                return
            try:
                ok, value, remote = pickle.loads(answer)
            except BaseException as exc:  # an exception of the worker that would not unpickle
                future.set_exception(exc)
                continue
            if ok:
                with self._lock:
                    self.pages_done += 1
                future.set_result(value)
            else:
                value.__cause__ = RemoteTraceback(remote)  # what --debug shows, as for a pool's
                future.set_exception(value)

    def _fail_waiting(self, why: str) -> None:
        while True:
            try:
                task = self._tasks.get_nowait()
            except queue.Empty:
                return
            if task is None:
                self._tasks.put(None)  # another sender's stop: leave it for that one
                return
            future = task[0]
            if future.set_running_or_notify_cancel():
                future.set_exception(DecoderGone(why))

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            if self._shut:
                senders = list(self._senders)
            else:
                self._shut = True
                senders = list(self._senders)
                if cancel_futures:
                    self._cancel_waiting()
                for _ in senders:
                    self._tasks.put(None)
        if wait:
            for sender in senders:
                sender.join()
            self._close_connections()

    def _cancel_waiting(self) -> None:
        while True:
            try:
                task = self._tasks.get_nowait()
            except queue.Empty:
                return
            if task is not None:
                task[0].cancel()

    def _close_connections(self) -> None:
        """Tell each worker to end, close the sockets and reap the workers. Told, not left to
        see its socket close: a process forked from the command later (by a library) would hold
        the socket open too."""
        for connection in self._connections:
            with contextlib.suppress(OSError):  # a worker that ended already
                connection.send_bytes(_STOP)
            connection.close()
        self._connections = []
        for pid in self.pids:
            with contextlib.suppress(ChildProcessError):  # reaped already
                os.waitpid(pid, 0)
        self.pids = []

    def all_alive(self) -> bool:
        """Whether every worker is still there (one may have been killed while it waited)."""
        for pid in self.pids:
            try:
                ended, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                return False
            if ended:
                return False
        return True

    def close_soon(self) -> None:
        """Let the workers go now, in the background, so their exit overlaps the load;
        `close()` then waits for it."""
        if self._closer is None:
            self._closer = threading.Thread(
                target=self.shutdown, name="tfy-decoders-close", daemon=True
            )
            self._closer.start()

    def close(self) -> None:
        if self._closer is None:
            self.shutdown(wait=True, cancel_futures=True)
        else:
            self._closer.join()


def _serve(connection: Connection, parent: int) -> None:
    """A worker's life: run each task it is sent and send back its outcome, until it is told
    to stop or its socket closes, or the command (`parent`) ends; then end without the exit
    handlers the command registered (they are the command's). Only returns by raising."""
    ignore_stop_signals()
    _end_with(parent)
    give_way_to_the_command()
    _quiet_standard_streams()
    # the command paused the collector over its imports (process.py); a worker collects, past
    # what it inherited
    gc.freeze()
    gc.enable()
    from tfy_audit._service.pages import release_in_worker

    release_in_worker()
    while True:
        try:
            task_bytes = connection.recv_bytes()
        except (EOFError, OSError):
            break
        if task_bytes == _STOP:
            break
        try:
            fn, args = pickle.loads(task_bytes)
            outcome: tuple[bool, Any, str] = (True, fn(*args), "")
        except BaseException as exc:
            outcome = (False, exc, traceback.format_exc())
        try:
            answer = _dumps(outcome)
        except BaseException as exc:  # the result or the exception would not pickle
            answer = _dumps((False, RuntimeError(f"{type(exc).__name__}: {exc}"), ""))
        del fn, args, outcome, task_bytes
        try:
            connection.send_bytes(answer)
        except OSError:
            break
    os._exit(0)


def _end_with(parent: int) -> None:
    """Have the kernel end this worker when the command does (`kill -9` included), even if
    another process holds its socket open; a command already gone ends it now."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # no prctl: the socket's end still ends it
        pass
    if os.getppid() != parent:
        os._exit(0)


def _quiet_standard_streams() -> None:
    """A worker reads no input and prints nothing; it keeps standard error only for what the
    interpreter itself may report as it fails."""
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    os.close(devnull)
