"""The ``ppml-torch`` command: one sub-command per module of this package.

Each module ``ppml_torch/cli/<name>.py`` has ``HELP`` (one line), ``add_arguments(parser)``
and ``run(args) -> int``; the work itself is done by library functions, so a test calls the
library and the command stays a thin layer.  To add a job: write its module and list it in
:data:`COMMANDS`.

Bad input of any kind (a :class:`~ppml_torch.errors.PpmlError`) becomes one line on stderr
and exit code 2, never a traceback.  Argument abbreviations are off everywhere
(``--epoch 3`` is an error, not ``--epochs 3``).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from ..errors import PpmlError

# sub-command name -> module in this package (the order of `ppml-torch --help`)
COMMANDS = {
    "calibrate": "calibrate",
    "check": "check",
    "compare": "compare",
    "digits": "digits",
    "export-stablehlo": "export_stablehlo",
    "from-flax": "from_flax",
    "gpt2": "gpt2",
    "homework-mlp": "homework_mlp",
    "launch": "launch",
    "ops": "ops",
    "profile": "profile",
    "protocols": "protocols",
    "to-flax": "to_flax",
}


class Parser(argparse.ArgumentParser):
    """argparse with abbreviations off and usage errors as one line + exit 2."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str):  # one line, exit 2 (argparse prints usage + message)
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def _module(name: str):
    return importlib.import_module(f"{__name__}.{COMMANDS[name]}")


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="ppml-torch", description="Train and run PyTorch models under MPC (SPU).")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)
    for name in COMMANDS:
        mod = _module(name)
        sp = sub.add_parser(name, help=mod.HELP, description=mod.HELP)
        mod.add_arguments(sp)
        sp.set_defaults(func=mod.run)
    return p


def main(argv: list[str] | None = None) -> int:
    code = _main(argv)
    from ..runners.leftovers import remove_now

    remove_now()  # JAX's empty temporary folder (runners/leftovers.py)
    if _party_process():  # see patches.links_stopped_then_linger: no C++ static destructors
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def _party_process() -> bool:
    """Whether this process ran a production session (one process per party): SecretFlow's
    native link threads outlive it, so the process ends with ``os._exit`` after flushing."""
    startup = sys.modules.get("ppml_torch.runners.secretflow.startup")
    return bool(startup is not None and startup.PartyRuntime.started)


def _main(argv: list[str] | None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:  # --help (0) or a usage error, already printed in one line (2)
        return e.code if isinstance(e.code, int) else 2
    try:
        return int(args.func(args) or 0)
    except PpmlError as e:
        print(f"ppml-torch {args.command}: {e}", file=sys.stderr)
        if getattr(e, "exit_now", False):  # e.g. a lost party: SecretFlow's threads may hang exit
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(2)
        return 2
    except KeyboardInterrupt:
        print(f"ppml-torch {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
