"""Experiments built on the library: the demo, the central ablation, and tracking downstream scores over a run's
checkpoints. The library (models, data, train, eval, api) never imports this package."""
