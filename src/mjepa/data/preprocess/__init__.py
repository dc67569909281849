"""The model-input front end: the Kaldi-compatible fbank, video transforms and the Frontend record stored with every
checkpoint.
"""
