"""Tests that fetch real Debian packages (``apt-get download``) run where that works and skip, saying why, elsewhere."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from typing import TypeVar

import pytest

from mjepa.data.debian import PackageFetchError

T = TypeVar("T")


def fetched_or_skip(fetch: Callable[[], T], what: str) -> T:
    """``fetch()``, or a skip that names ``what`` and the reason where this system has no apt-get / dpkg-deb or
    apt-get cannot fetch the package here (no package lists, no registry)."""
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        pytest.skip(f"needs apt-get and dpkg-deb (a Debian-based system) to fetch {what}")
    try:
        return fetch()
    except PackageFetchError as err:
        pytest.skip(f"{what} could not be fetched here ({err})")
