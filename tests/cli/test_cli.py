"""The command line as a user meets it: one line and exit 2 for bad input, no abbreviations."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ppml_torch.cli import COMMANDS, build_parser, main


def test_help_lists_every_command(capsys):
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for name in COMMANDS:
        assert name in out


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_abbreviations_are_off_in_every_subcommand(command, capsys):
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices[command]
    assert sub.allow_abbrev is False
    longs = [
        o for a in sub._actions for o in a.option_strings if o.startswith("--") and o != "--help"
    ]
    for opt in longs:
        with pytest.raises(SystemExit) as e:
            parser.parse_args([command, opt[:-1]])
        assert e.value.code == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err


def test_ops_and_protocols(capsys):
    assert main(["ops", "--status", "unsupported"]) == 0
    assert "aten.native_batch_norm.default" in capsys.readouterr().out
    assert main(["protocols"]) == 0
    assert "ABY3" in capsys.readouterr().out


def test_module_entry_point_runs_as_a_user_would():
    out = subprocess.run(
        [sys.executable, "-m", "ppml_torch", "protocols"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "SEMI2K" in out.stdout and out.stderr == ""
