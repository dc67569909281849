"""Packing manifests into tar shards (`mjepa data shard`); reading members is in `data.media.members`."""
