"""Shared behaviour of the ``mjepa`` sub-commands: expected failures are one line on stderr, never a traceback."""

from __future__ import annotations

import argparse
import sys
from typing import Callable


def run_reporting_errors(prog: str, run: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """``run(args)``; a bad value, file or checkpoint becomes ``prog: error: ...`` and exit status 2."""
    from mjepa.train.checkpoint import CheckpointError
    from mjepa.train.distributed import DistributedInitError

    try:
        return run(args)
    except (ValueError, CheckpointError, DistributedInitError) as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 2
