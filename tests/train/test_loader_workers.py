"""The training loader's workers survive a job-wide SIGTERM, and always leave when the trainer stops them."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time

import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from mjepa.train.loader_workers import LoaderWorkers, TrainStream


class Numbers(Dataset):
    """Item i is i; from ``stall_from`` on, an item never comes (a worker stuck in a long decode)."""

    def __init__(self, stall_from: int = 10**9, deaf: bool = False) -> None:
        self.stall_from, self.deaf = stall_from, deaf

    def __len__(self) -> int:
        return 10**6

    def __getitem__(self, index: int) -> torch.Tensor:
        while index >= self.stall_from:
            try:
                time.sleep(1)
            except KeyboardInterrupt:
                if not self.deaf:  # a deaf worker swallows the request to leave
                    raise
        return torch.tensor(index)


def _stream(dataset: Dataset, num_workers: int = 2) -> tuple[TrainStream, LoaderWorkers]:
    workers = LoaderWorkers(num_workers, multiprocessing.get_context())
    loader = DataLoader(
        dataset, batch_size=2, num_workers=num_workers, worker_init_fn=workers.worker_init_fn(), persistent_workers=True
    )
    return TrainStream(loader, workers), workers


def test_workers_ignore_sigterm_until_released_then_leave():
    stream, workers = _stream(Numbers())
    assert [next(stream).tolist() for _ in range(2)] == [[0, 1], [2, 3]]  # one batch from each worker
    assert len(workers.pids) == 2
    for pid in workers.pids:
        os.kill(pid, signal.SIGTERM)  # as scancel or a preemption signals every process of the job
    time.sleep(0.5)
    assert [next(stream).tolist() for _ in range(3)] == [[4, 5], [6, 7], [8, 9]]
    pids = workers.pids
    stream.close()
    assert not set(pids) & {child.pid for child in multiprocessing.active_children()}
    with pytest.raises(StopIteration):
        next(stream)
    assert workers.pids == []  # a second stop signals nobody, whoever has those pids by then
    stream.close()


def test_close_ends_stuck_workers_even_while_a_traceback_holds_the_loader():
    stream, workers = _stream(Numbers(stall_from=6))
    batches = [next(stream) for _ in range(3)]
    held = stream._batches  # what a traceback of a failed step keeps alive
    pids = workers.pids
    assert len(pids) == 2
    started = time.monotonic()
    stream.close()
    assert time.monotonic() - started < 5
    assert not set(pids) & {child.pid for child in multiprocessing.active_children()}
    assert [b.tolist() for b in batches] == [[0, 1], [2, 3], [4, 5]]
    del held


def test_a_worker_that_will_not_leave_is_killed_after_the_grace_period():
    stream, workers = _stream(Numbers(stall_from=2, deaf=True), num_workers=1)
    assert next(stream).tolist() == [0, 1]
    held = stream._batches
    pids = workers.pids
    assert len(pids) == 1
    workers.stop(grace_s=0.5)
    assert not set(pids) & {child.pid for child in multiprocessing.active_children()}
    del held


def test_workers_left_behind_are_released_when_their_owner_is_collected():
    """A stream dropped without close (a test that fails, a caller's bug) must not leave workers that the
    interpreter's exit handler would wait on forever."""
    stream, workers = _stream(Numbers())
    next(stream)
    released = workers._released
    del stream, workers
    assert released.value == 1
