"""The fast-layout kernels for CPUs that emulate bf16: same numbers as the stock kernels, and really used."""

import pytest
import torch
import torch.nn.functional as F

from conftest import tiny_model_config
from mjepa.config import MaskConfig, ObjectiveConfig
from mjepa.data.synthetic import synthetic_batch
from mjepa.masks import MaskSampler
from mjepa.models import kernels
from mjepa.models.kernels import Linear, attention, reference_kernels
from mjepa.models.mjepa import MJEPA
from mjepa.objective import mjepa_objective
from mjepa.terms import active_modes


@pytest.fixture
def emulated(monkeypatch):
    """Behave as on a CPU without native bf16, whatever this CPU has."""
    monkeypatch.setattr(kernels, "_cpu_emulates_bf16", lambda: True)


def _bf16():
    return torch.autocast("cpu", dtype=torch.bfloat16)


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).norm() / b.float().norm())


def test_fast_linear_is_taken_and_matches_stock_backward(emulated):
    layer = Linear(48, 80)
    x = torch.randn(3, 20, 48, requires_grad=True)
    grads = {}
    for name, mode in (("ours", torch.enable_grad), ("reference", reference_kernels)):
        with mode(), _bf16():
            y = layer(x)
        assert ("FastLayoutLinear" in type(y.grad_fn).__name__) == (name == "ours")
        assert y.dtype == torch.bfloat16
        (y.float() * torch.linspace(-1, 1, 80)).sum().backward()
        grads[name] = (y.detach(), x.grad.clone(), layer.weight.grad.clone(), layer.bias.grad.clone())
        x.grad = None
        layer.zero_grad()
    for ours, ref in zip(grads["ours"], grads["reference"]):
        assert ours.dtype == ref.dtype and ours.shape == ref.shape
        assert _relative(ours, ref) < 1e-2  # bf16 rounding of different accumulation orders


def test_stock_kernels_outside_emulated_bf16(emulated):
    layer = Linear(16, 8)
    x = torch.randn(4, 16)
    assert torch.equal(layer(x), F.linear(x, layer.weight, layer.bias))  # fp32: bit-identical stock path
    q, k, v = torch.randn(3, 1, 2, 10, 8).unbind(0)
    assert torch.equal(attention(q, k, v), F.scaled_dot_product_attention(q, k, v))


def test_attention_runs_in_fp32_under_emulated_bf16(emulated):
    q, k, v = torch.randn(3, 2, 2, 30, 16).unbind(0)
    with _bf16():
        ours = attention(q.bfloat16(), k.bfloat16(), v.bfloat16())
    exact = F.scaled_dot_product_attention(q.bfloat16().float(), k.bfloat16().float(), v.bfloat16().float())
    assert ours.dtype == torch.bfloat16
    assert torch.equal(ours, exact.bfloat16())


def test_full_objective_equal_numerics_against_reference_kernels(emulated):
    """The 9-term loss, every term and every parameter gradient agree with the stock kernels to bf16 tolerance."""
    torch.manual_seed(0)
    model = MJEPA(tiny_model_config(ObjectiveConfig()))
    batch, _ = synthetic_batch(0, 0, 2)
    audio_grid, video_grid = model.token_grids(batch.audio.shape, batch.video.shape)
    masks = MaskSampler(MaskConfig(), audio_grid, video_grid, active_modes(model.config.objective)).sample(2, 0)
    results = {}
    for name, mode in (("ours", torch.enable_grad), ("reference", reference_kernels)):
        model.zero_grad(set_to_none=True)
        with mode():
            with _bf16():
                out = mjepa_objective(model, batch, masks)
            out.loss.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        results[name] = (out, grads)
    (ours, ours_grads), (ref, ref_grads) = results["ours"], results["reference"]
    assert abs(float(ours.loss.detach()) - float(ref.loss.detach())) < 1e-2 * float(ref.loss.detach())
    for term, value in ref.terms.items():
        ours_value, ref_value = float(ours.terms[term].detach()), float(value.detach())  # terms carry the graph
        assert abs(ours_value - ref_value) < 2e-2 * ref_value, term
    assert ours_grads.keys() == ref_grads.keys() and len(ref_grads) > 20
    flat_ours = torch.cat([g.flatten() for g in ours_grads.values()])
    flat_ref = torch.cat([ref_grads[n].flatten() for n in ours_grads])
    assert _relative(flat_ours, flat_ref) < 3e-2
    assert F.cosine_similarity(flat_ours, flat_ref, dim=0) > 0.999
