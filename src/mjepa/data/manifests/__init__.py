"""The manifest schema, importers of public datasets' metadata, folder segmenting, manifest validation and fbank
statistics, with their `mjepa data` commands.
"""
