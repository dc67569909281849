"""From a DataConfig to this rank's stream of training micro-batches (synthetic, AtariAV or user manifests)."""

from __future__ import annotations

import functools
import multiprocessing
import os
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch.utils.data import DataLoader

from mjepa.data.loading.dataset import AudioVisualDataset, LoadedBatch, Sample, SkippedItem, collate_samples
from mjepa.data.loading.samplers import class_balance_weights, mixture_weights, seed_worker
from mjepa.data.loading.stream import StepBatchSampler
from mjepa.data.manifests.manifest import ManifestEntry, read_manifest
from mjepa.data.preprocess.frontend import frontend_for
from mjepa.data.synthetic import SyntheticDataset
from mjepa.distributed import DistributedContext, barrier
from mjepa.masks import MaskSampler, stack_sample_masks
from mjepa.pretrain_config import DataConfig, PretrainConfig
from mjepa.terms import active_modes
from mjepa.train.loader_workers import LoaderWorkers, TrainStream


def _atari_manifest(data: DataConfig, ctx: DistributedContext) -> tuple[list[ManifestEntry], list[str]]:
    from mjepa.data.atari.generate import atari_av_manifest_path, generate_atari_av, read_atari_av_labels

    if ctx.is_main:  # one rank generates, the others wait and read
        generate_atari_av(
            data.atari_dir,
            games=data.atari_games,
            clips_per_game=data.atari_clips_per_game,
            test_clips_per_game=data.atari_test_clips_per_game,
        )
    barrier()
    return read_manifest(atari_av_manifest_path(data.atari_dir, "train")), read_atari_av_labels(data.atari_dir)


def training_items(data: DataConfig) -> tuple[list[ManifestEntry], list[str], torch.Tensor | None]:
    """The entries of the run's manifests or shard folders, their label vocabulary, and per-entry sampling weights
    (mixture or AudioSet class balance; None for uniform sampling)."""
    parts = [read_manifest(path) for path in data.item_sources()]
    entries = [entry for part in parts for entry in part]
    vocabulary = sorted({label for entry in entries for label in entry.labels})
    weights = None
    if data.mixture_weights:
        weights = mixture_weights([len(p) for p in parts], list(data.mixture_weights))
    elif data.class_balanced:
        index = {label: i for i, label in enumerate(vocabulary)}
        labels = torch.zeros(len(entries), len(vocabulary))
        for row, entry in enumerate(entries):
            for label in entry.labels:
                labels[row, index[label]] = 1.0
        weights = class_balance_weights(labels)
    return entries, vocabulary, weights


def training_mask_sampler(config: PretrainConfig) -> MaskSampler:
    audio_grid, video_grid = config.token_grids()
    return MaskSampler(config.masks, audio_grid, video_grid, active_modes(config.model.objective))


class MaskingCollate:
    """``collate_fn`` of the training loader: stacks the good samples and draws their masks, in the loader worker.

    Each sample's masks are keyed by ``(seed, step, row)``, its row in the step's global batch (from its stream
    position), so they do not depend on the rank, the worker or the accumulation split, and the training process
    draws none.
    """

    def __init__(self, sampler: MaskSampler, seed: int, global_batch: int) -> None:
        self.sampler, self.seed, self.global_batch = sampler, seed, global_batch

    def __call__(self, items: list[Sample | SkippedItem]) -> LoadedBatch:
        loaded = collate_samples(items)
        if loaded.batch is None:
            return loaded
        if loaded.positions is None:
            raise ValueError(
                "training samples must carry their stream position (key the dataset by "
                "(index, position), as StepBatchSampler does)"
            )
        keys = [divmod(position, self.global_batch) for position in loaded.positions]
        masks = [self.sampler.sample_one(self.seed, step, row) for step, row in keys]
        loaded.masks = stack_sample_masks(masks)
        return loaded


def _is_fd_sharing_error(tb) -> bool:
    sharer = os.path.join("multiprocessing", "resource_sharer.py")
    return any(frame.filename.endswith(sharer) for frame in traceback.extract_tb(tb))


def quiet_fd_sharing_errors() -> None:
    """Keep the file-descriptor server of ``multiprocessing`` from printing a traceback when a loader worker dies.

    Tensors cross between the training process and its loader workers as shared file descriptors, handed over by a
    server thread in the sending process. When a worker dies mid-handover (killed, out of memory), that thread
    prints the broken connection's traceback through ``sys.excepthook``, next to the run's own one-line report of
    the same failure (:func:`mjepa.train.loop.loader_failure`). This filters exactly those; every other exception
    reaches the previous hook. Installed once per process."""
    previous = sys.excepthook
    if getattr(previous, "mjepa_fd_filter", False):
        return

    def hook(exc_type, exc, tb):
        if not _is_fd_sharing_error(tb):
            previous(exc_type, exc, tb)

    hook.mjepa_fd_filter = True
    sys.excepthook = hook


def build_train_stream(
    config: PretrainConfig, ctx: DistributedContext, start_step: int, pin_memory: bool = False
) -> TrainStream:
    """This rank's micro-batches from ``start_step`` on, in order: ``run.grad_accumulation`` per step, each with
    its masks. ``pin_memory`` (for a CUDA device) lets the step's host-to-device copies run asynchronously."""
    data, run = config.data, config.run
    run.micro_batch_size(ctx.world_size)
    weights = None
    if data.source == "synthetic":
        dataset = SyntheticDataset(
            run.seed, run.batch_size, data.audio_frames, data.mel_bins, data.num_frames, data.image_size
        )
    else:
        if data.source == "atari":
            entries, vocabulary = _atari_manifest(data, ctx)
        else:
            entries, vocabulary, weights = training_items(data)
        frontend = frontend_for(data)
        dataset = AudioVisualDataset(
            entries,
            vocabulary,
            frontend.clip,
            frontend.audio,
            frontend.video,
            training=True,
            seed=run.seed,
            missing_video=data.missing_video,
            missing_audio=data.missing_audio,
            decode_timeout_s=data.decode_timeout_s if data.isolate_decoding else None,
            uint8_video=True,  # normalised on the device: a quarter of the bytes through shared memory and PCIe
        )
    sampler = StepBatchSampler(
        len(dataset),
        run.batch_size,
        run.grad_accumulation,
        ctx.world_size,
        ctx.rank,
        run.seed,
        start_step,
        run.steps,
        weights,
    )
    workers = None
    if data.num_workers > 0:
        quiet_fd_sharing_errors()
        workers = LoaderWorkers(data.num_workers, multiprocessing.get_context())  # the DataLoader's default context
    seed_fn = functools.partial(seed_worker, seed=run.seed, rank=ctx.rank)
    loader = DataLoader(
        dataset,
        batch_sampler=sampler,
        num_workers=data.num_workers,
        collate_fn=MaskingCollate(training_mask_sampler(config), run.seed, run.batch_size),
        worker_init_fn=workers.worker_init_fn(seed_fn) if workers is not None else None,
        persistent_workers=data.num_workers > 0,
        prefetch_factor=4 if data.num_workers > 0 else None,
        pin_memory=pin_memory,
    )
    return TrainStream(loader, workers)


@contextmanager
def train_stream(
    config: PretrainConfig, ctx: DistributedContext, start_step: int, pin_memory: bool = False
) -> Iterator[Iterator[LoadedBatch]]:
    """:func:`build_train_stream` whose workers are stopped when the block ends, whether it ends well or not."""
    stream = build_train_stream(config, ctx, start_step, pin_memory)
    try:
        yield stream
    finally:
        stream.close()
