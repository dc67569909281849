"""The training step at the presets' real grids, global batch and world sizes, made cheap with tiny tensors.

- Masks come from the loader workers, keyed by (seed, step, row of the global batch): the same sample gets the same
  masks, bit for bit, at world size 1 or 8, with 0 or 2 workers, with or without gradient accumulation.
- The training process draws no masks.
- ``mjepa pretrain`` runs the same step as ``train_step``.
- Outside logging steps, a step reads the device once.
"""

from __future__ import annotations

import json
import os

import pytest
import torch
from torch.utils.data import DataLoader

from mjepa.checkpoint_file import load_checkpoint
from mjepa.data.loading.stream import StepBatchSampler
from mjepa.data.synthetic import SyntheticDataset
from mjepa.distributed import DistributedContext
from mjepa.masks import MaskSampler
from mjepa.pretrain_config import load_pretrain_config
from mjepa.train.data_pipeline import MaskingCollate, build_train_stream, training_mask_sampler
from mjepa.train.device_reads import DeviceReadCounter
from mjepa.train.loop import IntervalClock, TrainingStopped, build_trainer, pretrain, run_step, set_schedules
from mjepa.train.step import train_step
from pretrain_helpers import synthetic_run

SINGLE = DistributedContext(0, 1, 0, "single")


def _preset_collate(global_batch: int) -> MaskingCollate:
    """The training collate of the ViT-L preset: its real token grids (audio 64x8, video 8x14x14)."""
    config = load_pretrain_config("vitl16-as2m", ["data.source=synthetic", f"run.batch_size={global_batch}"])
    return MaskingCollate(training_mask_sampler(config), config.run.seed, global_batch)


def _rows_masks(world_size: int, workers: int, accumulation: int = 1, global_batch: int = 512, step: int = 5):
    """Global row -> that sample's masks (mode -> [(context, target)]), gathered over simulated ranks."""
    collate = _preset_collate(global_batch)
    dataset = SyntheticDataset(0, 64, audio_frames=16, mel_bins=16, video_frames=2, size=16)  # tensors don't matter
    rows = {}
    for rank in range(world_size):
        sampler = StepBatchSampler(
            len(dataset), global_batch, accumulation, world_size, rank, seed=0, start_step=step, total_steps=step + 1
        )
        loader = DataLoader(dataset, batch_sampler=sampler, collate_fn=collate, num_workers=workers)
        for loaded in loader:
            for i, position in enumerate(loaded.positions):
                assert position // global_batch == step
                rows[position % global_batch] = {
                    m: [(p.context[i], p.target[i]) for p in pairs] for m, pairs in loaded.masks.items()
                }
    assert sorted(rows) == list(range(global_batch))
    return rows


@pytest.mark.slow
def test_same_masks_for_every_sample_at_any_world_size_worker_count_and_accumulation():
    reference = _rows_masks(world_size=1, workers=0)
    for world_size, workers, accumulation in ((8, 2, 1), (8, 0, 2)):
        other = _rows_masks(world_size, workers, accumulation)
        for row, masks in reference.items():
            for mode, pairs in masks.items():
                for (c1, t1), (c2, t2) in zip(pairs, other[row][mode]):
                    assert torch.equal(c1, c2) and torch.equal(t1, t2), (world_size, workers, row, mode)


@pytest.mark.parametrize("preset", ["vitl16-as2m", "vitg16-as2m-vm2m"])
def test_mask_lengths_at_the_presets_batch_equal_those_at_batch_16(preset):
    lengths = {}
    for batch in (16, 64, 512):
        config = load_pretrain_config(
            preset, ["data.source=synthetic", "data.mixture_weights=[]", f"run.batch_size={batch}"]
        )
        lengths[batch] = training_mask_sampler(config).lengths()
    assert lengths[16] == lengths[64] == lengths[512]


class _ForbidMaskDraws:
    """Patches ``MaskSampler.sample_one`` to fail in the process that installs it (the training process); forked
    loader workers inherit the patch but have another pid, so they draw as usual."""

    def __init__(self, monkeypatch):
        training_pid = os.getpid()
        original = MaskSampler.sample_one

        def guarded(sampler, seed, step, index):
            if os.getpid() == training_pid:
                raise AssertionError("the training process drew masks")
            return original(sampler, seed, step, index)

        monkeypatch.setattr(MaskSampler, "sample_one", guarded)


def test_the_training_process_draws_no_masks(tmp_path, monkeypatch):
    _ForbidMaskDraws(monkeypatch)
    config = load_pretrain_config("tiny-cpu", synthetic_run(tmp_path / "run", 4, extra=("data.num_workers=1",)))
    assert pretrain(config).last_step == 4
    # The guard itself works: without loader workers the collate runs in the training process and is caught.
    config = load_pretrain_config("tiny-cpu", synthetic_run(tmp_path / "inline", 4, extra=("data.num_workers=0",)))
    with pytest.raises(TrainingStopped, match="drew masks"):  # a loader failure stops the run, naming the cause
        pretrain(config)


def test_pretrain_and_train_step_give_identical_losses_and_parameters(tmp_path):
    config = load_pretrain_config(
        "tiny-cpu",
        synthetic_run(
            tmp_path / "run", 4, extra=("data.num_workers=0", "run.checkpoint_every=1", "run.keep_checkpoints=4")
        ),
    )
    pretrain(config)
    after_one = load_checkpoint(tmp_path / "run" / "checkpoints" / "step_00000001.pt")
    first = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[0])

    trainer = build_trainer(config, SINGLE)  # the same initial weights and optimiser as the run
    schedules = set_schedules(trainer, 0)
    loaded = next(build_train_stream(config, SINGLE, 0))
    result = train_step(
        trainer.model,
        trainer.optimizer,
        loaded.batch,
        loaded.masks,
        schedules["ema_momentum"],
        trainer.amp_dtype,
        config.optim.grad_clip,
    )
    values = result.values()
    assert values["loss"] == first["loss"]
    assert all(values[name] == first[name] for name in result.terms)
    state = trainer.model.state_dict()
    assert set(state) == set(after_one["model"])
    for key, value in after_one["model"].items():
        assert torch.equal(state[key], value), key


def test_a_step_outside_logging_reads_the_device_once(tmp_path):
    config = load_pretrain_config(
        "tiny-cpu", synthetic_run(tmp_path / "run", 6, extra=("data.num_workers=0", "run.log_every=100"))
    )
    trainer = build_trainer(config, SINGLE)
    stream = build_train_stream(config, SINGLE, 0)
    clock = IntervalClock()
    run_step(trainer, stream, 0, clock)  # first step: optimiser state is created
    for step in (1, 2, 3):
        loaded = next(stream)  # drawn (collate, masks) outside the count: the loader workers do this on a GPU run
        replay = iter([loaded])
        with DeviceReadCounter() as reads:
            outcome, _ = run_step(trainer, replay, step, clock)
        assert not outcome.skipped
        assert reads.count <= 1, reads.count
    with DeviceReadCounter() as reads:  # the counter does see reads
        float(outcome.loss)
    assert reads.count == 1
