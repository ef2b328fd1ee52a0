"""``ppml-torch protocols``: protocols, party counts and the runtime defaults."""

from __future__ import annotations

import argparse

HELP = "protocols, party counts and SPU runtime defaults"


def add_arguments(p: argparse.ArgumentParser) -> None:
    return None


def run(args: argparse.Namespace) -> int:
    from ..runners.config import FIELD_FRACTION_BITS, PROTOCOL_DEFAULTS, PROTOCOLS

    for name, n in PROTOCOLS.items():
        print(f"{name:<8} {n} parties  defaults: {PROTOCOL_DEFAULTS[name]}")
    print(f"fraction bits by field: {FIELD_FRACTION_BITS}")
    return 0
