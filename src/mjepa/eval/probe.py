"""Frozen-feature probes: the attentive probe (the paper's protocol) and a linear probe on mean-pooled tokens.

Attentive probe: the frozen tokens pass through 3 self-attention blocks; then one learned query attends to them in a
cross-attention block (with its MLP); a layer norm and a linear layer give the logits. Several probes with
different (learning rate, weight decay) are trained side by side on the same features; the one reported is chosen
on a validation split (the rule is written into the results).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from mjepa.eval.stacked_probe import attentive_logits, linear_logits
from mjepa.models.vit import Block, Mlp

PROBE_VARIANTS = ("mjepa", "vjepa2")


class CrossAttentionBlock(nn.Module):
    """A query attends to tokens: ``q + attn(norm(q), norm(tokens))`` then ``+ mlp(norm(.))``; without
    ``norm_query`` (V-JEPA 2's block) the query enters the attention as it is."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, norm_query: bool = True) -> None:
        super().__init__()
        self.norm_query = nn.LayerNorm(dim, eps=1e-6) if norm_query else nn.Identity()
        self.norm_tokens = nn.LayerNorm(dim, eps=1e-6)
        self.attn = nn.MultiheadAttention(dim, num_heads, batch_first=True)
        self.norm_mlp = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, query: torch.Tensor, tokens: torch.Tensor, key_padding_mask: torch.Tensor | None) -> torch.Tensor:
        kv = self.norm_tokens(tokens)
        attended, _ = self.attn(self.norm_query(query), kv, kv, key_padding_mask=key_padding_mask, need_weights=False)
        query = query + attended
        return query + self.mlp(self.norm_mlp(query))


class AttentiveProbe(nn.Module):
    """Self-attention blocks, one learned query in a cross-attention block, a linear head.

    ``variant="mjepa"`` normalises the query before it attends and the pooled vector before the head, with
    PyTorch's default initialisation of the attention and head. ``variant="vjepa2"`` is V-JEPA 2's
    ``AttentiveClassifier``: no query norm, no norm before the head, every linear weight truncated-normal
    (std 0.02) with zero bias, and each block's output projections divided by ``sqrt(2 * layer)``; its
    published probe scores are comparable with this one's. (Its layer norms use eps 1e-5, ours 1e-6: a difference
    far below the probe-seed spread.)"""

    def __init__(
        self, dim: int, num_classes: int, num_heads: int, self_attention_blocks: int = 3, variant: str = "mjepa"
    ) -> None:
        super().__init__()
        if variant not in PROBE_VARIANTS:
            raise ValueError(f"probe variant {variant!r} is not valid; expected one of {PROBE_VARIANTS}")
        self.variant = variant
        vjepa2 = variant == "vjepa2"
        self.blocks = nn.ModuleList(Block(dim, num_heads, 4.0) for _ in range(self_attention_blocks))
        self.query = nn.Parameter(torch.zeros(1, 1, dim))
        nn.init.trunc_normal_(self.query, std=0.02)
        self.cross = CrossAttentionBlock(dim, num_heads, norm_query=not vjepa2)
        self.norm = nn.Identity() if vjepa2 else nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Linear(dim, num_classes)
        if vjepa2:
            self._init_as_vjepa2()

    @torch.no_grad()
    def _init_as_vjepa2(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        attn = self.cross.attn  # nn.MultiheadAttention keeps its q / k / v projections in one parameter
        nn.init.trunc_normal_(attn.in_proj_weight, std=0.02)
        nn.init.zeros_(attn.in_proj_bias)
        for layer, block in enumerate(self.blocks, start=1):
            block.attn.proj.weight.div_(math.sqrt(2.0 * layer))
            block.mlp.fc2.weight.div_(math.sqrt(2.0 * layer))
        # V-JEPA 2 scales the cross-attention block's MLP like the last self-attention block.
        self.cross.mlp.fc2.weight.div_(math.sqrt(2.0 * max(1, len(self.blocks))))

    def forward(self, tokens: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        """``tokens`` ``(B, T, D)``; ``valid`` ``(B, T)`` bool (False = padding, never attended) -> logits."""
        x = tokens
        for block in self.blocks:
            # Padding only occurs for variable-length inputs; self-attention then masks it as keys too.
            x = block(x) if valid is None else _masked_block(block, x, valid)
        padding = None if valid is None else ~valid
        pooled = self.cross(self.query.expand(x.shape[0], -1, -1), x, padding)
        return self.head(self.norm(pooled[:, 0]))


def _masked_block(block: Block, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    b, n, d = x.shape
    attn = block.attn
    qkv = attn.qkv(block.norm1(x)).view(b, n, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4)
    mask = valid[:, None, None, :]
    out = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2], attn_mask=mask)
    x = x + attn.proj(out.transpose(1, 2).reshape(b, n, d))
    return x + block.mlp(block.norm2(x))


class LinearProbe(nn.Module):
    """Mean over valid tokens, layer norm without affine parameters, linear layer."""

    def __init__(self, dim: int, num_classes: int) -> None:
        super().__init__()
        self.head = nn.Linear(dim, num_classes)

    def forward(self, tokens: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        if valid is None:
            pooled = tokens.mean(dim=1)
        else:
            weights = valid.to(tokens.dtype).unsqueeze(-1)
            pooled = (tokens * weights).sum(1) / weights.sum(1).clamp_min(1.0)
        return self.head(F.layer_norm(pooled, (pooled.shape[-1],)))


SELF_ATTENTION_BLOCKS = 3  # of the attentive probe, before its cross-attention block

# V-JEPA 2's frozen-probe grid (its public evaluation configs): 5 learning rates x 4 weight decays = 20 heads,
# probes with 16 attention heads, 20 epochs. The MJEPA paper follows V-JEPA 2's probe and does not list a grid.
VJEPA2_LEARNING_RATES = (5e-3, 3e-3, 1e-3, 3e-4, 1e-4)
VJEPA2_WEIGHT_DECAYS = (0.01, 0.1, 0.4, 0.8)
VJEPA2_PROBE_HEADS = 16
# The AtariAV experiments (demo, ablation, track) probe with one head of 4 attention heads, as their recorded results
# were made; they pass these explicitly so the paper-task defaults above do not change them.
ATARI_PROBE_HEADS = 4


@dataclass(frozen=True)
class ProbeSettings:
    protocol: str = "attentive"  # or "linear"
    learning_rates: tuple[float, ...] = VJEPA2_LEARNING_RATES
    weight_decays: tuple[float, ...] = VJEPA2_WEIGHT_DECAYS
    epochs: int = 20
    batch_size: int = 32
    warmup_epochs: int = 1
    num_heads: int = VJEPA2_PROBE_HEADS  # attention heads of the attentive probe
    seed: int = 0
    # Heads of the grid trained together in one batched pass (mjepa.eval.stacked_probe); their activations are held
    # together. "auto": one at a time on a CPU (fastest there, docs/performance.md); on a GPU as many as fit in half
    # its free memory by the cost model. None: the whole grid at once.
    heads_per_pass: int | str | None = "auto"
    # Draw each epoch's rows with AudioSet's class-balanced weights (with replacement) instead of a permutation.
    class_balanced: bool = False
    # The attentive probe's architecture and initialisation (AttentiveProbe): "mjepa" or V-JEPA 2's ("vjepa2").
    # vjepa2_probe_settings() also takes V-JEPA 2's batch and schedule.
    variant: str = "mjepa"

    def __post_init__(self) -> None:
        if not self.learning_rates or not self.weight_decays:
            raise ValueError("the probe grid needs at least one learning rate and one weight decay")
        per_pass = self.heads_per_pass
        if not (per_pass is None or per_pass == "auto" or (isinstance(per_pass, int) and per_pass >= 1)):
            raise ValueError(f"heads_per_pass must be 'auto', an integer >= 1 or None (all), got {per_pass!r}")
        if self.variant not in PROBE_VARIANTS:
            raise ValueError(f"probe variant {self.variant!r} is not valid; expected one of {PROBE_VARIANTS}")

    def grid(self) -> list[tuple[float, float]]:
        return [(lr, wd) for lr in self.learning_rates for wd in self.weight_decays]


# V-JEPA 2's frozen video probes (its K400 / SSv2 eval configs): 4 clips per GPU on 64 GPUs, no warm-up, the
# learning rate following a cosine from its value to 0 and a constant weight decay, 20 epochs.
VJEPA2_PROBE_BATCH = 256
VJEPA2_PROBE_WARMUP_EPOCHS = 0


def vjepa2_probe_settings(**overrides) -> ProbeSettings:
    """The attentive probe as V-JEPA 2 trains it: its classifier, grid, heads, batch and schedule."""
    values = dict(
        protocol="attentive",
        variant="vjepa2",
        learning_rates=VJEPA2_LEARNING_RATES,
        weight_decays=VJEPA2_WEIGHT_DECAYS,
        epochs=20,
        batch_size=VJEPA2_PROBE_BATCH,
        warmup_epochs=VJEPA2_PROBE_WARMUP_EPOCHS,
        num_heads=VJEPA2_PROBE_HEADS,
    )
    return ProbeSettings(**{**values, **overrides})


# Share of the GPU's free memory the activations of one batched pass may take under heads_per_pass="auto".
AUTO_PASS_MEMORY_SHARE = 0.5


def probe_activation_bytes(settings: ProbeSettings, tokens_per_row: int, dim: int) -> float:
    """Predicted bytes one attentive head saves for its backward on one batch: the self-attention blocks by the cost
    model's per-token rule (bf16 products), plus the cross-attention block's key / value side, about one more."""
    from mjepa.cost_model import block_saved_bytes

    heads = max(h for h in range(1, settings.num_heads + 1) if dim % h == 0)
    per_token = block_saved_bytes(dim, heads, 4 * dim, amp=True)
    return settings.batch_size * tokens_per_row * per_token * (SELF_ATTENTION_BLOCKS + 1)


def resolve_heads_per_pass(settings: ProbeSettings, device: torch.device, tokens_per_row: int, dim: int) -> int:
    """How many heads of the grid train together: the setting, or for ``"auto"`` one on a CPU and on a GPU as many
    as :data:`AUTO_PASS_MEMORY_SHARE` of its free memory holds."""
    grid = len(settings.grid())
    if settings.heads_per_pass is None:
        return grid
    if settings.heads_per_pass != "auto":
        return min(settings.heads_per_pass, grid)
    if device.type != "cuda" or settings.protocol != "attentive":
        return 1 if device.type != "cuda" else grid
    free, _ = torch.cuda.mem_get_info(device)
    return max(
        1, min(grid, int(AUTO_PASS_MEMORY_SHARE * free // probe_activation_bytes(settings, tokens_per_row, dim)))
    )


def build_probe(settings: ProbeSettings, dim: int, num_classes: int) -> nn.Module:
    if settings.protocol == "attentive":
        # The most heads up to the setting that divide the width (16 for ViT-L's 1024, 12 for tiny's 192).
        heads = max(h for h in range(1, settings.num_heads + 1) if dim % h == 0)
        return AttentiveProbe(dim, num_classes, heads, SELF_ATTENTION_BLOCKS, settings.variant)
    if settings.protocol == "linear":
        return LinearProbe(dim, num_classes)
    raise ValueError(f"probe protocol {settings.protocol!r} is not valid; expected 'attentive' or 'linear'")


def probe_loss(
    logits: torch.Tensor, targets: torch.Tensor, multi_label: bool, batch_rows: int | None = None
) -> torch.Tensor:
    """Binary cross-entropy (multi-label) or cross-entropy, averaged over a batch of ``batch_rows`` rows (default:
    these rows). With the rows of one batch split across ranks, each rank passes the whole batch's row count, and
    the sum of the ranks' losses (and gradients) is the loss of the whole batch."""
    rows = logits.shape[0] if batch_rows is None else batch_rows
    if multi_label:
        return F.binary_cross_entropy_with_logits(logits, targets, reduction="sum") / (rows * targets.shape[1])
    return F.cross_entropy(logits, targets.argmax(dim=1), reduction="sum") / rows


def _lr_factor(step: int, total: int, warmup: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def _several_ranks() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _collective_device(fallback: torch.device) -> torch.device:
    """Where tensors for collectives must live: the CPU under gloo, the GPU under NCCL."""
    return fallback if dist.get_backend() == "nccl" else torch.device("cpu")


def global_row_order(row_keys: torch.Tensor, device: torch.device) -> tuple[int, torch.Tensor]:
    """``(rows in all ranks, local row of each global row or -1)``: every rank's rows sorted by key, so the rows
    line up in the same order however the items are spread over ranks."""
    if not _several_ranks():
        return row_keys.numel(), row_keys.argsort()
    from mjepa.eval.metrics import gather_without_padding

    where = _collective_device(device)
    all_keys = gather_without_padding(row_keys.to(where), row_keys.numel()).cpu()
    sorted_keys = all_keys.sort().values
    positions = torch.searchsorted(sorted_keys, row_keys)
    lookup = torch.full((sorted_keys.numel(),), -1, dtype=torch.long)
    lookup[positions] = torch.arange(row_keys.numel())
    return sorted_keys.numel(), lookup


def balanced_row_weights(targets: torch.Tensor, row_keys: torch.Tensor, device: torch.device) -> torch.Tensor:
    """AudioSet's class-balanced weight of every row of every rank, in the global (key-sorted) row order."""
    from mjepa.data.loading.samplers import class_balance_weights

    labels, _ = gather_items(targets.float().cpu(), row_keys.cpu(), device)
    return class_balance_weights(labels).double()


class StackedAdamW:
    """AdamW (PyTorch's update, decoupled weight decay) over parameters stacked along a leading head dimension,
    each head with its own learning rate and weight decay."""

    def __init__(
        self,
        params: dict[str, torch.Tensor],
        lrs: list[float],
        wds: list[float],
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        self.params = params
        device = next(iter(params.values())).device
        self.lrs = torch.tensor(lrs, dtype=torch.float32, device=device)
        self.wds = torch.tensor(wds, dtype=torch.float32, device=device)
        self.betas, self.eps, self.steps = betas, eps, 0
        self.moments = {n: (torch.zeros_like(p), torch.zeros_like(p)) for n, p in params.items()}

    @torch.no_grad()
    def step(self, lr_factor: float) -> None:
        self.steps += 1
        beta1, beta2 = self.betas
        correction1, correction2 = 1 - beta1**self.steps, 1 - beta2**self.steps
        for name, param in self.params.items():
            grad = param.grad if param.grad is not None else torch.zeros_like(param)
            shape = (-1,) + (1,) * (param.dim() - 1)
            lr = (self.lrs * lr_factor).view(shape)
            param.mul_(1 - lr * self.wds.view(shape))
            m, v = self.moments[name]
            m.mul_(beta1).add_(grad, alpha=1 - beta1)
            v.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            param.sub_(lr / correction1 * m / (v.sqrt() / math.sqrt(correction2) + self.eps))

    def zero_grad(self) -> None:
        for param in self.params.values():
            param.grad = None


def train_probe_grid(
    settings: ProbeSettings,
    tokens: torch.Tensor,
    valid: torch.Tensor | None,
    targets: torch.Tensor,
    multi_label: bool,
    device: torch.device | str = "cpu",
    row_keys: torch.Tensor | None = None,
) -> list[nn.Module]:
    """Train one probe per (lr, wd) of the grid on the same frozen features; returns them in grid order, on
    ``device``.

    The heads train ``settings.heads_per_pass`` at a time in one batched pass (their weights stacked, every product
    batched over heads: :mod:`mjepa.eval.stacked_probe`), each with its own AdamW learning rate and weight decay:
    the same updates as training them one by one, in fewer, larger kernels. On a GPU the products run in bf16. The
    features may stay where they are (CPU memory, for large tasks): each batch is moved to ``device`` as it is used,
    once for the grid.

    Under ``torch.distributed`` each rank passes only its own rows, with ``row_keys`` (a global key per row, e.g.
    ``item index * views + view``): the probes train data-parallel on the batches a single process would draw over
    all rows, each rank computing its part of every batch and the gradients being summed, so no rank ever holds
    more than its share of the features."""
    device = torch.device(device)
    torch.manual_seed(settings.seed)
    dim, num_classes = tokens.shape[-1], targets.shape[1]
    grid = settings.grid()
    probes = [build_probe(settings, dim, num_classes).to(device) for _ in grid]
    per_pass = resolve_heads_per_pass(settings, device, tokens.shape[1], dim)
    groups = [list(range(start, min(start + per_pass, len(grid)))) for start in range(0, len(grid), per_pass)]
    # One head per pass is the plain module and torch's AdamW; more are stacked and vmapped.
    stacks = [
        _HeadStack([probes[i] for i in group], [grid[i] for i in group])
        if len(group) > 1
        else _SingleHead(probes[group[0]], grid[group[0]])
        for group in groups
    ]
    keys = torch.arange(tokens.shape[0]) if row_keys is None else row_keys.cpu()
    num_rows, local_of = global_row_order(keys, device)
    weights = balanced_row_weights(targets, keys, device) if settings.class_balanced else None
    parallel = _several_ranks()
    steps_per_epoch = max(1, math.ceil(num_rows / settings.batch_size))
    total = settings.epochs * steps_per_epoch
    gen = torch.Generator().manual_seed(settings.seed)
    step = 0
    for _ in range(settings.epochs):
        if weights is None:
            order = torch.randperm(num_rows, generator=gen)
        else:
            order = torch.multinomial(weights, num_rows, replacement=True, generator=gen)
        for start in range(0, num_rows, settings.batch_size):
            batch_positions = order[start : start + settings.batch_size]
            rows = local_of[batch_positions]
            rows = rows[rows >= 0]
            x = tokens[rows.to(tokens.device)].to(device, non_blocking=True).float()
            mask = None if valid is None else valid[rows.to(valid.device)].to(device, non_blocking=True)
            y = targets[rows.to(targets.device)].to(device, non_blocking=True)
            factor = _lr_factor(step, total, settings.warmup_epochs * steps_per_epoch)
            for stack in stacks:
                stack.zero_grad()
                if rows.numel():
                    # bf16 products on a GPU (the weights, optimiser and loss stay fp32); fp32 on a CPU.
                    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                        loss = stack.loss(x, mask, y, multi_label, batch_positions.numel())
                    loss.backward()
                if parallel:
                    _sum_gradients(list(stack.params.values()), device)
                stack.step(factor)
            step += 1
    for stack in stacks:
        stack.write_back()
    return probes


class _SingleHead:
    """One probe trained as itself (the same interface as :class:`_HeadStack`)."""

    def __init__(self, probe: nn.Module, setting: tuple[float, float]) -> None:
        self.probe, (self.lr, weight_decay) = probe, setting
        self.optimizer = torch.optim.AdamW(probe.parameters(), lr=self.lr, weight_decay=weight_decay)
        self.params = dict(probe.named_parameters())

    def zero_grad(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)

    def step(self, lr_factor: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr * lr_factor
        self.optimizer.step()

    def loss(
        self, x: torch.Tensor, mask: torch.Tensor | None, y: torch.Tensor, multi_label: bool, batch_rows: int
    ) -> torch.Tensor:
        return probe_loss(self.probe(x, mask).float(), y, multi_label, batch_rows)

    def write_back(self) -> None:
        pass


class _HeadStack:
    """Probes of the same architecture whose weights are stacked along a leading head dimension, trained in one
    pass (:mod:`mjepa.eval.stacked_probe`) with a per-head AdamW."""

    def __init__(self, probes: list[nn.Module], grid: list[tuple[float, float]]) -> None:
        from torch.func import stack_module_state

        self.probes = probes
        params, _ = stack_module_state(probes)
        self.params = {name: p.detach().clone().requires_grad_(True) for name, p in params.items()}
        self.optimizer = StackedAdamW(self.params, [lr for lr, _ in grid], [wd for _, wd in grid])
        first = probes[0]
        if isinstance(first, AttentiveProbe):
            self.num_heads, self.num_blocks = first.cross.attn.num_heads, len(first.blocks)

    def zero_grad(self) -> None:
        self.optimizer.zero_grad()

    def step(self, lr_factor: float) -> None:
        self.optimizer.step(lr_factor)

    def logits(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        if isinstance(self.probes[0], AttentiveProbe):
            return attentive_logits(self.params, x, mask, self.num_heads, self.num_blocks)
        return linear_logits(self.params, x, mask)

    def loss(
        self, x: torch.Tensor, mask: torch.Tensor | None, y: torch.Tensor, multi_label: bool, batch_rows: int
    ) -> torch.Tensor:
        # Heads are independent: the gradient of the sum is each head's own gradient.
        return sum(probe_loss(head.float(), y, multi_label, batch_rows) for head in self.logits(x, mask))

    @torch.no_grad()
    def write_back(self) -> None:
        for index, probe in enumerate(self.probes):
            for name, param in probe.named_parameters():
                param.copy_(self.params[name][index])


def _sum_gradients(params: list[torch.Tensor], device: torch.device) -> None:
    """Every rank's gradients of ``params`` summed, in one collective (a rank without rows in the batch adds
    zeros)."""
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    flat = torch.cat([p.grad.reshape(-1) for p in params])
    buffer = flat.to(_collective_device(device))
    dist.all_reduce(buffer, op=dist.ReduceOp.SUM)
    flat = buffer.to(device)
    offset = 0
    for p in params:
        p.grad.copy_(flat[offset : offset + p.numel()].view_as(p))
        offset += p.numel()


def gather_items(
    values: torch.Tensor, indices: torch.Tensor, device: torch.device | str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Every rank's per-item rows (probabilities, labels, ...) and item indices, in index order (identity order
    without a process group). Padded duplicates never enter: ranks contribute only their real rows."""
    if _several_ranks():
        from mjepa.eval.metrics import gather_without_padding

        where = _collective_device(torch.device(device))
        values = gather_without_padding(values.to(where), values.shape[0]).cpu()
        indices = gather_without_padding(indices.to(where), indices.shape[0]).cpu()
    order = indices.argsort()
    return values[order], indices[order]


def class_probabilities(logits: torch.Tensor, multi_label: bool) -> torch.Tensor:
    """Sigmoid per class (multi-label tasks) or softmax over classes (single-label tasks)."""
    return torch.sigmoid(logits) if multi_label else torch.softmax(logits, dim=-1)


@torch.no_grad()
def predict(
    probe: nn.Module,
    tokens: torch.Tensor,
    valid: torch.Tensor | None,
    batch_size: int = 256,
    views: int = 1,
    multi_label: bool = True,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Class probabilities per item, on the CPU: with ``views > 1`` the rows are ``views`` consecutive views per
    item, and their probabilities (sigmoid or softmax, see :func:`class_probabilities`) are averaged, as the
    multi-view protocol prescribes. Runs on ``device`` (default: the probe's own), a batch at a time."""
    device = torch.device(device) if device is not None else next(probe.parameters()).device
    probe.eval()
    out = []
    for start in range(0, tokens.shape[0], batch_size):
        x = tokens[start : start + batch_size].to(device, non_blocking=True).float()
        mask = None if valid is None else valid[start : start + batch_size].to(device, non_blocking=True)
        with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            logits = probe(x, mask)
        out.append(class_probabilities(logits.float(), multi_label).cpu())
    probe.train()
    probabilities = torch.cat(out)
    if views > 1:
        probabilities = probabilities.view(-1, views, probabilities.shape[-1]).mean(dim=1)
    return probabilities
