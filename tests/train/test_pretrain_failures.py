"""Failures that are not about one file end a run promptly, with one line and a non-zero exit; nothing hangs."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mjepa.pretrain_config import load_pretrain_config
from mjepa.train import loop
from mjepa.train.loop import TrainingStopped, pretrain
from pretrain_helpers import cli_env, synthetic_run


def _children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        out.extend(int(p) for p in text)
    return out


def _logged_steps(run_dir: Path) -> int:
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return 0
    return len([line for line in path.read_text().splitlines() if line.strip()])


@pytest.mark.slow
def test_a_killed_loader_worker_ends_the_run_within_30_seconds(tmp_path):
    run_dir = tmp_path / "run"
    args = synthetic_run(run_dir, 400, extra=("data.num_workers=2",))
    process = subprocess.Popen(
        [sys.executable, "-m", "mjepa.cli", "pretrain", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(),
    )
    try:
        deadline = time.time() + 120
        while _logged_steps(run_dir) < 2 and time.time() < deadline and process.poll() is None:
            time.sleep(0.2)
        assert process.poll() is None, process.communicate()[1][-2000:]
        workers = _children(process.pid)
        assert workers, "the loader has no worker processes"
        os.kill(workers[0], signal.SIGKILL)
        killed_at = time.time()
        _, stderr = process.communicate(timeout=30)
        assert time.time() - killed_at < 30
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 3, stderr[-2000:]
    assert "data loader failed" in stderr and "Traceback" not in stderr
    assert len([line for line in stderr.splitlines() if "error" in line.lower() or "stopped" in line]) == 1


def test_a_failure_in_the_training_process_stops_the_loader_workers(tmp_path, monkeypatch):
    original, calls = loop.accumulated_step, []

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return original(*args, **kwargs)

    monkeypatch.setattr(loop, "accumulated_step", failing)
    config = load_pretrain_config("tiny-cpu", synthetic_run(tmp_path / "run", 50, extra=("data.num_workers=2",)))
    with pytest.raises(OSError, match="No space left"):
        pretrain(config)
    assert multiprocessing.active_children() == []  # nothing left for the exit handler to wait on


def test_a_loader_error_is_a_training_stop_naming_the_loader(tmp_path, monkeypatch):
    from mjepa.data import synthetic

    def broken(*args, **kwargs):
        raise RuntimeError("synthetic generator broke")

    monkeypatch.setattr(synthetic, "synthetic_clip", broken)
    config = load_pretrain_config("tiny-cpu", synthetic_run(tmp_path / "run", 4, extra=("data.num_workers=1",)))
    with pytest.raises(TrainingStopped, match="data loader failed"):
        pretrain(config)
    assert multiprocessing.active_children() == []


def test_fd_sharing_tracebacks_are_filtered_and_others_are_not(monkeypatch, capsys):
    """The file-descriptor server thread of multiprocessing reports a worker that died mid-handover through
    sys.excepthook; that one is dropped (the run reports the failure itself), every other exception is printed."""
    import os as _os
    import sys as _sys

    from mjepa.train.data_pipeline import quiet_fd_sharing_errors

    printed = []
    monkeypatch.setattr(_sys, "excepthook", lambda *info: printed.append(info[1]))
    quiet_fd_sharing_errors()
    quiet_fd_sharing_errors()  # idempotent: one filter, not two
    sharer = _os.path.join("/usr/lib/python3/multiprocessing", "resource_sharer.py")
    code = compile("def serve():\n    raise ConnectionResetError('peer died')\n", sharer, "exec")
    namespace = {}
    exec(code, namespace)
    for raise_it in (namespace["serve"], lambda: 1 / 0):
        try:
            raise_it()
        except Exception:
            _sys.excepthook(*_sys.exc_info())
    assert [type(e) for e in printed] == [ZeroDivisionError]
