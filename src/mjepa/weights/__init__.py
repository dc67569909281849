"""Weights of the shipped models (``packaging.SHIPPED_MODELS``), one model directory per name; docs/models.md is
their model card."""
