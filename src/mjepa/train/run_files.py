"""What a run folder records about itself: the merged config, the package version, the git revision."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import torch
import yaml

from mjepa.distributed import DistributedContext
from mjepa.pretrain_config import PretrainConfig
from mjepa.typed_config import to_dict


def config_dict(config: PretrainConfig) -> dict:
    return to_dict(config)


def package_version() -> str:
    from mjepa.version import __version__

    return __version__


def git_revision() -> str | None:
    """The commit of the source tree mjepa runs from, with ``-dirty`` for local changes; None outside git."""
    source = Path(__file__).resolve().parent
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=source, capture_output=True, text=True, timeout=5)
        if rev.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=source,
            capture_output=True,
            text=True,
            timeout=5,
        )
        return rev.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def write_run_files(run_dir: Path, config: PretrainConfig, ctx: DistributedContext) -> None:
    """``config.yaml`` (the merged configuration, loadable with --config) and ``run_info.json``."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config_dict(config), sort_keys=False))
    info = {
        "mjepa_version": package_version(),
        "git_revision": git_revision(),
        "torch_version": torch.__version__,
        "python": sys.version.split()[0],
        "command": sys.argv,
        "world_size": ctx.world_size,
        "launcher": ctx.launcher,
    }
    (run_dir / "run_info.json").write_text(json.dumps(info, indent=2))
