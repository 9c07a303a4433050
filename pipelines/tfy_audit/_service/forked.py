"""Decoder processes forked from the `tfy-audit` command's own process before it imports dlt.

A spawned decoder (decoders.py) starts a fresh interpreter and imports pyarrow again: about a
third of a CPU-second each, and pyarrow's libraries mapped and made resident in every worker
(some 50 MB each, counted again in each process's RSS). Forked from the command once it has
imported what decoding needs and nothing else, a worker starts at once, shares those pages
with the command until it writes to them, and maps only the library pages it runs.

Forking is safe only while no other thread can hold a lock the worker will need: `start`
forks before the command imports dlt or starts a thread, and refuses (does nothing) otherwise,
leaving the sync to spawn its workers as a library caller's does. The one other thread then is
the background thread of the jemalloc that pyarrow bundles (started by its import, unused by
decoding): jemalloc takes and releases its own locks around a fork (pthread_atfork), which
is why Python 3.12's warning about forking a process with threads does not apply to it.

The workers serve tasks (a function and its arguments, pickled) over a socket each, one task
at a time; a worker ends when its socket closes, so the command's exit or death (`kill -9`
too) ends them, with no thread watching for it. They ignore SIGINT and SIGTERM: the command
handles both and closes the pool.
"""

from __future__ import annotations

import contextlib
import gc
import os
import queue
import signal
import socket
import sys
import threading
from collections.abc import Callable
from concurrent.futures import BrokenExecutor, Executor, Future
from multiprocessing.connection import Connection
from typing import Any

__all__ = ["DecoderGone", "ForkedDecoders", "start", "take"]


class DecoderGone(BrokenExecutor):
    """A forked decoder ended while a page was with it (killed, or out of memory)."""


_STARTED: ForkedDecoders | None = None


def start(workers: int) -> bool:
    """Fork `workers` decoder processes now, for the sync this process is about to run (see
    the module docstring); False, having forked none, where that is not safe or possible."""
    global _STARTED
    if (
        workers < 1
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
        # SIGINT and SIGTERM are blocked over the forks: a worker is born with the mask, so a
        # Ctrl-C sent to the process group before it ignores both cannot run the command's
        # handlers in it
        stop = {signal.SIGINT, signal.SIGTERM}
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, stop)
        try:
            for _ in range(workers):
                ours, theirs = socket.socketpair()
                try:
                    pid = os.fork()
                except OSError:
                    ours.close()
                    theirs.close()
                    self._close_connections()  # the workers forked so far end
                    raise
                if pid == 0:  # the worker: it never returns
                    ours.close()
                    for connection in self._connections:
                        connection.close()
                    _serve(Connection(theirs.detach()), stop, previous)
                theirs.close()
                self.pids.append(pid)
                self._connections.append(Connection(ours.detach()))
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)
        self._lock = threading.Lock()
        self._broken: str | None = None
        self._shut = False
        self._senders: list[threading.Thread] = []
        self._closer: threading.Thread | None = None

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
                connection.send((fn, args))
                ok, value = connection.recv()
            except (EOFError, OSError) as exc:
                why = f"a decoder process ended while decoding a page ({type(exc).__name__})"
                with self._lock:
                    self._broken = why
                future.set_exception(DecoderGone(why))
                self._fail_waiting(why)
                return
            except BaseException as exc:  # the task or its result would not pickle
                future.set_exception(exc)
                continue
            if ok:
                future.set_result(value)
            else:
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
        """Close the sockets (each worker then ends) and reap the workers."""
        for connection in self._connections:
            connection.close()
        self._connections = []
        for pid in self.pids:
            with contextlib.suppress(ChildProcessError):  # reaped already
                os.waitpid(pid, 0)
        self.pids = []

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


def _serve(
    connection: Connection, ignored: set[signal.Signals], mask: set[int | signal.Signals]
) -> None:
    """A worker's life: run each task it is sent and send back its outcome, until its socket
    closes; then end without the exit handlers the command registered (they are the
    command's). `ignored`: the signals it ignores; `mask`: the signal mask to restore then."""
    code = 0
    try:
        for signum in ignored:
            signal.signal(signum, signal.SIG_IGN)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        _quiet_standard_streams()
        # the command paused the collector over its imports (process.py); a worker collects,
        # past what it inherited
        gc.freeze()
        gc.enable()
        from tfy_audit._service.pages import release_in_worker

        release_in_worker()
        while True:
            try:
                fn, args = connection.recv()
            except (EOFError, OSError):
                break
            try:
                outcome: tuple[bool, Any] = (True, fn(*args))
            except BaseException as exc:
                outcome = (False, exc)
            try:
                connection.send(outcome)
            except (EOFError, OSError):
                break
            except BaseException as exc:  # the result or the exception would not pickle
                connection.send((False, RuntimeError(f"{type(exc).__name__}: {exc}")))
            del fn, args, outcome
    except BaseException:
        code = 1
    finally:
        os._exit(code)


def _quiet_standard_streams() -> None:
    """A worker reads no input and prints nothing; it keeps standard error only for what the
    interpreter itself may report as it fails."""
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    os.close(devnull)
