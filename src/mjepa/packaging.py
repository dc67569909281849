"""The pretrained-model directory format: safetensors weights plus JSON config and preprocessing settings.

    model_dir/
      model.safetensors   every part, with plain keys: encoders.*, target_encoders.*, predictors.*, cross_heads.*
                          (or, saved with parts="target", only target_encoders.*: what embedding needs)
      config.json         {"format": "mjepa-pretrained-v1", "model": ModelConfig, "pretrain": full run config|null,
                           "step": int, "parts": "all"|"target", "mjepa_version": str}
      frontend.json       clip, fbank and video-transform settings (the preprocessing the model was trained with)
      README.md           the model card: architecture, parts, step, data and recipe, how to load it

safetensors holds only tensors and JSON is only data, so loading a model directory can never run code.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from mjepa.config import ModelConfig
from mjepa.data.preprocess.frontend import Frontend, frontend_from_dict
from mjepa.models.mjepa import MJEPA, MODEL_PARTS
from mjepa.pretrain_config import PretrainConfig
from mjepa.typed_config import ConfigError, build, to_dict, without_retired_keys

PRETRAINED_FORMAT = "mjepa-pretrained-v1"
WEIGHTS_NAME, CONFIG_NAME, FRONTEND_NAME, CARD_NAME = "model.safetensors", "config.json", "frontend.json", "README.md"


class PretrainedFormatError(ValueError):
    """A folder that is not an mjepa model directory."""


PARTS = MODEL_PARTS
TARGET_PREFIX = "target_encoders."


@dataclass
class LoadedModel:
    """A model with what it was saved with, whether it came from a training checkpoint or a model folder: the one
    record the evaluation tools and the embedding API build on."""

    model: MJEPA
    frontend: Frontend  # the preprocessing it was trained with
    config: PretrainConfig  # its run's configuration, or (run_config_saved=False) the defaults around its model
    step: int
    path: str
    parts: str = "all"  # "target": only the target encoder was saved (the other parts are unused)
    run_config_saved: bool = True

    def saved_run_config(self) -> dict | None:
        """The run configuration as a model folder stores it (None when the source held none)."""
        return to_dict(self.config) if self.run_config_saved else None


def save_model_dir(
    directory: str | os.PathLike,
    model: MJEPA,
    frontend: Frontend,
    pretrain_config: dict | None,
    step: int,
    parts: str = "all",
    dtype: torch.dtype | None = None,
) -> Path:
    """Write a model directory: every part, or (``parts="target"``) the target encoder only; weights cast to
    ``dtype`` when given (floating-point tensors only)."""
    from mjepa.version import __version__

    if parts not in PARTS:
        raise ValueError(f"parts={parts!r} is not valid; expected one of {PARTS}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {
        k: v.detach().contiguous().cpu()
        for k, v in model.state_dict().items()
        if parts == "all" or k.startswith(TARGET_PREFIX)
    }
    if dtype is not None:
        state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
    save_file(state, str(directory / WEIGHTS_NAME), metadata={"format": PRETRAINED_FORMAT})
    # safetensors writes through a private temporary file (mode 0600): a model folder is for sharing, so its files
    # get the permissions a new file normally gets.
    os.chmod(directory / WEIGHTS_NAME, _regular_file_mode())
    config = {
        "format": PRETRAINED_FORMAT,
        "model": to_dict(model.config),
        "pretrain": pretrain_config,
        "step": step,
        "parts": parts,
        "mjepa_version": __version__,
    }
    (directory / CONFIG_NAME).write_text(json.dumps(config, indent=2))
    (directory / FRONTEND_NAME).write_text(json.dumps(frontend.to_dict(), indent=2))
    (directory / CARD_NAME).write_text(model_card(model, frontend, pretrain_config, step, parts, state))
    return directory


def _regular_file_mode() -> int:
    """0666 less the process's umask: what ``open`` gives a new file (0644 under the usual umask 022)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


PART_NOTES = {"target": "the EMA target encoder only, what embedding needs", "all": "every part, to train on from"}


def model_card(
    model: MJEPA, frontend: Frontend, pretrain: dict | None, step: int, parts: str, state: dict[str, torch.Tensor]
) -> str:
    """A model folder's README.md: what the model is, what it holds, how it was trained, how to load it."""
    encoder, objective = model.config.encoder, model.config.objective
    stored = sum(t.numel() for t in state.values())
    lines = [
        "# mjepa model",
        "",
        "An MJEPA encoder (one ViT shared by audio, video and both), saved by `save_pretrained`.",
        "",
        "```python",
        "import mjepa",
        'model = mjepa.load("path/to/this/folder")',
        "embedding = model.encode_audio(waveform, sample_rate=16000).mean",
        "```",
        "",
        "| | |",
        "|---|---|",
        f"| encoder | width {encoder.width}, depth {encoder.depth}, {encoder.num_heads} heads |",
        f"| parts | {parts} ({PART_NOTES[parts]}), {stored / 1e6:.2f} M parameters stored |",
        f"| training step | {step} |",
        f"| objective | cross-modal {objective.cross_modal}, joint AV {objective.joint_av}, target blocks "
        f"{list(model.target_blocks)} |",
        f"| audio input | {frontend.audio.target_frames} fbank frames x {frontend.audio.num_mel_bins} mel bins at "
        f"{frontend.audio.sample_rate} Hz |",
        f"| video input | {frontend.clip.num_frames} frames at {frontend.clip.frames_per_second:g} fps, "
        f"{frontend.video.output_size} px |",
    ]
    if pretrain is not None:
        data, optim, run = pretrain["data"], pretrain["optim"], pretrain["run"]
        sources = data.get("manifests") or data.get("shards") or [data.get("atari_dir", "")]
        lines += [
            f"| data | {data['source']}: {', '.join(map(str, sources))} |",
            f"| recipe | {run['steps']} steps, global batch {run['batch_size']}, peak lr {optim['peak_lr']:g}, "
            f"EMA {optim['ema_start']:g} -> {optim['ema_end']:g} |",
        ]
    else:
        lines.append("| data and recipe | not recorded with this model |")
    lines += [
        "",
        "Scores are not stored with a model: `mjepa probe`, `mjepa suite` and `mjepa transfer` measure them "
        "(docs/evaluation.md). `config.json` holds the full configuration, `frontend.json` the preprocessing.",
        "",
    ]
    return "\n".join(lines)


# Models whose weights ship inside the package (src/mjepa/weights/NAME/, a model directory as above), loadable by name
# with no download: ``mjepa.load("mjepa-tiny")``. docs/models.md is their model card. The first is the default.
SHIPPED_MODELS = ("mjepa-tiny", "mjepa-tiny-atari")
WEIGHTS_PACKAGE = "mjepa.weights"


def shipped_model_dir(name: str) -> Path:
    """The packaged model directory of a shipped model name."""
    if name not in SHIPPED_MODELS:
        raise PretrainedFormatError(f"{name!r} is not a shipped model; expected one of {', '.join(SHIPPED_MODELS)}")
    folder = Path(str(resources.files(WEIGHTS_PACKAGE).joinpath(name)))
    if not is_model_dir(folder):
        raise PretrainedFormatError(
            f"{name!r} names a shipped model, but this installation has no weights at {folder}; reinstall mjepa"
        )
    return folder


def resolve_model_path(path_or_name: str | os.PathLike) -> Path:
    """``path_or_name`` as a path, or the packaged folder of a shipped model's name when no such path exists (a
    local folder called ``mjepa-tiny`` wins over the shipped one)."""
    path = Path(path_or_name)
    if not path.exists() and str(path_or_name) in SHIPPED_MODELS:
        return shipped_model_dir(str(path_or_name))
    return path


def is_model_dir(path: str | os.PathLike) -> bool:
    return (Path(path) / CONFIG_NAME).is_file() and (Path(path) / WEIGHTS_NAME).is_file()


def load_model_dir(directory: str | os.PathLike) -> LoadedModel:
    """The model, preprocessing and run configuration of a model directory."""
    directory = Path(directory)
    if not is_model_dir(directory):
        raise PretrainedFormatError(
            f"{directory} is not an mjepa model directory (needs {CONFIG_NAME} and {WEIGHTS_NAME})"
        )
    config = json.loads((directory / CONFIG_NAME).read_text())
    if config.get("format") != PRETRAINED_FORMAT:
        raise PretrainedFormatError(
            f"{directory / CONFIG_NAME}: format {config.get('format')!r}, expected {PRETRAINED_FORMAT!r}"
        )
    parts = config.get("parts", "all")
    if parts not in PARTS:
        raise PretrainedFormatError(f"{directory / CONFIG_NAME}: parts {parts!r}, expected one of {PARTS}")
    model = MJEPA(ModelConfig.from_dict(config["model"]), parts=parts)  # a target-only folder builds the target only
    state = load_file(str(directory / WEIGHTS_NAME))
    dtypes = {v.dtype for v in state.values() if v.is_floating_point()}
    if len(dtypes) == 1:
        model = model.to(dtypes.pop())  # a bf16 export loads as bf16
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise PretrainedFormatError(
            f"{directory}: weights do not fit config.json (missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
    frontend = frontend_from_dict(json.loads((directory / FRONTEND_NAME).read_text()))
    saved = config.get("pretrain")
    try:
        run_config = build(PretrainConfig, without_retired_keys(PretrainConfig, saved or {"model": config["model"]}))
    except ConfigError as err:
        raise PretrainedFormatError(f"{directory}: config.json has no usable run config: {err}") from None
    return LoadedModel(
        model.eval(), frontend, run_config, int(config.get("step", 0)), str(directory), parts, saved is not None
    )


def download_from_hub(repo_id: str, revision: str | None) -> Path:
    """A model directory from the Hugging Face Hub (needs ``pip install mjepa[hub]``)."""
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise PretrainedFormatError(
            f"{repo_id!r} is not a local path; loading from the Hugging Face Hub needs "
            f"huggingface_hub (pip install 'mjepa[hub]')"
        ) from None
    return Path(
        snapshot_download(repo_id, revision=revision, allow_patterns=[WEIGHTS_NAME, CONFIG_NAME, FRONTEND_NAME])
    )
