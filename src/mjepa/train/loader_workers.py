"""The training loader's worker processes: they outlive a job-wide SIGTERM, and leave when the trainer lets them.

SLURM (preemption, ``scancel``, the time limit) signals every process of a job, loader workers included. A worker
that dies of SIGTERM makes the DataLoader raise in the main process mid-step, before the main process writes the
checkpoint its own SIGTERM handler asked for. So a training worker ignores SIGTERM until the main process releases
it; after that, SIGTERM ends it cleanly (exit status 0, its queue flushed), which is also what
``multiprocessing.Process.terminate`` and the interpreter's exit handler send. Everything here is public API:
``worker_init_fn``, shared memory from the multiprocessing context, signals and ``os.waitid`` on our own children.
"""

from __future__ import annotations

import functools
import os
import signal
import time
import weakref
from collections.abc import Callable, Iterator
from multiprocessing.context import BaseContext
from typing import Any

from torch.utils.data import DataLoader

from mjepa.data.media.isolation import leave_inherited_garbage


def _sigterm_in_worker(released, signum, frame) -> None:
    if released.value:
        # The DataLoader's worker loop ends on KeyboardInterrupt and returns normally (exit status 0, which its
        # SIGCHLD watch in the main process does not report as a failure); the queue's feeder thread finishes the
        # message it is writing, so no half-written batch is left in the pipe.
        raise KeyboardInterrupt


def _init_worker(
    worker_id: int, pids, released, seed_fn: Callable[[int], None] | None, ignored: tuple[int, ...]
) -> None:
    leave_inherited_garbage()
    pids[worker_id] = os.getpid()
    signal.signal(signal.SIGTERM, functools.partial(_sigterm_in_worker, released))
    for sig in ignored:
        signal.signal(sig, signal.SIG_IGN)
    if seed_fn is not None:
        seed_fn(worker_id)


def _release(released) -> None:
    released.value = 1


def _has_exited(pid: int) -> bool:
    """Whether our child ``pid`` has ended, without reaping it (multiprocessing reaps its own children)."""
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:  # already reaped: gone
        return True


class LoaderWorkers:
    """The pids of a DataLoader's workers and the flag that lets them leave.

    ``worker_init_fn(seed_fn)`` goes to the DataLoader; :meth:`stop` releases the workers, asks each to leave
    (SIGTERM) and waits, killing (SIGKILL) only those still there after ``grace_s`` seconds, such as one stuck in
    a system call that no signal handler interrupts."""

    def __init__(self, count: int, context: BaseContext, ignored_signals: tuple[int, ...] = (signal.SIGUSR1,)):
        self._pids = context.RawArray("q", max(count, 1))
        self._released = context.RawValue("b", 0)
        self._ignored = ignored_signals
        # Released at the latest when this object is collected or the interpreter exits (before multiprocessing's
        # exit handler, which would otherwise wait forever on workers that ignore its SIGTERM).
        weakref.finalize(self, _release, self._released)

    def worker_init_fn(self, seed_fn: Callable[[int], None] | None = None) -> Callable[[int], None]:
        return functools.partial(
            _init_worker, pids=self._pids, released=self._released, seed_fn=seed_fn, ignored=self._ignored
        )

    @property
    def pids(self) -> list[int]:
        """The workers that have started (a worker records its pid when it starts)."""
        return [pid for pid in self._pids if pid > 0]

    def release(self) -> None:
        _release(self._released)

    def stop(self, grace_s: float = 10.0) -> None:
        self.release()
        waiting = [pid for pid in self.pids if not _has_exited(pid)]
        for pid in waiting:  # our unreaped child: the pid cannot belong to another process
            os.kill(pid, signal.SIGTERM)
        waiting = _wait(waiting, grace_s)
        for pid in waiting:
            if not _has_exited(pid):
                os.kill(pid, signal.SIGKILL)
        _wait(waiting, grace_s)
        # Forget them: once reaped, a pid can be given to a new process, which a second stop must never signal.
        for index in range(len(self._pids)):
            self._pids[index] = 0


def _wait(pids: list[int], timeout_s: float) -> list[int]:
    """Those of ``pids`` still running after ``timeout_s`` seconds."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            pids = [pid for pid in pids if not _has_exited(pid)]
            if not pids or time.monotonic() > deadline:
                return pids
            time.sleep(0.02)
        except RuntimeError as err:
            # PyTorch's SIGCHLD watch raises, wherever the main process is, for a worker that died of a signal
            # (one we had to kill): expected here, and the failure that called for the stop is the one to report.
            if "DataLoader worker" not in str(err):
                raise


class TrainStream:
    """Iterates a DataLoader's batches; :meth:`close` ends its workers, whether the run ended well or not.

    Closing drops the stream's reference to the loader's iterator, which shuts its workers down in order when it is
    collected; when something else still holds that iterator (a traceback, after a failure), the released workers
    are asked to leave directly, so nothing is left for the exit handler to wait on."""

    def __init__(self, loader: DataLoader, workers: LoaderWorkers | None) -> None:
        self._batches: Iterator[Any] | None = iter(loader)
        self._workers = workers

    def __iter__(self) -> TrainStream:
        return self

    def __next__(self) -> Any:
        if self._batches is None:
            raise StopIteration
        return next(self._batches)

    def close(self) -> None:
        if self._workers is not None:
            self._workers.release()
        self._batches = None
        if self._workers is not None:
            self._workers.stop()
