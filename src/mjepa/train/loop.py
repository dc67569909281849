"""The pretraining loop: one function per stage, `pretrain(config)` ties them together.

Resume is exact: model, target, optimiser, step and skip log come from the checkpoint; the data stream, masks and
augmentations are functions of the step (``mjepa.data.loading.stream``), so no other state is needed.
"""

from __future__ import annotations

import math
import signal
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from mjepa.checkpoint_file import CheckpointError, load_checkpoint
from mjepa.commands import resolve_device
from mjepa.data.batch import Batch
from mjepa.data.loading.dataset import LoadedBatch, SkipLog
from mjepa.data.manifests.manifest import check_manifest_opens
from mjepa.data.preprocess.frontend import frontend_for
from mjepa.data.preprocess.video_transforms import normalise_uint8_video
from mjepa.distributed import DistributedContext, all_reduce_mean, any_rank, init_distributed, shutdown
from mjepa.masks import masks_to
from mjepa.models.mjepa import MJEPA
from mjepa.packaging import TARGET_PREFIX, is_model_dir, load_model_dir, resolve_model_path
from mjepa.precision import resolve_amp_dtype
from mjepa.pretrain_config import PretrainConfig
from mjepa.train import run_files
from mjepa.train.checkpoint import CheckpointManager, CheckpointWriteError
from mjepa.train.data_pipeline import train_stream
from mjepa.train.monitor import MetricsWriter, ProgressLine, collapse_metric_tensors, collapse_warnings
from mjepa.train.optim import build_optimizer
from mjepa.train.parallel import (
    ParallelModel,
    full_optimizer_state,
    full_state_dict,
    load_full_optimizer_state,
    load_full_state_dict,
    load_partial_state_dict,
    parallelize,
)
from mjepa.train.resume_config import check_resume_config
from mjepa.train.schedules import LearningRateSchedule, LinearSchedule, ema_initial_weight
from mjepa.train.step import StepResult, accumulated_step


class TrainingStopped(RuntimeError):
    """The run stopped on purpose (non-finite values under nan_policy=stop); the message says why."""


@dataclass
class PretrainResult:
    run_dir: Path
    last_step: int  # steps completed
    losses: dict[int, float] = field(default_factory=dict)  # step -> total loss (mean over ranks)
    preempted: str | None = None  # the signal that ended the run early


class PreemptionFlag:
    """SIGTERM / SIGUSR1 (cluster preemption) only set a flag; the loop checkpoints and exits cleanly."""

    def __init__(self) -> None:
        self.received: str | None = None
        self._previous = {}
        for sig in (signal.SIGTERM, signal.SIGUSR1):
            self._previous[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum, frame) -> None:  # noqa: ARG002
        self.received = signal.Signals(signum).name

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


@dataclass
class Trainer:
    config: PretrainConfig
    ctx: DistributedContext
    device: torch.device
    amp_dtype: torch.dtype | None
    parallel: ParallelModel
    optimizer: torch.optim.Optimizer
    lr: LearningRateSchedule
    weight_decay: LinearSchedule
    ema: LinearSchedule
    skip_log: SkipLog = field(default_factory=SkipLog)
    consecutive_bad_steps: int = 0

    @property
    def model(self) -> MJEPA:
        return self.parallel.model


def build_trainer(config: PretrainConfig, ctx: DistributedContext) -> Trainer:
    run, optim = config.run, config.optim
    device = resolve_device(run.device, ctx.local_rank, "run.device")
    torch.manual_seed(run.seed)  # same initial weights on every rank
    model = MJEPA(config.model)
    model.set_activation_checkpointing(run.activation_checkpointing)
    model.to(device)
    parallel = parallelize(model, ctx, run.distributed, device)
    if run.compile:
        for encoder in model.encoders.values():
            encoder.blocks.compile()
    start_lr, peak_lr, final_lr = optim.learning_rates(run.batch_size)
    optimizer = build_optimizer(model.named_trainable_parameters(), peak_lr, optim.weight_decay, optim.betas, optim.eps)
    return Trainer(
        config,
        ctx,
        device,
        resolve_amp_dtype(run.precision, device.type),
        parallel,
        optimizer,
        LearningRateSchedule(start_lr, peak_lr, final_lr, optim.warmup_steps, optim.cooldown_steps, run.steps),
        LinearSchedule(optim.weight_decay, optim.final_weight_decay, run.steps),
        LinearSchedule(optim.ema_start, optim.ema_end, run.steps),
    )


def checkpoint_payload(trainer: Trainer, step: int) -> dict:
    """Everything a resumed run needs, as tensors and plain values (no pickled objects)."""
    return {
        "step": step,
        "model": full_state_dict(trainer.model),
        "optimizer": full_optimizer_state(trainer.model, trainer.optimizer),
        "config": run_files.config_dict(trainer.config),
        "frontend": frontend_for(trainer.config.data).to_dict(),
        "rng": {"torch": torch.get_rng_state()},
        "data_position": {"next_step": step, "global_batch": trainer.config.run.batch_size},
        "skipped_items": trainer.skip_log.state(),  # counts only; the files are in skipped_items.jsonl
        "mjepa_version": run_files.package_version(),
    }


def restore(trainer: Trainer, path: Path, payload: dict | None = None) -> int:
    payload = load_checkpoint(path) if payload is None else payload
    for change in check_resume_config(payload.get("config", {}), trainer.config, str(path)):
        if trainer.ctx.is_main:
            print(f"warning: resuming with a changed setting (run.allow_resume_changes=true): {change}", flush=True)
    load_full_state_dict(trainer.model, payload["model"])
    load_full_optimizer_state(trainer.model, trainer.optimizer, payload["optimizer"])
    torch.set_rng_state(payload["rng"]["torch"])
    skipped = payload.get("skipped_items", {})
    if isinstance(skipped, dict):
        trainer.skip_log.load_state(skipped)
    else:  # checkpoints of earlier versions listed every skipped item
        trainer.skip_log.load_state({"counts": Counter(item["reason"] for item in skipped)})
    return int(payload["step"])


def init_from_weights(trainer: Trainer, path: str) -> None:
    """Start from other weights; optimiser and step start fresh. A training checkpoint (e.g. the main run, for a
    cool-down) gives every part. A model folder or shipped name gives what it holds: all parts, or, for a target-only
    folder, the encoder alone, which then starts both the context and the target encoder (a warm start; the
    predictors and cross-modal heads start fresh)."""
    folder = resolve_model_path(path)
    if not is_model_dir(folder):
        load_full_state_dict(trainer.model, load_checkpoint(path)["model"])
        return
    loaded = load_model_dir(folder)
    state = {k: v.float() for k, v in loaded.model.state_dict().items()}
    if loaded.parts == "all":
        load_full_state_dict(trainer.model, state)
        return
    encoders = {k.removeprefix(TARGET_PREFIX): v for k, v in state.items() if k.startswith(TARGET_PREFIX)}
    warm = {f"{prefix}{k}": v for prefix in ("encoders.", TARGET_PREFIX) for k, v in encoders.items()}
    own = set(trainer.model.state_dict())
    if not set(warm) <= own:
        raise CheckpointError(
            f"run.init_from={path}: its encoder does not fit this run's model (e.g. {sorted(set(warm) - own)[:2]})"
        )
    try:
        load_partial_state_dict(trainer.model, warm)
    except RuntimeError as err:
        raise CheckpointError(f"run.init_from={path}: its encoder does not fit this run's model: {err}") from None


def set_schedules(trainer: Trainer, step: int) -> dict[str, float]:
    lr, wd, ema = trainer.lr(step), trainer.weight_decay(step), trainer.ema(step)
    for group in trainer.optimizer.param_groups:
        group["lr"] = lr
        group["weight_decay"] = wd if group.get("name") == "decay" else 0.0
    return {"lr": lr, "weight_decay": wd, "ema_momentum": ema}


def device_micro_batches(trainer: Trainer, micro_batches: list[LoadedBatch]) -> list[tuple[Batch, object]]:
    """The step's usable micro-batches, moved to the device with their masks (asynchronously from pinned memory).

    A micro-batch whose items were all skipped on some rank is left out on every rank, so the ranks run the same
    number of forward passes; agreeing on that is a host-side collective."""
    moved = []
    video_config = frontend_for(trainer.config.data).video
    for loaded in micro_batches:
        if any_rank(loaded.batch is None):
            continue
        batch = loaded.batch.to(trainer.device)
        if batch.video is not None:  # uint8 crops from the loader: normalised here, on the device
            batch = replace(batch, video=normalise_uint8_video(batch.video, video_config))
        moved.append((batch, masks_to(loaded.masks, trainer.device)))
    return moved


def handle_skipped_step(trainer: Trainer, result: StepResult, step: int) -> None:
    """A step whose loss or gradient was not finite: drop it or stop, as configured."""
    trainer.consecutive_bad_steps += 1
    run = trainer.config.run
    detail = ", ".join(f"{k}={v:.4g}" for k, v in result.values().items() if not math.isfinite(v))
    if run.nan_policy == "stop":
        raise TrainingStopped(
            f"non-finite values at step {step + 1} ({detail}); run.nan_policy=stop, the last checkpoint is untouched"
        )
    if trainer.consecutive_bad_steps > run.max_skipped_steps:
        raise TrainingStopped(
            f"{trainer.consecutive_bad_steps} consecutive non-finite steps up to step {step + 1} "
            f"({detail}) exceed run.max_skipped_steps={run.max_skipped_steps}"
        )
    print(f"warning: step {step + 1} skipped: non-finite {detail}", flush=True)


@dataclass
class IntervalClock:
    """Wall time and data wait since the last logged step. Throughput is measured over the whole interval, whose
    end is a device read (the logged values), so it stays right when the device runs behind the host."""

    started: float = field(default_factory=time.perf_counter)
    steps: int = 0
    waited: float = 0.0

    def reset(self) -> None:
        self.started, self.steps, self.waited = time.perf_counter(), 0, 0.0


def log_step(
    trainer: Trainer,
    step: int,
    result: StepResult,
    schedules: dict[str, float],
    clock: IntervalClock,
    writer: MetricsWriter | None,
) -> dict[str, float]:
    """Average the step's values over ranks, add throughput and collapse indicators, write and return them.

    Everything read from the device (losses, terms, gradient norm, collapse indicators) comes in one transfer."""
    names = result.names()
    averaged = all_reduce_mean(result.stacked())
    collapse = collapse_metric_tensors(result.pooled_targets)
    values = torch.cat([averaged, torch.stack([v.double() for v in collapse.values()]).to(averaged.device)])
    record = dict(zip([*names, *collapse], values.tolist()))
    record.update(schedules)
    seconds = max(time.perf_counter() - clock.started, 1e-9)
    clips = trainer.config.run.batch_size * clock.steps
    record["clips_per_second"] = clips / seconds
    record["tokens_per_second"] = clips * tokens_per_clip(trainer) / seconds
    record["data_wait_fraction"] = clock.waited / seconds
    record["skipped_items_total"] = trainer.skip_log.total
    if writer is not None:
        try:
            writer.write(step + 1, record)
        except OSError as err:
            raise TrainingStopped(f"cannot write {writer.path}: {err.strerror or err}") from None
        batch = next(iter(result.pooled_targets.values())).shape[0]
        for warning in collapse_warnings(
            record,
            trainer.config.model.encoder.width,
            batch,
            trainer.config.run.collapse_std_threshold,
            trainer.config.run.collapse_rank_fraction,
        ):
            print(f"warning: step {step + 1}: {warning}", flush=True)
    return record


def tokens_per_clip(trainer: Trainer) -> int:
    audio_grid, video_grid = trainer.config.token_grids()
    return audio_grid.num_tokens + video_grid.num_tokens


def save(trainer: Trainer, manager: CheckpointManager, step: int, periodic: bool) -> None:
    payload = checkpoint_payload(trainer, step)  # every rank takes part in gathering the full state
    failure = None
    if trainer.ctx.is_main:
        try:
            manager.save(payload, step, periodic)
        except CheckpointWriteError as err:
            failure = str(err)
    if any_rank(failure is not None):  # every rank stops, not only the one that writes
        raise TrainingStopped(f"{failure or 'rank 0 could not write a checkpoint'}; the previous checkpoint is intact")


def ema_notice(config: PretrainConfig, momentum: LinearSchedule) -> str:
    """What share of its starting weights the EMA target (the encoder that probes and `mjepa extract` use) still
    holds at the end of the run. Short runs with a momentum meant for long ones end with a target that is mostly
    its initialisation; docs/results.md measures when that matters."""
    weight = ema_initial_weight(momentum, config.run.steps)
    return (
        f"EMA: after {config.run.steps} steps the target encoder still holds {100 * weight:.1f} % of its starting "
        f"weights (optim.ema_start={config.optim.ema_start}, optim.ema_end={config.optim.ema_end})"
    )


def start_or_resume(trainer: Trainer, manager: CheckpointManager) -> int:
    """Resume from the best checkpoint that loads: ``latest.pt``, or when it is damaged the newest periodic one (the
    damaged files are named, and renamed aside by the main rank); a fresh start when there is none."""
    damaged: list[tuple[Path, CheckpointError]] = []
    for path in manager.resume_candidates():
        try:
            payload = load_checkpoint(path)
        except CheckpointError as err:
            damaged.append((path, err))
            continue
        step = restore(trainer, path, payload)
        if trainer.ctx.is_main:
            for bad, err in damaged:
                aside = manager.set_aside(bad)
                print(f"warning: {err}; kept aside as {aside.name}", flush=True)
            print(f"resuming from {path} at step {step}", flush=True)
        return step
    if damaged:
        raise CheckpointError(
            f"no checkpoint in {manager.folder} can be loaded (the newest: {damaged[0][1]}); move "
            f"the folder away to start afresh"
        )
    if trainer.config.run.init_from:
        init_from_weights(trainer, trainer.config.run.init_from)
    return 0


def run_step(
    trainer: Trainer, stream: Iterator[LoadedBatch], step: int, clock: IntervalClock
) -> tuple[StepResult | None, dict[str, float]]:
    """One step of ``mjepa pretrain``: take the step's micro-batches (with the masks the loader drew), set the
    schedules, and run :func:`~mjepa.train.step.accumulated_step`. Returns its result (None when every
    micro-batch was empty) and the schedule values. Reads the device once (whether the step was finite)."""
    run = trainer.config.run
    waiting = time.perf_counter()
    micro_batches = [next_micro_batch(stream) for _ in range(run.grad_accumulation)]
    clock.waited += time.perf_counter() - waiting
    clock.steps += 1
    for loaded in micro_batches:
        trainer.skip_log.add(loaded.skipped, loaded.requested)
    check_skip_fraction(trainer)
    schedules = set_schedules(trainer, step)
    moved = device_micro_batches(trainer, micro_batches)
    if not moved:
        return None, schedules
    outcome = accumulated_step(
        trainer.parallel,
        trainer.optimizer,
        moved,
        schedules["ema_momentum"],
        trainer.amp_dtype,
        trainer.config.optim.grad_clip,
    )
    if outcome.skipped:
        handle_skipped_step(trainer, outcome, step)
    else:
        trainer.consecutive_bad_steps = 0
    return outcome, schedules


def next_micro_batch(stream: Iterator[LoadedBatch]) -> LoadedBatch:
    """The loader's next micro-batch. A loader failure is not about one file (those are skipped and counted in the
    workers): a worker that died, or a bug, ends the run with one line that says so."""
    try:
        return next(stream)
    except StopIteration:
        raise
    except Exception as err:  # noqa: BLE001 - re-raised as the run's one-line stop reason
        raise loader_failure(err) from err


def loader_failure(err: Exception) -> TrainingStopped:
    first_line = str(err).strip().splitlines()[0].strip() if str(err).strip() else ""
    return TrainingStopped(
        f"the data loader failed ({type(err).__name__}: {first_line}); the last checkpoint is "
        f"untouched, run the same command to resume"
    )


MIN_DRAWS_FOR_SKIP_CHECK = 256


def check_skip_fraction(trainer: Trainer) -> None:
    """Stop when too many drawn items were unreadable (``data.max_skip_fraction``), on every rank at once."""
    log, limit = trainer.skip_log, trainer.config.data.max_skip_fraction
    judged = log.draws >= MIN_DRAWS_FOR_SKIP_CHECK or (log.draws > 0 and log.total == log.draws)
    exceeded = judged and log.total > limit * log.draws
    if any_rank(exceeded):
        detail = (
            f"{log.total} of the {log.draws} items drawn so far were skipped, more than "
            f"data.max_skip_fraction={limit}: {log.top_reasons()}"
            if exceeded
            else "another rank skipped more than data.max_skip_fraction of its items"
        )
        raise TrainingStopped(f"{detail}; check the manifest's paths with `mjepa data validate`")


def is_log_step(run, step: int, start_step: int) -> bool:
    return (step + 1) % run.log_every == 0 or step + 1 == run.steps or step == start_step


def train_steps(
    trainer: Trainer,
    manager: CheckpointManager,
    start_step: int,
    writer: MetricsWriter | None,
    preemption: PreemptionFlag,
    result: PretrainResult,
) -> None:
    with train_stream(trainer.config, trainer.ctx, start_step, pin_memory=trainer.device.type == "cuda") as stream:
        try:
            _train_steps(trainer, stream, manager, start_step, writer, preemption, result)
        except RuntimeError as err:
            # PyTorch reports a dead loader worker from its SIGCHLD handler, wherever the main process then is.
            if "DataLoader worker" not in str(err):
                raise
            raise loader_failure(err) from err


def _train_steps(
    trainer: Trainer,
    stream: Iterator[LoadedBatch],
    manager: CheckpointManager,
    start_step: int,
    writer: MetricsWriter | None,
    preemption: PreemptionFlag,
    result: PretrainResult,
) -> None:
    run = trainer.config.run
    progress = ProgressLine(run.steps, start_step) if trainer.ctx.is_main else None
    clock = IntervalClock()
    for step in range(start_step, run.steps):
        outcome, schedules = run_step(trainer, stream, step, clock)
        if outcome is not None and is_log_step(run, step, start_step):
            record = log_step(trainer, step, outcome, schedules, clock, writer)
            clock.reset()
            result.losses[step + 1] = record["loss"]
            if progress is not None:
                progress.update(step + 1, record["loss"], record["clips_per_second"])
        result.last_step = step + 1
        periodic = (step + 1) % run.checkpoint_every == 0 or step + 1 == run.steps
        stop_signal = any_rank(preemption.received is not None)
        if periodic or stop_signal:
            save(trainer, manager, step + 1, periodic)
        if stop_signal:
            result.preempted = preemption.received or "signal on another rank"
            return


def skip_file_name(ctx: DistributedContext, suffix: str) -> str:
    """``skipped_items.jsonl`` (appended live) / ``.json`` (summary) of rank 0; other ranks add ``.rankN``."""
    return f"skipped_items{'' if ctx.is_main else f'.rank{ctx.rank}'}{suffix}"


def pretrain(config: PretrainConfig) -> PretrainResult:
    """Run (or resume) the pretraining described by ``config``; see docs/training.md."""
    ctx = init_distributed(resolve_device(config.run.device, setting="run.device").type)
    config.run.micro_batch_size(ctx.world_size)  # checked before anything is written
    for manifest in config.data.item_sources():
        check_manifest_opens(manifest)
    preemption = PreemptionFlag()
    writer = None
    try:
        trainer = build_trainer(config, ctx)
        run_dir = Path(config.run.out_dir)
        manager = CheckpointManager(run_dir / "checkpoints", config.run.keep_checkpoints)
        start_step = start_or_resume(trainer, manager)  # first: a refused resume must leave the folder as it was
        trainer.skip_log = SkipLog(run_dir / skip_file_name(ctx, ".jsonl"), state=trainer.skip_log.state())
        if ctx.is_main:
            manager.remove_stale_temporaries()
            run_files.write_run_files(run_dir, config, ctx)
            writer = MetricsWriter(run_dir, config.run.tensorboard, resume_step=start_step)
        if ctx.is_main:
            print(ema_notice(config, trainer.ema), flush=True)
        result = PretrainResult(run_dir, start_step)
        train_steps(trainer, manager, start_step, writer, preemption, result)
        if ctx.is_main:
            print(f"{trainer.skip_log.summary()}; checkpoints in {manager.folder}", flush=True)
        trainer.skip_log.write(run_dir / skip_file_name(ctx, ".json"))
        return result
    finally:
        if writer is not None:
            writer.close()
        preemption.restore()
        shutdown()
