"""V-JEPA 2's multi-clip, multi-view video protocol: every temporal clip is encoded on its own, a spatial view's
clips are joined into one token sequence for the probe, and only the spatial views are averaged."""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parents[1] / "data"))
from media_builders import media  # noqa: E402,F401  (pytest fixture)

from mjepa.config import EncoderConfig, ModelConfig, PredictorConfig  # noqa: E402
from mjepa.data.manifests.manifest import ManifestEntry  # noqa: E402
from mjepa.data.media.decode import ClipSpec  # noqa: E402
from mjepa.data.preprocess.fbank import AudioFrontendConfig  # noqa: E402
from mjepa.data.preprocess.frontend import Frontend  # noqa: E402
from mjepa.data.preprocess.video_transforms import VideoTransformConfig  # noqa: E402
from mjepa.eval.features import FeatureSet  # noqa: E402
from mjepa.eval.items import EvalDataset, ViewSpec  # noqa: E402
from mjepa.eval.loading import LoadedModel  # noqa: E402
from mjepa.eval.probe import predict  # noqa: E402
from mjepa.eval.run_probe import FeatureSettings, join_temporal_clips, split_features  # noqa: E402
from mjepa.eval.tasks import TASKS  # noqa: E402
from mjepa.models.mjepa import MJEPA  # noqa: E402
from mjepa.pretrain_config import PretrainConfig  # noqa: E402

CLIP = ClipSpec(num_frames=4, frames_per_second=4.0)
FRONTEND = Frontend(
    CLIP,
    AudioFrontendConfig(target_frames=64, num_mel_bins=32),
    VideoTransformConfig(output_size=32, eval_short_side=32),
)


class _FlattenedLinear(torch.nn.Module):
    """A probe whose score depends on every token of its row."""

    def __init__(self, inputs: int, classes: int) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(inputs, classes)

    def forward(self, tokens: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        return self.linear(tokens.flatten(1))


def test_join_puts_a_views_clips_in_time_order_in_one_row():
    items, clips, views, tokens = 2, 3, 2, 4
    # Row value = item * 100 + clip * 10 + view, rows ordered item, clip, view (as EvalDataset makes them).
    ids = torch.tensor([i * 100 + c * 10 + v for i in range(items) for c in range(clips) for v in range(views)])
    rows = ids.view(-1, 1, 1).expand(-1, tokens, 1).float()
    joined = join_temporal_clips(FeatureSet(rows, torch.zeros(items, 5), clips * views), clips, views)
    assert joined.views == views and joined.tokens.shape == (items * views, clips * tokens, 1)
    for item in range(items):
        for view in range(views):
            row = joined.tokens[item * views + view, :, 0]
            expected = torch.tensor([item * 100 + c * 10 + view for c in range(clips) for _ in range(tokens)])
            assert torch.equal(row, expected.float())


def test_probe_features_are_one_joined_sequence_per_spatial_view(media):
    config = ModelConfig(EncoderConfig(width=48, depth=2, num_heads=2), PredictorConfig(width=32, depth=1, num_heads=2))
    loaded = LoadedModel(MJEPA(config).eval(), FRONTEND, PretrainConfig(model=config), 0, "test")
    task = TASKS["k400"]
    assert task.views.clips == 8 and task.views.spatial_views == 3
    task = type(task)(task.name, task.metric, ViewSpec(clips=2, spatial_views=3), False, task.description)
    entries = [ManifestEntry(str(media["mkv"]), labels=("a",)), ManifestEntry(str(media["mp4"]), labels=("b",))]
    settings = FeatureSettings(modality="video", workers=0)
    features = split_features(loaded, task, entries, ["a", "b"], settings, "fingerprint").features
    clip_tokens = 2 * 2 * 2  # 4 frames / tubelet 2 x (32 / 16)^2
    assert features.views == 3 and features.tokens.shape == (2 * 3, 2 * clip_tokens, 48)

    # Row (item 0, view 1) is the encoding of view 1 of clip 0 followed by view 1 of clip 1.
    item = EvalDataset(entries[:1], ["a", "b"], CLIP, FRONTEND.audio, FRONTEND.video, task.views, True, False)[0]
    with torch.no_grad():
        encoded = loaded.model.target_encoder("V")("V", None, item.video).tokens  # (clips x views, T, D)
    expected = torch.cat([encoded[0 * 3 + 1], encoded[1 * 3 + 1]])
    assert torch.allclose(features.tokens[1].float(), expected, atol=1e-2)

    # The probe's item score is the mean over the 3 spatial views only.
    probe = _FlattenedLinear(features.tokens[0].numel(), 2)
    per_item = predict(probe, features.tokens, None, views=features.views, multi_label=False)
    per_row = predict(probe, features.tokens, None, views=1, multi_label=False)
    assert per_item.shape == (2, 2)
    assert torch.allclose(per_item, per_row.view(2, 3, 2).mean(dim=1))
