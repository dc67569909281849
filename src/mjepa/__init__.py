"""MJEPA: one shared ViT encoder, one latent-prediction objective within and across audio and video.

import mjepa
model = mjepa.load("runs/tiny-cpu/checkpoints/latest.pt")
embedding = model.encode_audio(waveform, sample_rate=16000).mean
"""

from mjepa.version import __version__  # noqa: F401


def load(path_or_repo: str, revision: str | None = None, device=None, dtype=None):
    """A trained model (see :mod:`mjepa.api`): model directory, training checkpoint or Hugging Face Hub id, on
    ``device`` (e.g. ``"cuda"``) in ``dtype`` (e.g. ``torch.bfloat16``) when given."""
    from mjepa.api import load as _load

    return _load(path_or_repo, revision, device=device, dtype=dtype)
