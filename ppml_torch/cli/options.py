"""The options several sub-commands share, each defined once: help text, default, choices.

``--runs`` (run specs, :mod:`ppml_torch.runners.runspec`), ``--field`` (the field of MPC runs
that name none), ``--route``/``--routes`` (the conversion routes, :data:`ppml_torch.model.ROUTES`)
and ``--cluster``/``--party`` (one process per party).  A command adds the ones it takes with
the functions below and keeps only what is its own (its default runs, a note).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from ..model import ROUTES
from ..runners.config import DEFAULT_FIELD, DEFAULT_PARTIES, FIELDS, ConfigError

RUN_SYNTAX = "backend[:protocol[:field]]"


def add_runs(
    p: argparse.ArgumentParser, default: Sequence[str], *, torch: bool = True, note: str = ""
) -> None:
    """``--runs``: run specs; ``torch``: the command also takes the torch eager run."""
    what = f"torch and {RUN_SYNTAX}" if torch else RUN_SYNTAX
    p.add_argument(
        "--runs",
        nargs="+",
        default=list(default),
        metavar="RUN",
        help=f"{what} list (default: %(default)s)" + (f"; {note}" if note else ""),
    )


def positive_int(text: str) -> int:
    """An argparse type: an integer of at least 1 (a count, a size: 0 would be replaced)."""
    return _int(text, 1, "a positive integer")


def non_negative_int(text: str) -> int:
    """An argparse type: an integer of at least 0 (a seed)."""
    return _int(text, 0, "a non-negative integer")


def _int(text: str, low: int, what: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None
    if value < low:
        raise argparse.ArgumentTypeError(f"must be {what}, got {value}")
    return value


def output_dir(text: str) -> str:
    """An argparse type: a folder results can be written to (existing, or creatable), checked
    before any work: not an existing file, and its nearest existing folder writable."""
    import os

    path = os.path.abspath(text)
    if os.path.exists(path) and not os.path.isdir(path):
        raise argparse.ArgumentTypeError(f"{text!r} is a file, not a folder; give a folder")
    probe = path
    while not os.path.exists(probe):
        probe = os.path.dirname(probe)
    if not os.path.isdir(probe) or not os.access(probe, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(
            f"{text!r}: {probe!r} is not writable; choose another folder"
        )
    return text


def field_name(text: str) -> str:
    """An argparse type: a field name, checked even when no run uses it (FM32 is an error)."""
    name = text.upper()
    if name not in FIELDS:
        raise argparse.ArgumentTypeError(f"unknown field {text!r}; use {' or '.join(FIELDS)}")
    return name


def add_field(p: argparse.ArgumentParser, *, runs: bool = True) -> None:
    """``--field``: of the MPC runs that name none (``runs=False``: the one field used)."""
    choices = " or ".join(FIELDS)
    what = "field of MPC runs that name none" if runs else "field"
    p.add_argument(
        "--field",
        type=field_name,
        default=DEFAULT_FIELD,
        help=f"{what}: {choices} (default %(default)s)",
    )


def add_route(p: argparse.ArgumentParser, default: str, *, what: str = "conversion route") -> None:
    """``--route``: one conversion route."""
    p.add_argument("--route", choices=ROUTES, default=default, help=f"{what} (default %(default)s)")


def add_routes(
    p: argparse.ArgumentParser, default: Sequence[str] = ROUTES, *, flag: str = "--routes"
) -> None:
    """``--routes`` (or ``flag``): one or more conversion routes, each run in turn."""
    p.add_argument(
        flag,
        nargs="+",
        choices=ROUTES,
        default=list(default),
        help="graph (ppml_torch.convert) and/or flax (the Flax twin, ppml_torch.to_flax); "
        "default: %(default)s",
    )


def add_party(p: argparse.ArgumentParser, *, note: str = "") -> None:
    """``--cluster FILE --party NAME``: this process is one party of a secretflow run."""
    p.add_argument(
        "--cluster",
        metavar="FILE",
        help="run this process as one party of a multi-process secretflow run (cluster file; "
        "see `ppml-torch launch` for one machine)" + (f": {note}" if note else ""),
    )
    p.add_argument(
        "--party", help=f"this process's party in --cluster ({', '.join(DEFAULT_PARTIES)})"
    )


def one_party(args: argparse.Namespace) -> bool:
    """Whether this process is one party of a multi-process run (``--cluster`` and
    ``--party`` given); one without the other is a one-line error."""
    if (args.cluster is None) != (args.party is None):
        raise ConfigError("--cluster and --party go together (or use `ppml-torch launch`)")
    return args.cluster is not None


def distinct_routes(values: Sequence[str], flag: str = "--routes") -> list[str]:
    """The routes of ``flag``, each given once (one-line error otherwise)."""
    if len(set(values)) != len(values):
        raise ConfigError(f"{flag} lists a route twice: {' '.join(values)}")
    return list(values)
