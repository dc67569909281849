import os
import signal
import subprocess
import sys
import time

import pytest

from pretrain_helpers import TINY_RUN, cli_env, run_cli, step_losses, synthetic_run

STEPS = 12


def _atari_run(out_dir, data_dir):
    return [
        *TINY_RUN,
        "data.source=atari",
        f"data.atari_dir={data_dir}",
        "data.atari_games=[pong,breakout]",
        "data.atari_clips_per_game=3",
        "data.num_workers=1",
        f"run.steps={STEPS}",
        "run.batch_size=4",
        f"run.out_dir={out_dir}",
    ]


def _args(source, out_dir, tmp_path):
    if source == "synthetic":
        return synthetic_run(out_dir, STEPS, extra=("run.checkpoint_every=2",))
    return [*_atari_run(out_dir, tmp_path / "atari"), "run.checkpoint_every=2"]


def _start(args):
    return subprocess.Popen(
        [sys.executable, "-m", "mjepa.cli", "pretrain", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(),
    )


def _wait_for_step(run_dir, step, proc, timeout=240):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if (run_dir / "metrics.jsonl").exists() and max(step_losses(run_dir), default=0) >= step:
            return
        if proc.poll() is not None:
            raise AssertionError(f"run ended before step {step}: {proc.stderr.read()}")
        time.sleep(0.05)
    raise AssertionError(f"step {step} not reached in {timeout} s")


@pytest.mark.slow
@pytest.mark.parametrize("source", ["synthetic", "atari"])
def test_sigkill_then_resume_gives_the_uninterrupted_losses(source, tmp_path):
    reference_dir = tmp_path / "reference"
    done = run_cli(["pretrain", *_args(source, reference_dir, tmp_path)])
    assert done.returncode == 0, done.stderr
    reference = step_losses(reference_dir)
    assert sorted(reference) == list(range(1, STEPS + 1))

    run_dir = tmp_path / "killed"
    proc = _start(_args(source, run_dir, tmp_path))
    _wait_for_step(run_dir, 5, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert max(step_losses(run_dir)) < STEPS  # really killed mid-run

    resumed = run_cli(["pretrain", *_args(source, run_dir, tmp_path)])
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming from" in resumed.stdout
    assert step_losses(run_dir) == reference  # every step, before and after the kill, equal to the reference


@pytest.mark.slow
def test_sigterm_writes_a_checkpoint_and_exits_cleanly(tmp_path):
    run_dir = tmp_path / "run"
    args = synthetic_run(run_dir, STEPS, extra=("run.checkpoint_every=100",))
    proc = _start(args)
    _wait_for_step(run_dir, 3, proc)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "stopped by SIGTERM" in out
    assert (run_dir / "checkpoints" / "latest.pt").is_file()
    stopped_at = max(step_losses(run_dir))
    resumed = run_cli(["pretrain", *args])
    assert resumed.returncode == 0 and f"at step {stopped_at}" in resumed.stdout


@pytest.mark.slow
def test_sigterm_to_every_process_of_the_job_still_checkpoints(tmp_path):
    """SLURM signals every process of a job, loader workers included: the run must still checkpoint and resume."""
    run_dir = tmp_path / "run"
    args = [*_atari_run(run_dir, tmp_path / "atari"), "run.checkpoint_every=100"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "mjepa.cli", "pretrain", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(),
        start_new_session=True,
    )
    _wait_for_step(run_dir, 3, proc)
    os.killpg(proc.pid, signal.SIGTERM)  # the trainer and its loader worker, as scancel / preemption do
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "stopped by SIGTERM" in out and "killed by signal" not in err
    stopped_at = max(step_losses(run_dir))
    assert stopped_at < STEPS
    resumed = run_cli(["pretrain", *args])
    assert resumed.returncode == 0 and f"at step {stopped_at}" in resumed.stdout


@pytest.mark.slow
def test_gradient_accumulation_matches_the_full_batch(tmp_path):
    losses = {}
    for accumulation in (1, 2):
        run_dir = tmp_path / f"accumulate{accumulation}"
        args = synthetic_run(
            run_dir,
            4,
            extra=(f"run.grad_accumulation={accumulation}", "optim.warmup_steps=1", "optim.cooldown_steps=1"),
        )
        result = run_cli(["pretrain", *args])
        assert result.returncode == 0, result.stderr
        losses[accumulation] = step_losses(run_dir)
    for step, loss in losses[1].items():
        assert abs(losses[2][step] - loss) <= 1e-4 * abs(loss), (step, losses[2][step], loss)


@pytest.mark.slow
@pytest.mark.parametrize("sampling", ["data.mixture_weights=[3.0,1.0]", "data.class_balanced=true"])
def test_pretraining_on_user_manifests_with_mixture_or_class_balance(sampling, tmp_path):
    from mjepa.data.atari.generate import atari_av_manifest_path, generate_atari_av
    from mjepa.pretrain_config import load_pretrain_config
    from mjepa.train.loop import pretrain

    data_dir = tmp_path / "atari"
    generate_atari_av(data_dir, games=("pong", "breakout"), clips_per_game=4, progress=None)
    manifests = [atari_av_manifest_path(data_dir, "train"), atari_av_manifest_path(data_dir, "val")]
    if "class_balanced" in sampling:
        manifests = manifests[:1]
    config = load_pretrain_config(
        "tiny-cpu",
        [
            *TINY_RUN,
            "data.source=manifest",
            f"data.manifests=[{','.join(map(str, manifests))}]",
            sampling,
            "data.num_workers=0",
            "run.steps=4",
            "run.batch_size=4",
            f"run.out_dir={tmp_path / 'run'}",
        ],
    )
    result = pretrain(config)
    assert result.last_step == 4 and all(loss == loss for loss in result.losses.values())


@pytest.mark.slow
def test_shards_resume_exactly_after_sigkill_with_two_ranks_and_two_workers(tmp_path):
    """The whole job (both ranks, their loader workers and decoding helpers) is SIGKILLed mid-run, as on a node
    failure; the resumed run's losses and final parameters equal an uninterrupted run's bit for bit."""
    import torch

    from mjepa.checkpoint_file import load_checkpoint
    from mjepa.data.atari.generate import atari_av_manifest_path, generate_atari_av
    from mjepa.data.shards.command import main as shard_main

    data_dir = tmp_path / "atari"
    generate_atari_av(data_dir, games=("pong", "breakout"), clips_per_game=6, clip_seconds=2.0, progress=None)
    shards = tmp_path / "shards"
    assert (
        shard_main(
            [
                str(atari_av_manifest_path(data_dir, "train")),
                "--out",
                str(shards),
                "--items-per-shard",
                "3",
                "--workers",
                "2",
            ]
        )
        == 0
    )
    steps = 8

    def args(out_dir):
        return [
            *TINY_RUN,
            "data.source=shards",
            f"data.shards=[{shards}]",
            "data.num_workers=2",
            f"run.steps={steps}",
            "run.batch_size=4",
            "run.checkpoint_every=2",
            "run.distributed=ddp",
            f"run.out_dir={out_dir}",
        ]

    def torchrun(out_dir):
        return [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node=2",
            "-m",
            "mjepa.cli",
            "pretrain",
            *args(out_dir),
        ]

    reference_dir, run_dir = tmp_path / "reference", tmp_path / "killed"
    done = subprocess.run(torchrun(reference_dir), capture_output=True, text=True, timeout=600, env=cli_env())
    assert done.returncode == 0, done.stderr[-3000:]
    proc = subprocess.Popen(
        torchrun(run_dir),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(),
        start_new_session=True,
    )
    _wait_for_step(run_dir, 4, proc)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert max(step_losses(run_dir)) < steps
    resumed = subprocess.run(torchrun(run_dir), capture_output=True, text=True, timeout=600, env=cli_env())
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming from" in resumed.stdout
    assert step_losses(run_dir) == step_losses(reference_dir)
    final = [load_checkpoint(d / "checkpoints" / "latest.pt")["model"] for d in (reference_dir, run_dir)]
    assert final[0].keys() == final[1].keys()
    assert all(torch.equal(final[0][name], final[1][name]) for name in final[0])
