"""The GPU path: skipped without CUDA, run by ``benchmarks/gpu_check.sh`` (``pytest -m cuda``) on a GPU machine."""

from __future__ import annotations

import pytest
import torch

from conftest import tiny_model_config
from mjepa.checkpoint_file import load_checkpoint
from mjepa.config import MaskConfig
from mjepa.data.synthetic import synthetic_batch
from mjepa.distributed import DistributedContext
from mjepa.masks import MaskSampler, masks_to
from mjepa.models.mjepa import MJEPA
from mjepa.pretrain_config import load_pretrain_config
from mjepa.train.data_pipeline import build_train_stream
from mjepa.train.device_reads import DeviceReadCounter
from mjepa.train.loop import pretrain
from mjepa.train.optim import build_optimizer
from mjepa.train.step import train_step
from pretrain_helpers import synthetic_run

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

CUDA = torch.device("cuda")


def _model_batch_masks():
    torch.manual_seed(0)
    model = MJEPA(tiny_model_config()).to(CUDA)
    batch, _ = synthetic_batch(0, 0, 4)
    audio_grid, video_grid = model.token_grids(tuple(batch.audio.shape), tuple(batch.video.shape))
    masks = MaskSampler(MaskConfig(), audio_grid, video_grid).sample(4, seed=0)
    return model, batch.to(CUDA), masks_to(masks, CUDA)


def test_bf16_step_on_cuda_is_finite_and_reads_the_device_once():
    model, batch, masks = _model_batch_masks()
    optimizer = build_optimizer(model.named_trainable_parameters(), 1e-3, 0.04)
    train_step(model, optimizer, batch, masks, 0.99, torch.bfloat16, 1.0)  # creates the optimiser state
    with DeviceReadCounter() as reads:
        result = train_step(model, optimizer, batch, masks, 0.99, torch.bfloat16, 1.0)
    assert reads.count == 1
    assert not result.skipped and result.loss.device.type == "cuda"
    assert all(torch.isfinite(torch.tensor(v)) for v in result.values().values())


def test_token_layouts_are_cached_on_the_device():
    model, batch, _ = _model_batch_masks()
    encoder = model.encoder("AV")
    first = encoder.layout("AV", tuple(batch.audio.shape), tuple(batch.video.shape), CUDA)
    again = encoder.layout("AV", tuple(batch.audio.shape), tuple(batch.video.shape), CUDA)
    assert first is again and first.coords.device.type == "cuda"


def test_training_loader_pins_batches_and_masks(tmp_path):
    config = load_pretrain_config("tiny-cpu", synthetic_run(tmp_path / "run", 4, extra=("data.num_workers=1",)))
    loaded = next(build_train_stream(config, DistributedContext(0, 1, 0, "single"), 0, pin_memory=True))
    assert loaded.batch.video.is_pinned() and loaded.batch.audio.is_pinned()
    assert all(p.context.is_pinned() and p.target.is_pinned() for pairs in loaded.masks.values() for p in pairs)


def test_pretrain_on_cuda_writes_a_checkpoint_that_loads_on_the_cpu(tmp_path):
    config = load_pretrain_config(
        "tiny-cpu",
        synthetic_run(tmp_path / "run", 4, extra=("run.device=cuda", "run.precision=bf16", "data.num_workers=1")),
    )
    assert pretrain(config).last_step == 4
    state = load_checkpoint(tmp_path / "run" / "checkpoints" / "latest.pt")["model"]
    assert all(v.device.type == "cpu" and torch.isfinite(v).all() for v in state.values())


def test_probe_grid_trains_on_cuda_batched_heads_agreeing_with_one_at_a_time():
    from mjepa.eval.probe import ProbeSettings, predict, train_probe_grid

    gen = torch.Generator().manual_seed(0)
    tokens = torch.randn(64, 12, 32, generator=gen).half()  # features stay in CPU memory
    targets = (torch.rand(64, 5, generator=gen) < 0.3).float()
    scores = {}
    for per_pass in (1, None):
        settings = ProbeSettings(
            learning_rates=(1e-3, 3e-4),
            weight_decays=(0.01, 0.1),
            epochs=2,
            batch_size=16,
            num_heads=4,
            heads_per_pass=per_pass,
        )
        probes = train_probe_grid(settings, tokens, None, targets, multi_label=True, device=CUDA)
        assert all(p.head.weight.device.type == "cuda" for p in probes)
        scores[per_pass] = torch.stack([predict(p, tokens, None, multi_label=True) for p in probes])
    assert scores[1].device.type == "cpu"
    assert torch.allclose(scores[1], scores[None], atol=2e-2)  # bf16 products, summed in a different order
