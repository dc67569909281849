"""The pretraining configuration: every default in one place, presets shipped with the package, overrides.

``load_pretrain_config("tiny-cpu", ["optim.peak_lr=1e-3"])`` reads the preset (or a YAML file path), applies
``key=value`` overrides and checks every key and value (see ``mjepa.typed_config``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Literal

from mjepa.config import ENCODER_SIZES, MaskConfig, ModelConfig
from mjepa.grids import TokenGrid, audio_grid, video_grid
from mjepa.typed_config import ConfigError, build, load_yaml, merge_overrides

PRESET_PACKAGE = "mjepa.configs"


@dataclass(frozen=True)
class DataConfig:
    source: Literal["atari", "synthetic", "manifest", "shards"] = "atari"
    manifests: tuple[str, ...] = ()  # JSON-lines manifests (source=manifest); several make a mixture
    shards: tuple[str, ...] = ()  # shard folders or their URLs from `mjepa data shard` (source=shards)
    mixture_weights: tuple[float, ...] = ()  # one per manifest or shard folder; empty = every item equally likely
    class_balanced: bool = False  # AudioSet-style class-balanced sampling over the items' labels
    atari_dir: str = "data/atari"  # AtariAV folder; generated there on first use
    atari_games: tuple[str, ...] = (
        "pong",
        "breakout",
        "space_invaders",
        "seaquest",
        "ms_pacman",
        "enduro",
        "asteroids",
        "frogger",
    )
    atari_clips_per_game: int = 40
    atari_test_clips_per_game: int | None = None  # None: the generator's 15 % rule; training reads only train clips
    num_frames: int = 8
    frames_per_second: float = 4.0
    image_size: int = 64
    audio_frames: int = 384  # fbank frames after padding / cutting (10 ms each)
    mel_bins: int = 128
    audio_window: Literal["full", "aligned"] = "full"
    missing_audio: Literal["flag", "skip"] = "flag"
    # Items without video: skipped, or (flag) trained with placeholder frames, left out of every term that involves
    # video; "flag" lets audio-only manifests (recorded sound) train beside audio-visual ones.
    missing_video: Literal["skip", "flag"] = "skip"
    fbank_mean: float = -4.2677393  # AudioSet statistics (AudioMAE / AST convention)
    fbank_std: float = 4.5689974
    num_workers: int = 2  # loader processes per rank
    # Stop the run when more than this share of the items drawn so far (at least MIN_DRAWS_FOR_SKIP_CHECK of them,
    # or every one) were unreadable: a wrong path or a broken copy, not a few bad files.
    max_skip_fraction: float = 0.2
    # Decode each file in a helper process of the loader worker: a decoder crash or a decode longer than
    # decode_timeout_s skips that file instead of stopping the run (docs/performance.md measures the cost).
    isolate_decoding: bool = True
    decode_timeout_s: float = 120.0

    def __post_init__(self) -> None:
        if self.source == "manifest" and not self.manifests:
            raise ValueError("data.source='manifest' needs data.manifests (one or more manifest paths)")
        if self.source == "shards" and not self.shards:
            raise ValueError("data.source='shards' needs data.shards (one or more shard folders or URLs)")
        # A list that the chosen source would not read is a mistake, not a default: say so instead of ignoring it.
        for key, source in (("shards", "shards"), ("manifests", "manifest")):
            if getattr(self, key) and self.source != source:
                raise ValueError(
                    f"data.{key} is set but data.source={self.source!r} does not read it; set "
                    f"data.source={source} to train on it, or drop data.{key}"
                )
        sources = self.item_sources()
        if self.mixture_weights and len(self.mixture_weights) != len(sources):
            raise ValueError(
                f"data.mixture_weights has {len(self.mixture_weights)} values for "
                f"{len(sources)} {'shard folders' if self.source == 'shards' else 'manifests'}"
            )
        if self.mixture_weights and self.class_balanced:
            raise ValueError("data.mixture_weights and data.class_balanced both set the sampling weights; choose one")
        for name in (
            "num_frames",
            "image_size",
            "audio_frames",
            "mel_bins",
            "atari_clips_per_game",
            "atari_test_clips_per_game",
        ):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"data.{name} must be >= 1, got {getattr(self, name)}")
        if self.num_workers < 0:
            raise ValueError(f"data.num_workers must be >= 0, got {self.num_workers}")
        if not self.decode_timeout_s > 0:
            raise ValueError(f"data.decode_timeout_s must be > 0, got {self.decode_timeout_s}")
        if not 0.0 <= self.max_skip_fraction <= 1.0:
            raise ValueError(f"data.max_skip_fraction must be in [0, 1], got {self.max_skip_fraction}")

    def item_sources(self) -> tuple[str, ...]:
        """The manifests or shard folders the items come from (empty for atari and synthetic data)."""
        return {"manifest": self.manifests, "shards": self.shards}.get(self.source, ())


@dataclass(frozen=True)
class OptimConfig:
    start_lr: float = 1e-4
    peak_lr: float = 5.25e-4
    final_lr: float = 1e-6
    warmup_steps: int = 12000
    cooldown_steps: int = 0  # linear decay to final_lr over the last cooldown_steps
    weight_decay: float = 0.04
    final_weight_decay: float = 0.04
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    grad_clip: float | None = 10.0  # max gradient norm; null turns clipping off
    ema_start: float = 0.99925
    ema_end: float = 0.99925
    # The global batch that start_lr, peak_lr and final_lr were set for. None: they are used as given. A number:
    # they are scaled by run.batch_size / lr_reference_batch (the linear scaling rule), so a recipe taken from a run
    # at another batch (V-JEPA 2's 3072) keeps its source's numbers and still fits this batch.
    lr_reference_batch: int | None = None

    def __post_init__(self) -> None:
        if self.lr_reference_batch is not None and self.lr_reference_batch < 1:
            raise ValueError(
                f"optim.lr_reference_batch must be a positive batch size or null, got {self.lr_reference_batch}"
            )
        for name in ("start_lr", "peak_lr"):
            if not getattr(self, name) > 0:
                raise ValueError(f"optim.{name} must be > 0, got {getattr(self, name)}")
        for name in ("final_lr", "weight_decay", "final_weight_decay", "warmup_steps", "cooldown_steps"):
            if getattr(self, name) < 0:
                raise ValueError(f"optim.{name} must be >= 0, got {getattr(self, name)}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ValueError(
                f"optim.grad_clip must be > 0 (the largest gradient norm kept) or null for no clipping, "
                f"got {self.grad_clip}"
            )
        for name in ("ema_start", "ema_end"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(
                    f"optim.{name} must be in [0, 1] (the EMA momentum; 1 freezes the target), got "
                    f"{getattr(self, name)}"
                )
        for index, beta in enumerate(self.betas):
            if not 0.0 <= beta < 1.0:
                raise ValueError(f"optim.betas[{index}] must be in [0, 1), got {beta}")
        if not self.eps > 0:
            raise ValueError(f"optim.eps must be > 0, got {self.eps}")

    def learning_rates(self, batch_size: int) -> tuple[float, float, float]:
        """``(start_lr, peak_lr, final_lr)`` for a global batch of ``batch_size``: as given, or scaled from
        ``lr_reference_batch``."""
        scale = 1.0 if self.lr_reference_batch is None else batch_size / self.lr_reference_batch
        return self.start_lr * scale, self.peak_lr * scale, self.final_lr * scale


def micro_batch_size(global_batch: int, accumulation: int, world_size: int) -> int:
    """The samples of one rank's micro-batch: the global batch split over ranks and accumulation steps. The one check
    that it splits evenly."""
    if global_batch % (accumulation * world_size):
        raise ValueError(
            f"run.batch_size={global_batch} must be divisible by run.grad_accumulation x world size "
            f"= {accumulation} x {world_size}"
        )
    return global_batch // (accumulation * world_size)


@dataclass(frozen=True)
class RunConfig:
    steps: int = 150000
    batch_size: int = 512  # global batch (all ranks, all accumulation micro-steps)
    grad_accumulation: int = 1
    seed: int = 0
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    distributed: Literal["auto", "ddp", "fsdp", "none"] = "auto"  # auto: DDP when launched with several ranks
    activation_checkpointing: bool = False
    compile: bool = False
    out_dir: str = "runs/pretrain"
    init_from: str | None = None  # start from these weights (a checkpoint); optimiser and step start fresh
    checkpoint_every: int = 1000  # steps between periodic checkpoints (the latest one is rewritten each time)
    keep_checkpoints: int = 3  # periodic checkpoints kept (older ones deleted)
    log_every: int = 10
    nan_policy: Literal["skip", "stop"] = "skip"  # skip: drop the step; stop: checkpoint-free exit with a message
    max_skipped_steps: int = 20  # consecutive non-finite steps before even "skip" stops the run
    collapse_std_threshold: float = 0.01  # warn when the per-dimension std of pooled targets falls below
    collapse_rank_fraction: float = 0.05  # warn when effective rank / width falls below
    tensorboard: bool = False
    # Resuming under a config that changes the math (LR, masks, batch, run.steps, ...) is refused unless this is
    # set; see mjepa/train/resume_config.py for the settings that may always change.
    allow_resume_changes: bool = False

    def __post_init__(self) -> None:
        for name in (
            "steps",
            "batch_size",
            "grad_accumulation",
            "checkpoint_every",
            "keep_checkpoints",
            "log_every",
            "max_skipped_steps",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"run.{name} must be >= 1, got {getattr(self, name)}")
        micro_batch_size(self.batch_size, self.grad_accumulation, 1)

    def micro_batch_size(self, world_size: int) -> int:
        """Samples per rank and accumulation step (a one-line error when the batch does not split evenly)."""
        return micro_batch_size(self.batch_size, self.grad_accumulation, world_size)


@dataclass(frozen=True)
class PretrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    masks: MaskConfig = field(default_factory=MaskConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def __post_init__(self) -> None:
        if self.optim.warmup_steps + self.optim.cooldown_steps > self.run.steps:
            raise ValueError(
                f"optim.warmup_steps ({self.optim.warmup_steps}) + optim.cooldown_steps "
                f"({self.optim.cooldown_steps}) exceed run.steps ({self.run.steps})"
            )
        enc = self.model.encoder
        self.model.objective.target_blocks(enc.depth)  # target layers inside the encoder, none twice
        if enc.video_fps != self.data.frames_per_second:
            # The encoder places video tokens in time from its own frame rate; the loader samples at the data's.
            raise ValueError(
                f"model.encoder.video_fps={enc.video_fps} differs from data.frames_per_second="
                f"{self.data.frames_per_second}: set both to the rate the frames are sampled at"
            )
        if self.data.audio_frames % enc.audio_patch_time or self.data.mel_bins % enc.audio_patch_freq:
            raise ValueError(
                f"data.audio_frames={self.data.audio_frames} x data.mel_bins={self.data.mel_bins} is not divisible "
                f"by the audio patch {enc.audio_patch_time}x{enc.audio_patch_freq}"
            )
        if self.data.num_frames % enc.video_tubelet_time or self.data.image_size % enc.video_patch_size:
            raise ValueError(
                f"data.num_frames={self.data.num_frames} / data.image_size={self.data.image_size} is not divisible "
                f"by the tubelet {enc.video_tubelet_time}x{enc.video_patch_size}x{enc.video_patch_size}"
            )

    def token_grids(self) -> tuple[TokenGrid, TokenGrid]:
        """The audio and video token grids of the configured input size."""
        data, enc = self.data, self.model.encoder
        return (
            audio_grid(data.audio_frames, data.mel_bins, enc.audio_patch_time, enc.audio_patch_freq),
            video_grid(data.num_frames, data.image_size, data.image_size, enc.video_tubelet_time, enc.video_patch_size),
        )


def preset_names() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files(PRESET_PACKAGE).iterdir() if p.name.endswith(".yaml"))


def _read_source(source: str) -> dict:
    if source in preset_names():
        return load_yaml(str(resources.files(PRESET_PACKAGE).joinpath(f"{source}.yaml")))
    if Path(source).suffix in (".yaml", ".yml") or Path(source).exists():
        return load_yaml(source)
    raise ConfigError(f"config {source!r} is neither a preset ({', '.join(preset_names())}) nor a YAML file")


BASE_KEY = "base"


def _with_base(source: str, data: dict, seen: tuple[str, ...] = ()) -> dict:
    """A config file's ``base: PRESET_OR_FILE`` first, then the file's own values on top (nested keys merge)."""
    base = data.pop(BASE_KEY, None)
    if base is None:
        return data
    if not isinstance(base, str):
        raise ConfigError(
            f"config {source!r}: 'base' must name a preset ({', '.join(preset_names())}) or a YAML file, got {base!r}"
        )
    if base in seen or base == source:
        raise ConfigError(f"config {source!r}: 'base' chain loops back to {base!r}")
    parent = _with_base(base, _read_source(base), (*seen, source))
    return _deep_merge(parent, data)


def _deep_merge(base: dict, top: dict) -> dict:
    merged = dict(base)
    for key, value in top.items():
        merged[key] = (
            _deep_merge(merged[key], value) if isinstance(value, dict) and isinstance(merged.get(key), dict) else value
        )
    return merged


SIZE_KEY = "size"


def _with_size(source: str, data: dict) -> dict:
    """A ``model: {size: NAME}`` entry expands to the size table's encoder and predictor (``config.ENCODER_SIZES``,
    ``PREDICTOR_SIZES``, the same table Python's ``ModelConfig.from_size`` reads); keys given beside it win."""
    model = data.get("model")
    if not isinstance(model, dict) or SIZE_KEY not in model:
        return data
    model = dict(model)
    size = model.pop(SIZE_KEY)
    if size not in ENCODER_SIZES:
        raise ConfigError(f"config {source!r}: model.size {size!r} is not one of {', '.join(ENCODER_SIZES)}")
    sized = ModelConfig.from_size(size).to_dict()
    table = {"encoder": sized["encoder"], "predictor": sized["predictor"]}
    return {**data, "model": _deep_merge(table, model)}


def load_pretrain_config(source: str, overrides: list[str]) -> PretrainConfig:
    """Preset name or YAML path, then ``key=value`` overrides; every key and value checked. A YAML file may start
    from a preset (or another file) with ``base: NAME``, and name its model size with ``model: {size: NAME}``;
    unset keys take the schema's defaults."""
    data = _with_size(source, _with_base(source, _read_source(source)))
    return build(PretrainConfig, merge_overrides(PretrainConfig, data, overrides))
