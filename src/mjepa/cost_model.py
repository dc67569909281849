"""Memory and FLOPs of one MJEPA training step per GPU, before renting the GPUs.

The model counts what the step keeps alive:

- **state**: fp32 parameters of the trained parts and of the EMA target, their fp32 gradients and AdamW's two
  moments; under FSDP2 all of it is divided by the number of ranks, plus the unsharded fp32 parameters and gradients
  of the blocks being computed (the current and the prefetched one);
- **bf16 weight copies** under autocast: one per trained weight, cached until the forward ends;
- **saved activations**: for every trained pass (context encoder per mode and mask configuration, predictor per
  mode and mask configuration), the tensors each pre-norm block saves for its backward, counted per token from the
  block's structure (``block_saved_bytes``), plus a few per-pass tensors (gathered tokens, final norm, loss); with
  activation checkpointing only each block's input is saved, plus one block's activations during its recompute;
- **targets**: the normalised target tokens of every mode at every target level, and the transient working set of the
no-grad target
  passes;
- **backward working set**: the gradients flowing through one block of the largest trained pass.

``benchmarks/bench_memory.py`` measures the step's peak on CPU for two sizes with and without checkpointing and
prints this model's prediction beside it (docs/performance.md). The GPU figures add the CUDA context and the
caching allocator's slack as a fixed headroom (``GPU_RESERVED_BYTES``, ``ALLOCATOR_SLACK``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from mjepa.config import MaskConfig, ModelConfig
from mjepa.flops import step_flops
from mjepa.grids import audio_grid, video_grid
from mjepa.masks import Masks, MaskSampler
from mjepa.terms import active_modes

STRATEGIES = ("ddp", "fsdp")
GPU_RESERVED_BYTES = 1.5 * 2**30  # CUDA context, cuBLAS/cuDNN workspaces, NCCL buffers
ALLOCATOR_SLACK = 1.10  # fragmentation of PyTorch's caching allocator on top of live tensors


@dataclass(frozen=True)
class ParameterCounts:
    trained: int  # context encoder(s), predictor(s), cross-modal heads
    target: int  # EMA target encoder(s)
    largest_block: int  # the biggest transformer block (the unit FSDP2 gathers)


@dataclass(frozen=True)
class TrainedPass:
    tokens: int  # per sample
    width: int
    depth: int
    num_heads: int
    mlp_hidden: int


@dataclass(frozen=True)
class StepMemory:
    """Bytes per GPU for one training step (``total`` is the peak the model predicts)."""

    parameters: float
    gradients: float
    optimizer: float
    gathered_blocks: float
    weight_copies: float  # bf16 copies of the trained weights that autocast caches for the whole forward
    saved_activations: float
    targets: float
    working: float

    @property
    def state(self) -> float:
        return self.parameters + self.gradients + self.optimizer + self.gathered_blocks + self.weight_copies

    @property
    def step_peak(self) -> float:
        """What the step adds on top of the resident parameters (what bench_memory measures on CPU)."""
        return self.total - self.parameters

    @property
    def total(self) -> float:
        return self.state + self.saved_activations + self.targets + self.working

    def as_gib(self) -> dict[str, float]:
        record = {k: v / 2**30 for k, v in asdict(self).items()}
        record["total"] = self.total / 2**30
        return record


def count_parameters(config: ModelConfig) -> ParameterCounts:
    """Exact parameter counts, from the model built on the meta device (no memory is allocated)."""
    from mjepa.models.mjepa import MJEPA

    with torch.device("meta"):
        model = MJEPA(config)
    trained = sum(p.numel() for p in model.trainable_parameters())
    target = sum(p.numel() for p in model.target_encoders.parameters())
    blocks = [b for m in (*model.encoders.values(), *model.predictors.values()) for b in m.blocks.blocks]
    largest = max(sum(p.numel() for p in b.parameters()) for b in blocks)
    return ParameterCounts(trained, target, largest)


def block_saved_bytes(width: int, num_heads: int, mlp_hidden: int, amp: bool) -> float:
    """Bytes one pre-norm block saves per token for its backward.

    Residual-stream tensors stay fp32 under autocast; products' inputs and outputs are bf16 (``amp``) or fp32:
    norm-1 input (residual) and its two statistics; qkv input; the qkv output (kept whole by the value view);
    rotated q and k; attention output and its log-sum-exp; output-projection input; norm-2 input (residual) and
    statistics; MLP input; GELU input; second MLP layer input. Under bf16 the rotary tables are cast per call.
    """
    a = 2 if amp else 4
    head_dim = width // num_heads
    residual = 2 * width * 4 + 2 * 2 * 4  # norm inputs and their mean / rstd
    products = (
        width + 3 * width + 2 * width + width + width + width
    ) * a  # qkv in/out, q', k', attn out, proj in, fc1 in
    mlp = 2 * mlp_hidden * a  # GELU input, fc2 input
    lse = num_heads * 4
    rotary = 2 * 2 * (head_dim // 2) * a if amp else 0  # cos and sin (broadcast over heads), cast for q and k
    return float(residual + products + mlp + lse + rotary)


PASS_SAVED_BYTES_PER_WIDTH = 6 * 4  # per token of a trained pass: gathered input, final norm in/out, loss terms


def trained_passes(config: ModelConfig, masks: Masks) -> list[TrainedPass]:
    """The context-encoder and predictor passes of every active mode and mask configuration."""
    enc, pred = config.encoder, config.predictor
    passes = []
    for mode in active_modes(config.objective):
        for pair in masks[mode]:
            n_ctx, n_tgt = pair.context.shape[1], pair.target.shape[1]
            passes.append(
                TrainedPass(n_ctx, enc.width, enc.depth, enc.num_heads, int(round(enc.width * enc.mlp_ratio)))
            )
            passes.append(
                TrainedPass(
                    n_ctx + n_tgt, pred.width, pred.depth, pred.num_heads, int(round(pred.width * pred.mlp_ratio))
                )
            )
    return passes


def full_tokens(config: ModelConfig, audio_shape: tuple[int, ...], video_shape: tuple[int, ...]) -> dict[str, int]:
    enc = config.encoder
    audio = (audio_shape[1] // enc.audio_patch_time) * (audio_shape[2] // enc.audio_patch_freq)
    video = (
        (video_shape[2] // enc.video_tubelet_time)
        * (video_shape[3] // enc.video_patch_size)
        * (video_shape[4] // enc.video_patch_size)
    )
    return {"A": audio, "V": video, "AV": audio + video}


def sample_masks(
    config: ModelConfig,
    audio_shape: tuple[int, ...],
    video_shape: tuple[int, ...],
    mask_config: MaskConfig = MaskConfig(),
    seed: int = 0,
    batch: int = 2,
) -> Masks:
    """Masks of the recipe at these shapes, drawn for ``batch`` samples. Their lengths depend on the grids and the
    mask configuration only, so the token counts hold for any per-GPU batch."""
    enc = config.encoder
    audio = audio_grid(audio_shape[1], audio_shape[2], enc.audio_patch_time, enc.audio_patch_freq)
    video = video_grid(video_shape[2], video_shape[3], video_shape[4], enc.video_tubelet_time, enc.video_patch_size)
    sampler = MaskSampler(mask_config, audio, video, active_modes(config.objective))
    return sampler.sample(batch, seed=seed)


def estimate_step_memory(
    config: ModelConfig,
    batch: int,
    audio_shape: tuple[int, ...],
    video_shape: tuple[int, ...],
    masks: Masks,
    amp: bool,
    checkpointing: bool,
    strategy: str = "ddp",
    world_size: int = 1,
) -> StepMemory:
    """Predicted per-GPU bytes of one training step with ``batch`` samples per GPU.

    ``audio_shape`` ``(B, frames, mel_bins)`` and ``video_shape`` ``(B, C, T, H, W)``: their B is ignored.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
    if world_size < 1:
        raise ValueError(f"world_size must be >= 1, got {world_size}")
    counts = count_parameters(config)
    shards = world_size if strategy == "fsdp" else 1
    parameters = 4.0 * (counts.trained + counts.target) / shards
    gradients = 4.0 * counts.trained / shards
    optimizer = 8.0 * counts.trained / shards
    gathered = 2 * 2 * 4.0 * counts.largest_block if strategy == "fsdp" and world_size > 1 else 0.0
    # Autocast keeps one bf16 copy of every trained weight it cast until the forward ends (unsharded under FSDP2).
    copies = 2.0 * counts.trained if amp else 0.0

    passes = trained_passes(config, masks)
    saved = working = 0.0
    for p in passes:
        per_token_block = block_saved_bytes(p.width, p.num_heads, p.mlp_hidden, amp)
        per_pass = batch * p.tokens * p.width * PASS_SAVED_BYTES_PER_WIDTH
        if checkpointing:
            saved += batch * p.tokens * p.depth * p.width * 4 + per_pass
            working = max(working, batch * p.tokens * per_token_block)  # one block recomputed at a time
        else:
            saved += batch * p.tokens * p.depth * per_token_block + per_pass
    largest = max(passes, key=lambda p: p.tokens * p.width)
    a = 2 if amp else 4
    working += batch * largest.tokens * (largest.mlp_hidden + 3 * largest.width) * a  # gradients through one block

    tokens = full_tokens(config, audio_shape, video_shape)
    enc = config.encoder
    modes = active_modes(config.objective)
    # One fp32 tensor per target level per mode (objective.target_layers).
    levels = len(config.objective.target_layers)
    targets = levels * sum(batch * tokens[m] * enc.width * 4 for m in modes)
    # The no-grad target pass of the longest mode: residual + qkv + MLP hidden of one block, alive at once.
    target_transient = (
        batch * max(tokens[m] for m in modes) * (enc.width * 4 + (3 * enc.width + enc.mlp_ratio * enc.width) * a)
    )
    working = max(working, target_transient)
    return StepMemory(parameters, gradients, optimizer, gathered, copies, saved, float(targets), working)


def gpu_bytes_needed(memory: StepMemory) -> float:
    return memory.total * ALLOCATOR_SLACK + GPU_RESERVED_BYTES


def max_batch_per_gpu(
    config: ModelConfig,
    audio_shape: tuple[int, ...],
    video_shape: tuple[int, ...],
    gpu_bytes: float,
    amp: bool,
    checkpointing: bool,
    strategy: str,
    world_size: int,
    masks: Masks | None = None,
) -> int:
    """The largest per-GPU batch whose predicted peak (with slack and reserved memory) fits ``gpu_bytes``."""
    masks = masks if masks is not None else sample_masks(config, audio_shape, video_shape)
    fits = lambda b: (
        gpu_bytes_needed(
            estimate_step_memory(  # noqa: E731
                config, b, audio_shape, video_shape, masks, amp, checkpointing, strategy, world_size
            )
        )
        <= gpu_bytes
    )
    if not fits(1):
        return 0
    low, high = 1, 2
    while fits(high):
        low, high = high, high * 2
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (mid, high) if fits(mid) else (low, mid)
    return low


def step_flops_per_gpu(
    config: ModelConfig, batch: int, audio_shape: tuple[int, ...], video_shape: tuple[int, ...], masks: Masks
) -> float:
    """Analytic FLOPs of one training step for ``batch`` samples (per GPU: FLOPs do not depend on the strategy)."""
    one = step_flops(config, masks_batch(masks), (1, *audio_shape[1:]), (1, *video_shape[1:]), masks)
    return one.training_step / masks_batch(masks) * batch


def masks_batch(masks: Masks) -> int:
    return next(iter(masks.values()))[0].context.shape[0]
