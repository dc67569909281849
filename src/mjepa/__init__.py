"""MJEPA: one shared ViT encoder, one latent-prediction objective within and across audio and video."""

__version__ = "0.1.0.dev0"
