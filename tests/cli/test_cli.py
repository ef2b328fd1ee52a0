"""The command line as a user meets it: one line and exit 2 for bad input, no abbreviations."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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


def _bad_cli_inputs(tmp: Path) -> list[tuple[str, list[str], str]]:
    """(what, argv, the one line's words): values that used to be silently replaced or
    ignored, or ended in a traceback (issue 17, items 8-9)."""
    (tmp / "a_file").write_text("x")
    (tmp / "pm_boom.py").write_text("def boom():\n    raise RuntimeError('kaboom')\n")
    return [
        ("0 layers (ran 2)", ["gpt2", "--layers", "0"], "--layers: must be a positive integer, got 0"),
        ("0 tokens", ["gpt2", "--tokens", "0"], "--tokens: must be a positive integer"),
        ("negative seed", ["gpt2", "--seed", "-1"], "--seed: must be a non-negative integer"),
        ("int-high 0 (ignored)", ["check", "pm:x", "--int-high", "0"], "--int-high: must be a positive"),
        ("FM32 with cpu runs (ignored)", ["homework-mlp", "--runs", "cpu", "--field", "FM32"], "unknown field 'FM32'"),
        ("FM32 in calibrate", ["calibrate", "--homework", "--field", "fm32"], "unknown field 'fm32'"),
        ("epochs 0", ["homework-mlp", "--epochs", "0"], "--epochs: must be a positive integer"),
        ("epochs not a number", ["compare", "mlp", "--epochs", "x"], "got 'x'"),
        ("--out is a file", ["compare", "mlp", "--out", str(tmp / "a_file")], "is a file, not a folder"),
        ("factory raises", ["check", "pm_boom:boom", "float32[2,3]"], "raised RuntimeError: kaboom"),
    ]  # fmt: skip


def test_bad_command_line_values_are_one_line_and_exit_2(tmp_path, capsys, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    for what, argv, words in _bad_cli_inputs(tmp_path):
        with pytest.raises(SystemExit) as e:
            raise SystemExit(main(argv))
        out = capsys.readouterr()
        assert e.value.code == 2, what
        lines = out.err.strip().splitlines()
        assert len(lines) == 1 and words in lines[0], (what, out.err)
        assert out.out == "", (what, out.out)
