"""Shared behaviour of the ``mjepa`` sub-commands: expected failures are one line on stderr, never a traceback."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

STOPPED_EXIT_STATUS = 3


def run_reporting_errors(
    prog: str,
    run: Callable[[argparse.Namespace], int],
    args: argparse.Namespace,
    stops: tuple[type[Exception], ...] = (),
) -> int:
    """``run(args)``; a bad value, file or checkpoint becomes ``prog: error: ...`` and exit status 2; an exception
    of ``stops`` (a run that stopped itself, e.g. ``TrainingStopped``) becomes ``prog: stopped: ...`` and status 3."""
    from mjepa.checkpoint_file import CheckpointError
    from mjepa.distributed import DistributedInitError

    try:
        return run(args)
    except stops as err:
        print(f"{prog}: stopped: {err}", file=sys.stderr)
        return STOPPED_EXIT_STATUS
    except (ValueError, CheckpointError, DistributedInitError) as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # an output that cannot be written, an input that cannot be read
        where = f"{err.filename}: " if err.filename else ""
        print(f"{prog}: error: {where}{err.strerror or err}", file=sys.stderr)
        return 2


def comma_integers(text: str, flag: str) -> list[int]:
    """``"1,2,3"`` -> ``[1, 2, 3]``; anything else is a one-line error naming ``flag``."""
    try:
        return [int(s) for s in text.split(",") if s]
    except ValueError:
        raise ValueError(f"{flag}: expected comma-separated integers, got {text!r}") from None


def comma_choices(text: str, flag: str, kind: str, allowed: Sequence[str]) -> list[str]:
    """The comma-separated names in ``text``, each one of ``allowed``; an unknown ``kind`` is a one-line error."""
    names = [n for n in text.split(",") if n]
    unknown = [n for n in names if n not in allowed]
    if unknown:
        raise ValueError(f"{flag}: unknown {kind} {unknown[0]!r}; expected some of {', '.join(allowed)}")
    return names


def add_device_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--device", default=None, help="torch device to run the encoder on (default: cuda when present, else cpu)"
    )


def resolve_device(requested: str | None = "auto", local_rank: int = 0, setting: str = "--device"):
    """The one rule for choosing a device. ``None`` or ``"auto"``: this process's GPU (``cuda:local_rank``) when
    CUDA is available, else the CPU; ``"cuda"``: that GPU, an error without one; any other torch device name
    (``cpu``, ``cuda:1``) as given. ``setting`` names the option in errors (``--device``, ``run.device``)."""
    import torch

    if requested is None or requested == "auto":
        return torch.device("cuda", local_rank) if torch.cuda.is_available() else torch.device("cpu")
    try:
        device = torch.device(requested)
    except RuntimeError:
        raise ValueError(f"{setting}: {requested!r} is not a torch device (expected e.g. cpu, cuda, cuda:1)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"{setting}={requested}: no CUDA device is available")
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", local_rank)
    return device
