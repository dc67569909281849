"""Typed configuration of the model, masks and objective, with the size presets in one place."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Literal, TypeVar

from mjepa.terms import ALL_TERMS
from mjepa.typed_config import build, without_retired_keys

MODES = ("A", "V", "AV")

# width, depth, heads, MLP ratio (V-JEPA 2 sizes; giant uses the 48/11 MLP ratio for ~1.0 B parameters).
ENCODER_SIZES: dict[str, tuple[int, int, int, float]] = {
    "tiny": (192, 12, 3, 4.0),
    "small": (384, 12, 6, 4.0),
    "base": (768, 12, 12, 4.0),
    "large": (1024, 24, 16, 4.0),
    "huge": (1280, 32, 16, 4.0),
    "giant": (1408, 40, 22, 48 / 11),
}

# Predictor width, depth, heads per encoder size: V-JEPA 2's 384/12/12 for base and up, scaled down below.
PREDICTOR_SIZES: dict[str, tuple[int, int, int]] = {
    "tiny": (96, 4, 3),
    "small": (192, 6, 6),
    "base": (384, 12, 12),
    "large": (384, 12, 12),
    "huge": (384, 12, 12),
    "giant": (384, 12, 12),
}


T = TypeVar("T")


def dataclass_from_dict(cls: type[T], values: dict[str, Any], where: str = "") -> T:
    """Build ``cls`` from a (nested) dict with every value type-checked; unknown keys name the nearest valid one."""
    return build(cls, values, where)


def _check_choice(name: str, value: Any, choices: tuple) -> None:
    if value not in choices:
        raise ValueError(f"{name}={value!r} is not valid; expected one of {', '.join(map(repr, choices))}")


def _check_positive(name: str, value: float) -> None:
    if not value > 0:
        raise ValueError(f"{name} must be positive, got {value!r}")


@dataclass(frozen=True)
class EncoderConfig:
    width: int = 192
    depth: int = 12
    num_heads: int = 3
    mlp_ratio: float = 4.0
    audio_patch_time: int = 16
    audio_patch_freq: int = 16
    video_tubelet_time: int = 2
    video_patch_size: int = 16
    video_channels: int = 3
    position_embedding: Literal["rope", "sincos"] = "rope"
    rope_base: float = 10000.0
    # Time coordinate of a token: its centre time in seconds divided by this unit, so audio and video tokens of the
    # same instant share a time position (the video window placed inside the audio window by each sample's
    # video_offset). The default is one audio patch (16 frames of 10 ms): audio positions step by 1 as with token
    # indices, video tubelets (0.5 s at 4 fps) by 3.125. None: time coordinate = token index in each modality, two
    # clocks on one axis (configs saved before seconds were the default).
    time_unit_seconds: float | None = 0.16
    audio_frame_shift_seconds: float = 0.01
    video_fps: float = 4.0
    # Keys saved configs may still hold, dropped on reading (typed_config.without_retired_keys), and the setting
    # that replaced each: activation checkpointing is a run choice, not part of the model.
    RETIRED_KEYS: ClassVar[dict[str, str]] = {"activation_checkpointing": "run.activation_checkpointing"}

    def __post_init__(self) -> None:
        _check_choice("encoder.position_embedding", self.position_embedding, ("rope", "sincos"))
        for name in (
            "width",
            "depth",
            "num_heads",
            "audio_patch_time",
            "audio_patch_freq",
            "video_tubelet_time",
            "video_patch_size",
            "video_channels",
            "mlp_ratio",
            "audio_frame_shift_seconds",
            "video_fps",
        ):
            _check_positive(f"encoder.{name}", getattr(self, name))
        if self.width % self.num_heads:
            raise ValueError(f"encoder.width={self.width} is not divisible by encoder.num_heads={self.num_heads}")

    @classmethod
    def from_size(cls, size: str) -> EncoderConfig:
        """Config of a named size (change other fields with ``dataclasses.replace``)."""
        _check_choice("size", size, tuple(ENCODER_SIZES))
        width, depth, heads, ratio = ENCODER_SIZES[size]
        return cls(width=width, depth=depth, num_heads=heads, mlp_ratio=ratio)


@dataclass(frozen=True)
class PredictorConfig:
    width: int = 96
    depth: int = 4
    num_heads: int = 3
    mlp_ratio: float = 4.0

    def __post_init__(self) -> None:
        for name in ("width", "depth", "num_heads", "mlp_ratio"):
            _check_positive(f"predictor.{name}", getattr(self, name))
        if self.width % self.num_heads:
            raise ValueError(f"predictor.width={self.width} is not divisible by predictor.num_heads={self.num_heads}")

    @classmethod
    def for_size(cls, size: str) -> PredictorConfig:
        _check_choice("size", size, tuple(PREDICTOR_SIZES))
        width, depth, heads = PREDICTOR_SIZES[size]
        return cls(width=width, depth=depth, num_heads=heads)


@dataclass(frozen=True)
class BlockMaskConfig:
    """One mask configuration: ``num_blocks`` blocks of ``spatial_scale`` of the (H, W) plane each, all time."""

    num_blocks: int
    spatial_scale: float
    aspect_ratio: tuple[float, float] = (0.75, 1.5)
    # How a block's sides are sized (mjepa.masks.block_size): "plane", in units of the plane's sides, each clamped
    # to the plane; "tokens", the earlier sizing in tokens, the other side grown to keep the area where one is
    # clamped (every long-range audio block then spans all frequencies). Kept for ablation.
    sides: Literal["plane", "tokens"] = "plane"

    def __post_init__(self) -> None:
        _check_positive("mask.num_blocks", self.num_blocks)
        _check_choice("mask.sides", self.sides, ("plane", "tokens"))
        if not 0 < self.spatial_scale <= 1:
            raise ValueError(f"mask.spatial_scale must be in (0, 1], got {self.spatial_scale}")
        lo, hi = self.aspect_ratio
        if not 0 < lo <= hi:
            raise ValueError(f"mask.aspect_ratio must be (low, high) with 0 < low <= high, got {self.aspect_ratio}")


def _default_video_masks() -> tuple[BlockMaskConfig, ...]:
    # V-JEPA 2: short-range 8 blocks at 15 % and long-range 2 blocks at 70 % of the spatial area, spanning all time.
    return (BlockMaskConfig(8, 0.15), BlockMaskConfig(2, 0.70))


def _default_audio_masks() -> tuple[BlockMaskConfig, ...]:
    # Same two-scale idea on the (time, frequency) plane; time blocks may be longer than tall.
    return (BlockMaskConfig(8, 0.15, (0.75, 3.0)), BlockMaskConfig(2, 0.70, (0.75, 3.0)))


@dataclass(frozen=True)
class MaskConfig:
    video: tuple[BlockMaskConfig, ...] = field(default_factory=_default_video_masks)
    audio: tuple[BlockMaskConfig, ...] = field(default_factory=_default_audio_masks)
    min_context: int = 4  # fewest context tokens per modality; masks leaving fewer are re-drawn
    # Every sample's context and target have fixed lengths per configuration and grid: the target the
    # length_quantile-quantile of the blocks' union, the context what its (1 - length_quantile)-quantile leaves.
    # Draws outside that range (about 2 x length_quantile of them) are redrawn. See mjepa/masks.py.
    length_quantile: float = 0.1

    def __post_init__(self) -> None:
        if len(self.video) != len(self.audio) or not self.video:
            raise ValueError(
                f"mask.video and mask.audio must list the same number (>= 1) of configurations, "
                f"got {len(self.video)} and {len(self.audio)}"
            )
        _check_positive("mask.min_context", self.min_context)
        if not 0.0 <= self.length_quantile < 0.5:
            raise ValueError(f"masks.length_quantile must be in [0, 0.5), got {self.length_quantile}")


CROSS_MODAL_CHOICES = ("none", "av", "all")


@dataclass(frozen=True)
class ObjectiveConfig:
    """The 9-term objective and the ablation switches of the paper's central table."""

    shared_encoder: bool = True  # False: one encoder per modality (the "separate unimodal encoders" row)
    cross_modal: Literal["none", "av", "all"] = "all"  # "av": only A->V and V->A
    joint_av: bool = True  # the AV mode ([video ; audio]) and every term that involves it
    # Encoder blocks whose outputs are the intra-modal targets (0-based, negative counts from the end), one target
    # level each, predicted by its own predictor output and logged as its own term (docs/method.md). (-1,): the
    # last layer only.
    target_layers: tuple[int, ...] = (-1,)
    term_weights: tuple[tuple[str, float], ...] = ()  # e.g. (("intra_A", 2.0),); unnamed terms weigh 1
    cross_modal_hidden_ratio: float = 1.0  # hidden width of the 3-layer cross-modal MLPs, relative to encoder width
    # False: an audio token whose patch holds only the zero padding after a short clip is neither a target nor part
    # of a pooled context or target (it is constant, so predicting it teaches nothing). True: every token counts,
    # as in a batch with no padding.
    predict_audio_padding: bool = False
    # Keys saved configs may still hold, dropped on reading, and the setting that replaced each: the mean of the
    # last k layers as one target is not the published construction (several levels, each its own target).
    RETIRED_KEYS: ClassVar[dict[str, str]] = {"target_last_k_layers": "objective.target_layers"}

    def __post_init__(self) -> None:
        _check_choice("objective.cross_modal", self.cross_modal, CROSS_MODAL_CHOICES)
        if not self.shared_encoder and self.joint_av:
            raise ValueError(
                "objective.joint_av=True needs objective.shared_encoder=True: the AV mode runs one encoder"
            )
        if not self.target_layers:
            raise ValueError("objective.target_layers must name at least one encoder block, e.g. [-1]")
        _check_positive("objective.cross_modal_hidden_ratio", self.cross_modal_hidden_ratio)
        for name, weight in self.term_weights:
            _check_choice("objective.term_weights key", name, ALL_TERMS)
            if weight < 0:
                raise ValueError(f"objective.term_weights[{name!r}] must be >= 0, got {weight}")

    def weight(self, term: str) -> float:
        return dict(self.term_weights).get(term, 1.0)

    def target_blocks(self, depth: int) -> tuple[int, ...]:
        """``target_layers`` as 0-based block indices of an encoder ``depth`` blocks deep, in ascending order (the
        order of the target levels and of the predictor's output heads)."""
        blocks = []
        for layer in self.target_layers:
            if not -depth <= layer < depth:
                raise ValueError(
                    f"objective.target_layers holds {layer}, outside an encoder of {depth} blocks "
                    f"(expected -{depth} .. {depth - 1})"
                )
            blocks.append(layer % depth)
        if len(set(blocks)) != len(blocks):
            raise ValueError(
                f"objective.target_layers={list(self.target_layers)} names a block twice "
                f"(as blocks {blocks} of {depth})"
            )
        return tuple(sorted(blocks))


@dataclass(frozen=True)
class ModelConfig:
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    predictor: PredictorConfig = field(default_factory=PredictorConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)

    @classmethod
    def from_size(cls, size: str, objective: ObjectiveConfig | None = None) -> ModelConfig:
        return cls(EncoderConfig.from_size(size), PredictorConfig.for_size(size), objective or ObjectiveConfig())

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """A saved model config (checkpoint, model folder): keys mjepa has retired are dropped."""
        return build(cls, without_retired_keys(cls, data))
