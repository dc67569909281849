"""GM-Instruments, the generated transfer set of sampled General MIDI instruments (`mjepa data instruments`)."""
