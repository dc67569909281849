"""Fetching a Debian package's files without installing it: ``apt-get download`` and ``dpkg-deb -x``, once.

No root is needed: the package is downloaded into a cache folder and unpacked there, never installed. Its version
is read from the package itself, and the licences its machine-readable copyright file lists are recorded, so that
every item built from it can say where it came from and under which terms.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

FETCHED_RECORD = "fetched.json"
DOWNLOAD_TIMEOUT_S = 1800.0


class PackageFetchError(ValueError):
    """A Debian package that could not be downloaded or unpacked (one line, naming the package)."""


@dataclass(frozen=True)
class FetchedPackage:
    name: str
    version: str
    root: Path  # the unpacked file tree (root/usr/share/...)
    licences: tuple[str, ...]  # the License: values of its copyright file, in order of first appearance
    deb_bytes: int


def require_debian_tools() -> None:
    """A one-line error where ``apt-get`` or ``dpkg-deb`` is missing (not a Debian-based system)."""
    missing = [tool for tool in ("apt-get", "dpkg-deb") if shutil.which(tool) is None]
    if missing:
        raise PackageFetchError(
            f"fetching Debian packages needs {' and '.join(missing)}, which this system lacks: run on Debian or "
            "Ubuntu (the data is downloaded and unpacked, never installed; no root is needed)"
        )


def fetch_package(name: str, cache: str | Path) -> FetchedPackage:
    """``name`` downloaded into ``cache/debs`` and unpacked into ``cache/packages/NAME`` (reused when already there)."""
    cache = Path(cache)
    folder = cache / "packages" / name
    record = folder / FETCHED_RECORD
    if record.is_file():
        saved = json.loads(record.read_text())
        return FetchedPackage(name, saved["version"], folder / "root", tuple(saved["licences"]), saved["deb_bytes"])
    require_debian_tools()
    debs = cache / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    deb = _download(name, debs)
    version = _run(["dpkg-deb", "-f", str(deb), "Version"], name, "read the version of").strip()
    root = folder / "root"
    if root.exists():
        shutil.rmtree(root)  # a partial unpack of an interrupted run
    root.mkdir(parents=True)
    _run(["dpkg-deb", "-x", str(deb), str(root)], name, "unpack")
    licences = copyright_licences(root, name)
    record.write_text(
        json.dumps(
            {
                "package": name,
                "version": version,
                "licences": list(licences),
                "deb_bytes": deb.stat().st_size,
                "deb": deb.name,
            },
            indent=2,
        )
    )
    return FetchedPackage(name, version, root, licences, deb.stat().st_size)


def copyright_grants(root: Path, name: str, words: str) -> bool:
    """Whether the package's copyright file contains ``words`` (whitespace and case aside): for copyright files
    that are not machine-readable."""
    path = root / "usr" / "share" / "doc" / name / "copyright"
    if not path.is_file():
        return False
    squeeze = lambda text: " ".join(text.split()).lower()  # noqa: E731
    return squeeze(words) in squeeze(path.read_text(encoding="utf-8", errors="replace"))


def copyright_licences(root: Path, name: str) -> tuple[str, ...]:
    """The ``License:`` values of the package's machine-readable copyright file (empty when it has none)."""
    path = root / "usr" / "share" / "doc" / name / "copyright"
    if not path.is_file():
        return ()
    found: list[str] = []
    for match in re.finditer(r"^License:\s*(\S[^\n]*)$", path.read_text(encoding="utf-8", errors="replace"), re.M):
        value = match.group(1).strip()
        if value not in found:
            found.append(value)
    return tuple(found)


def _download(name: str, folder: Path) -> Path:
    existing = sorted(folder.glob(f"{name}_*.deb"))
    if existing:
        return existing[-1]
    _run(["apt-get", "download", name], name, "download", cwd=folder)
    found = sorted(folder.glob(f"{name}_*.deb"))
    if not found:
        raise PackageFetchError(f"{name}: apt-get download reported success but wrote no {name}_*.deb in {folder}")
    return found[-1]


def _run(command: list[str], name: str, what: str, cwd: Path | None = None) -> str:
    try:
        done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=DOWNLOAD_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        raise PackageFetchError(f"{name}: could not {what} the package within {DOWNLOAD_TIMEOUT_S:.0f} s") from None
    if done.returncode != 0:
        lines = [line for line in (done.stderr or done.stdout).splitlines() if line.strip()]
        reason = lines[-1].strip() if lines else f"exit status {done.returncode}"
        hint = " (run `apt-get update` once first)" if "Unable to locate package" in reason else ""
        raise PackageFetchError(f"{name}: could not {what} the package: {reason}{hint}")
    return done.stdout
