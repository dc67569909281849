"""Shipped models: loadable by name from inside the package, with no network."""

from __future__ import annotations

import pytest

from mjepa import packaging
from mjepa.packaging import PretrainedFormatError, resolve_model_path


def test_a_name_that_is_not_shipped_stays_a_path(tmp_path):
    assert resolve_model_path(tmp_path / "mjepa-small") == tmp_path / "mjepa-small"
    with pytest.raises(PretrainedFormatError, match="'mjepa-huge' is not a shipped model; expected one of mjepa-tiny"):
        packaging.shipped_model_dir("mjepa-huge")


def test_a_local_folder_with_the_shipped_name_wins(tmp_path, monkeypatch):
    (tmp_path / "mjepa-tiny").mkdir()
    monkeypatch.chdir(tmp_path)
    assert resolve_model_path("mjepa-tiny") == tmp_path.joinpath("mjepa-tiny").relative_to(tmp_path)


def test_missing_shipped_weights_say_so(monkeypatch):
    monkeypatch.setattr(packaging, "WEIGHTS_PACKAGE", "mjepa.configs")  # a package without the weights
    with pytest.raises(PretrainedFormatError, match="'mjepa-tiny' names a shipped model, but this installation has "
                                                    "no weights at .*; reinstall mjepa"):
        resolve_model_path("mjepa-tiny")
