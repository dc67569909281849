"""torch.hub entry point: ``torch.hub.load("<this repo>", "mjepa", path=...)``.

The repository ships no weights (the official MJEPA code has none either); ``path`` is a model directory written
by ``save_pretrained``, a training checkpoint, or a Hugging Face Hub repository id.
"""

dependencies = ["torch", "av", "safetensors", "numpy", "yaml"]


def mjepa(path: str, revision: str | None = None):
    """An ``mjepa.api.MJEPAModel`` with ``encode_audio`` / ``encode_video`` / ``encode_av``."""
    import os
    import sys

    # torch.hub imports this file from the repository root; make the src-layout package importable from there.
    src = os.path.join(os.path.dirname(os.path.abspath(__file__)), "src")
    if os.path.isdir(src) and src not in sys.path:
        sys.path.insert(0, src)
    from mjepa.api import load

    return load(path, revision)
