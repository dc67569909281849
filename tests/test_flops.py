from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from conftest import tiny_model_config
from mjepa.config import MaskConfig
from mjepa.data.synthetic import synthetic_batch
from mjepa.flops import step_flops
from mjepa.masks import MaskSampler
from mjepa.models.mjepa import MJEPA
from mjepa.objective import mjepa_objective


def _tiny_step():
    """A tiny model, a batch of 2, its masks and the analytic FLOPs of its step."""
    model = MJEPA(tiny_model_config())
    batch, _ = synthetic_batch(0, 0, 2)
    audio_grid, video_grid = model.token_grids(batch.audio.shape, batch.video.shape)
    masks = MaskSampler(MaskConfig(), audio_grid, video_grid).sample(2, seed=0)
    analytic = step_flops(model.config, 2, tuple(batch.audio.shape), tuple(batch.video.shape), masks)
    return model, batch, masks, analytic


def test_analytic_step_flops_match_torch_flop_counter():
    model, batch, masks, analytic = _tiny_step()

    # The math attention backend decomposes into matrix products the counter sees (the fused CPU kernel it misses).
    counter = FlopCounterMode(display=False)
    with counter, sdpa_kernel(SDPBackend.MATH):
        out = mjepa_objective(model, batch, masks)
    forward = counter.get_total_flops()
    assert abs(analytic.forward - forward) / forward < 0.02, (analytic.forward, forward)

    with counter, sdpa_kernel(SDPBackend.MATH):
        out = mjepa_objective(model, batch, masks)
        out.loss.backward()
    measured_step = counter.get_total_flops()
    assert abs(analytic.training_step - measured_step) / measured_step < 0.05, (analytic.training_step, measured_step)


def test_analytic_attention_flops_match_the_batched_products_of_attention():
    model, batch, masks, analytic = _tiny_step()
    counter = FlopCounterMode(display=False)
    with counter, sdpa_kernel(SDPBackend.MATH):
        mjepa_objective(model, batch, masks)
    # Under the math backend attention is the only batched product (bmm); linear layers are mm/addmm.
    counted = counter.get_flop_counts()["Global"]
    attention = sum(v for op, v in counted.items() if "bmm" in str(op))
    expected = analytic.attention_target_forward + analytic.attention_trained_forward
    assert abs(expected - attention) / attention < 0.01, (expected, attention)
    assert 0 < analytic.attention_training_step < analytic.training_step
