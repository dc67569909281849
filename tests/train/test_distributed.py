import socket
import subprocess
import sys

import pytest

from mjepa.distributed import DistributedInitError, detect_launch, first_slurm_host, init_distributed
from pretrain_helpers import cli_env, run_cli, step_losses, synthetic_run

STEPS = 4
# Two ranks sum their gradients in a different order than one process does, so losses agree to float32
# round-off, not bit for bit.
RELATIVE_TOLERANCE = 1e-4


def _torchrun(args, timeout=300):
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "mjepa.cli",
        "pretrain",
        *args,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=cli_env())


def _assert_close(a: dict[int, float], b: dict[int, float]):
    assert sorted(a) == sorted(b) == list(range(1, STEPS + 1))
    for step in a:
        assert abs(a[step] - b[step]) <= RELATIVE_TOLERANCE * abs(b[step]), (step, a[step], b[step])


@pytest.fixture(scope="module")
def single_process_losses(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("single") / "run"
    result = run_cli(["pretrain", *synthetic_run(run_dir, STEPS)])
    assert result.returncode == 0, result.stderr
    return step_losses(run_dir)


@pytest.fixture(scope="module")
def ddp_losses(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("ddp") / "run"
    result = _torchrun(synthetic_run(run_dir, STEPS, extra=("run.distributed=ddp",)))
    assert result.returncode == 0, result.stderr[-3000:]
    return step_losses(run_dir)


@pytest.mark.slow
def test_two_process_ddp_matches_single_process(single_process_losses, ddp_losses):
    _assert_close(ddp_losses, single_process_losses)


@pytest.mark.slow
def test_fsdp2_matches_ddp(ddp_losses, tmp_path):
    run_dir = tmp_path / "fsdp"
    result = _torchrun(synthetic_run(run_dir, STEPS, extra=("run.distributed=fsdp",)))
    assert result.returncode == 0, result.stderr[-3000:]
    _assert_close(step_losses(run_dir), ddp_losses)


def test_launch_detection():
    assert detect_launch({}).launcher == "single"
    torchrun = detect_launch({"RANK": "3", "WORLD_SIZE": "8", "LOCAL_RANK": "1"})
    assert (torchrun.rank, torchrun.world_size, torchrun.local_rank, torchrun.launcher) == (3, 8, 1, "torchrun")
    slurm = detect_launch({"SLURM_PROCID": "5", "SLURM_NTASKS": "16", "SLURM_LOCALID": "5"})
    assert (slurm.rank, slurm.world_size, slurm.launcher) == (5, 16, "slurm")
    assert detect_launch({"SLURM_PROCID": "0", "SLURM_NTASKS": "1"}).launcher == "single"


@pytest.mark.parametrize(
    "nodelist,first", [("gpu[003-005,010],cpu01", "gpu003"), ("node7", "node7"), ("a-1,b-2", "a-1")]
)
def test_first_slurm_host(nodelist, first):
    assert first_slurm_host(nodelist) == first


@pytest.mark.slow
def test_failed_initialisation_is_an_error_not_a_single_process_run(monkeypatch):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for key, value in {
        "RANK": "0",
        "WORLD_SIZE": "2",
        "LOCAL_RANK": "0",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(port),
    }.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(DistributedInitError, match="rank 0 of 2"):
        init_distributed("cpu", timeout_minutes=0.05)  # rank 1 never comes
