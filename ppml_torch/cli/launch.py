"""``ppml-torch launch``: one process per party on this machine (a loopback cluster).

The work is :func:`ppml_torch.runners.secretflow.launcher.launch`'s; this module parses the
options and checks the sub-command every party will run (:func:`check_command`).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

HELP = "run a sub-command as one process per party on this machine (SecretFlow production mode)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..runners.secretflow.cluster import DEFAULT_START_TIMEOUT_S, DEFAULT_TIMEOUT_S

    p.add_argument(
        "--parties", required=True, help="party names, e.g. alice,bob or alice,bob,carol"
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT_S,
        help="seconds a party waits for another before it gives up with an error naming it "
        "(default %(default)s)",
    )
    p.add_argument(
        "--start-timeout",
        type=float,
        default=DEFAULT_START_TIMEOUT_S,
        help="seconds a party waits at start-up for the others (default %(default)s)",
    )
    p.add_argument(
        "--no-pin",
        action="store_true",
        help="let the parties share every CPU (default: each party gets its own share of this "
        "machine's CPUs, as on separate machines, when there are at least as many as parties)",
    )
    p.add_argument(
        "subcommand",
        nargs=argparse.REMAINDER,
        metavar="-- COMMAND ...",
        help="-- then the sub-command every party runs, e.g. -- homework-mlp --runs secretflow:SEMI2K",
    )


def check_command(argv: Sequence[str], party: str) -> None:
    """The sub-command must exist, run across processes, and its arguments must be valid."""
    import contextlib
    import importlib
    import io

    from ..runners.secretflow.cluster import ClusterError
    from . import COMMANDS, build_parser

    if not argv:
        raise ClusterError(
            "give the sub-command after --, e.g. -- homework-mlp --runs secretflow:SEMI2K"
        )
    name = argv[0]
    if name not in COMMANDS or name == "launch":
        runnable = ", ".join(c for c in COMMANDS if c != "launch")
        raise ClusterError(f"unknown sub-command {name!r} to launch; one of {runnable}")
    mod = importlib.import_module(f"ppml_torch.cli.{COMMANDS[name]}")
    check = getattr(mod, "check_launch", None)
    if check is None:
        raise ClusterError(
            f"{name} runs in one process and has no one-process-per-party mode; run it without launch"
        )
    for flag in ("--cluster", "--party"):
        if any(a == flag or a.startswith(flag + "=") for a in argv):
            raise ClusterError(f"launch sets {flag} itself; drop it from the sub-command")
    parser = build_parser()
    usage = io.StringIO()
    try:
        with contextlib.redirect_stderr(usage):
            args = parser.parse_args([*argv, "--cluster", "cluster.json", "--party", party])
    except SystemExit:  # the sub-command's usage error, as the one line of this refusal
        raise ClusterError(usage.getvalue().strip().removeprefix("ppml-torch ")) from None
    check(args)
    if getattr(args, "save", None) is not None:
        check_writable_folder(args.save, "--save")


def check_writable_folder(path: str, option: str) -> None:
    """``path`` is a folder this process can write into, made if needed, proved with a file
    written and removed (one line if not): an output the parties write only at the end,
    checked before any of them starts."""
    import os
    import tempfile

    from ..runners.secretflow.cluster import ClusterError

    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as e:
        raise ClusterError(
            f"{option} {path}: cannot write there ({e.strerror or e}); give a folder you can "
            "write to (checked before any party starts)"
        ) from None


def run(args: argparse.Namespace) -> int:
    from ..runners.secretflow.cluster import ClusterError
    from ..runners.secretflow.launcher import launch, parse_parties

    argv = list(args.subcommand)
    if argv[:1] == ["--"]:
        argv = argv[1:]
    for key, v in (("--timeout", args.timeout), ("--start-timeout", args.start_timeout)):
        if not 1 <= v <= 3600:
            raise ClusterError(f"{key} must be in [1, 3600] seconds, got {v:g}")
    parties = parse_parties(args.parties)
    result = launch(
        parties,
        argv,
        timeout_s=args.timeout,
        start_timeout_s=args.start_timeout,
        pin_cpus=not args.no_pin,
        check=check_command,
    )
    summary = ", ".join(
        f"{r.party}: exit {r.returncode}" + (" (killed)" if r.killed else "") for r in result.runs
    )
    print(f"launch: {summary}")
    return result.returncode
