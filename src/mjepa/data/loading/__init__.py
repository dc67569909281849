"""From manifest entries to training samples and batches: the dataset, its samplers, the resumable stream."""
