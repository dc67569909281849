"""AtariAV, the built-in generated dataset: gameplay from the Arcade Learning Environment with its real sound, encoded
to media files with manifests (`mjepa data atari`).
"""
