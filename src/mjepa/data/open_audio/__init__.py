"""Open-audio: real recorded speech and sound effects from Debian's packages (game voices, spoken words, letters and
telephone prompts), fetched and unpacked at run time, never committed (their licences forbid it), with manifests and
generalisation splits for probing (`mjepa data open-audio`)."""
