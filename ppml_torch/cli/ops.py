"""``ppml-torch ops``: the graph converter's op table."""

from __future__ import annotations

import argparse

HELP = "the graph converter's op table (--json, --markdown for docs/ops.md)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..converters.fx import registry

    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="print JSON rows")
    fmt.add_argument("--markdown", action="store_true", help="print the docs/ops.md page")
    p.add_argument("--family", choices=registry.FAMILIES, help="only this family")
    p.add_argument("--status", choices=registry.STATUSES, help="only this status")


def run(args: argparse.Namespace) -> int:
    from ..converters.fx.table import render

    print(
        render(
            family=args.family,
            status=args.status,
            fmt="json" if args.json else "markdown" if args.markdown else "text",
        )
    )
    return 0
