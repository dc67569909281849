"""The step memory cost model: its per-block count equals what autograd really saves; its planning helpers."""

import pytest
import torch

from conftest import tiny_model_config
from mjepa.config import ModelConfig
from mjepa.cost_model import (
    block_saved_bytes,
    count_parameters,
    estimate_step_memory,
    gpu_bytes_needed,
    max_batch_per_gpu,
    sample_masks,
    step_flops_per_gpu,
)
from mjepa.flops import step_flops
from mjepa.models.kernels import reference_kernels
from mjepa.models.mjepa import MJEPA
from mjepa.models.positions import Rotary3D
from mjepa.models.vit import Block

AUDIO, VIDEO = (1, 256, 64), (1, 3, 4, 64, 64)


@pytest.mark.parametrize("amp", [False, True])
def test_block_saved_bytes_equal_the_tensors_autograd_saves(amp):
    width, heads, tokens, batch = 96, 3, 50, 2
    block = Block(width, heads, 4.0)
    x = torch.randn(batch, tokens, width, requires_grad=True)
    cos, sin = Rotary3D(width // heads).tables(torch.randn(batch, tokens, 3))
    saved = {}

    def pack(t):
        storage = t.untyped_storage()
        saved[storage.data_ptr()] = storage.nbytes()
        return t

    # The stock kernels: what a GPU runs (the CPU fast-layout path saves the same tensors, plus attention in fp32).
    with reference_kernels(), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            block(x, (cos, sin))
    not_per_token = {t.untyped_storage().data_ptr() for t in (cos, sin, *block.parameters())}
    per_token = sum(
        n
        for ptr, n in saved.items()
        if ptr not in not_per_token and n % (batch * tokens) == 0 and not _is_weight_copy(n, block)
    )
    assert per_token / (batch * tokens) == block_saved_bytes(width, heads, 4 * width, amp)


def _is_weight_copy(nbytes: int, block: Block) -> bool:
    return any(nbytes == 2 * p.numel() for p in block.parameters() if p.dim() == 2)


def test_parameter_counts_match_the_built_model():
    config = tiny_model_config()
    model = MJEPA(config)
    counts = count_parameters(config)
    assert counts.trained == sum(p.numel() for p in model.trainable_parameters())
    assert counts.target == sum(p.numel() for p in model.target_encoders.parameters())
    assert counts.largest_block == sum(p.numel() for p in model.encoders["shared"].blocks.blocks[0].parameters())


def test_checkpointing_and_sharding_shrink_what_they_should():
    config = tiny_model_config()
    masks = sample_masks(config, AUDIO, VIDEO)
    plain = estimate_step_memory(config, 8, AUDIO, VIDEO, masks, amp=True, checkpointing=False)
    ckpt = estimate_step_memory(config, 8, AUDIO, VIDEO, masks, amp=True, checkpointing=True)
    assert ckpt.saved_activations < plain.saved_activations / 3 and ckpt.parameters == plain.parameters
    ddp8 = estimate_step_memory(config, 8, AUDIO, VIDEO, masks, True, False, "ddp", 8)
    fsdp8 = estimate_step_memory(config, 8, AUDIO, VIDEO, masks, True, False, "fsdp", 8)
    assert ddp8.optimizer == plain.optimizer and fsdp8.optimizer == pytest.approx(plain.optimizer / 8)
    assert fsdp8.saved_activations == ddp8.saved_activations and fsdp8.gathered_blocks > 0
    double = estimate_step_memory(config, 16, AUDIO, VIDEO, masks, True, False)
    assert double.saved_activations == pytest.approx(2 * plain.saved_activations)
    with pytest.raises(ValueError, match="strategy"):
        estimate_step_memory(config, 8, AUDIO, VIDEO, masks, True, False, "zero3", 8)


def test_max_batch_is_the_largest_that_fits():
    config = ModelConfig.from_size("base")
    masks = sample_masks(config, AUDIO, VIDEO)
    budget = 8 * 2**30
    best = max_batch_per_gpu(config, AUDIO, VIDEO, budget, True, False, "ddp", 1, masks)
    need = lambda b: gpu_bytes_needed(estimate_step_memory(config, b, AUDIO, VIDEO, masks, True, False))  # noqa: E731
    assert best >= 1 and need(best) <= budget < need(best + 1)
    assert max_batch_per_gpu(config, AUDIO, VIDEO, 2**20, True, False, "ddp", 1, masks) == 0


def test_flops_per_gpu_scale_with_the_batch():
    config = tiny_model_config()
    masks = sample_masks(config, AUDIO, VIDEO)
    one = step_flops(config, 1, AUDIO, VIDEO, masks).training_step
    assert step_flops_per_gpu(config, 6, AUDIO, VIDEO, masks) == pytest.approx(6 * one)
