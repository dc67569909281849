"""The forward pass of G probes at once, from their parameters stacked along a leading head dimension.

The probe grid trains many probes (V-JEPA 2's: 20) of one architecture on the same features. Written per head, that
is 20 small passes; vmapped, attention falls back to a loop over heads (no batching rule for the fused attention
kernels). Here every matrix product is a batched product over heads, and attention runs once over ``G x batch``
sequences: one pass, large kernels, whatever the device. The parameter names are those of
:class:`mjepa.eval.probe.AttentiveProbe` and :class:`mjepa.eval.probe.LinearProbe`
(``torch.func.stack_module_state`` stacks them), and each head computes what its own module would.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

Params = dict[str, torch.Tensor]
LAYER_NORM_EPS = 1e-6


def _norm(x: torch.Tensor, params: Params, name: str) -> torch.Tensor:
    """Layer norm with per-head affine parameters; ``x`` ``(G, B, T, D)`` or, shared by all heads, ``(B, T, D)``."""
    weight, bias = params[f"{name}.weight"], params[f"{name}.bias"]
    normed = F.layer_norm(x, (x.shape[-1],), eps=LAYER_NORM_EPS)
    shape = (weight.shape[0], 1, 1, weight.shape[-1])  # broadcasts a shared (B, T, D) input to every head
    return normed * weight.view(shape) + bias.view(shape)


def _linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``x`` ``(G, B, T, in)`` (or ``(B, T, in)`` shared) times per-head ``weight`` ``(G, out, in)``."""
    heads = weight.shape[0]
    if x.dim() == 3:
        x = x.unsqueeze(0).expand(heads, *x.shape)
    g, b, t, d = x.shape
    out = torch.bmm(x.reshape(g, b * t, d), weight.transpose(1, 2))
    if bias is not None:
        out = out + bias.unsqueeze(1)
    return out.view(g, b, t, -1)


def _dense(x: torch.Tensor, params: Params, name: str) -> torch.Tensor:
    return _linear(x, params[f"{name}.weight"], params.get(f"{name}.bias"))


def _attend(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, num_heads: int, valid: torch.Tensor | None
) -> torch.Tensor:
    """Multi-head attention of ``(G, B, Tq, D)`` queries over ``(G, B, Tk, D)`` keys and values, as one batch of
    ``G x B`` sequences; ``valid`` ``(B, Tk)`` marks the keys that may be attended."""
    g, b, tq, d = q.shape
    tk = k.shape[2]
    head_dim = d // num_heads

    def split(x: torch.Tensor, length: int) -> torch.Tensor:
        return x.reshape(g * b, length, num_heads, head_dim).transpose(1, 2)

    mask = None
    if valid is not None:
        mask = valid[None, :, None, None, :].expand(g, b, 1, 1, tk).reshape(g * b, 1, 1, tk)
    out = F.scaled_dot_product_attention(split(q, tq), split(k, tk), split(v, tk), attn_mask=mask)
    return out.transpose(1, 2).reshape(g, b, tq, d)


def _mlp(x: torch.Tensor, params: Params, name: str) -> torch.Tensor:
    return _dense(F.gelu(_dense(x, params, f"{name}.fc1")), params, f"{name}.fc2")


def _self_attention_block(
    x: torch.Tensor, params: Params, name: str, num_heads: int, valid: torch.Tensor | None
) -> torch.Tensor:
    qkv = _dense(_norm(x, params, f"{name}.norm1"), params, f"{name}.attn.qkv")
    q, k, v = qkv.chunk(3, dim=-1)
    x = x + _dense(_attend(q, k, v, num_heads, valid), params, f"{name}.attn.proj")
    return x + _mlp(_norm(x, params, f"{name}.norm2"), params, f"{name}.mlp")


def _cross_attention_block(
    query: torch.Tensor, tokens: torch.Tensor, params: Params, num_heads: int, valid: torch.Tensor | None
) -> torch.Tensor:
    in_weight, in_bias = params["cross.attn.in_proj_weight"], params["cross.attn.in_proj_bias"]
    wq, wk, wv = in_weight.chunk(3, dim=1)
    bq, bk, bv = in_bias.chunk(3, dim=1)
    kv = _norm(tokens, params, "cross.norm_tokens")
    if "cross.norm_query.weight" in params:  # V-JEPA 2's block has no query norm
        query_in = _norm(query, params, "cross.norm_query")
    else:
        query_in = query
    q = _linear(query_in, wq, bq)
    attended = _attend(q, _linear(kv, wk, bk), _linear(kv, wv, bv), num_heads, valid)
    query = query + _dense(attended, params, "cross.attn.out_proj")
    return query + _mlp(_norm(query, params, "cross.norm_mlp"), params, "cross.mlp")


def attentive_logits(
    params: Params, tokens: torch.Tensor, valid: torch.Tensor | None, num_heads: int, num_blocks: int
) -> torch.Tensor:
    """Logits ``(G, B, classes)`` of G attentive probes on the same ``tokens`` ``(B, T, D)``."""
    x = tokens
    for index in range(num_blocks):
        x = _self_attention_block(x, params, f"blocks.{index}", num_heads, valid)
    if x.dim() == 3:  # no self-attention blocks: the heads still share the tokens
        x = x.unsqueeze(0).expand(params["query"].shape[0], *x.shape)
    g, b = x.shape[:2]
    query = params["query"].view(g, 1, 1, -1).expand(g, b, 1, x.shape[-1])
    pooled = _cross_attention_block(query, x, params, num_heads, valid)[:, :, 0]
    # V-JEPA 2's classifier has no norm before its head.
    normed = _norm(pooled.unsqueeze(2), params, "norm") if "norm.weight" in params else pooled.unsqueeze(2)
    return _dense(normed, params, "head")[:, :, 0]


def linear_logits(params: Params, tokens: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
    """Logits ``(G, B, classes)`` of G linear probes (mean over valid tokens, layer norm without affine)."""
    if valid is None:
        pooled = tokens.mean(dim=1)
    else:
        weights = valid.to(tokens.dtype).unsqueeze(-1)
        pooled = (tokens * weights).sum(1) / weights.sum(1).clamp_min(1.0)
    normed = F.layer_norm(pooled, (pooled.shape[-1],))
    return torch.einsum("bd,gcd->gbc", normed, params["head.weight"]) + params["head.bias"].unsqueeze(1)
