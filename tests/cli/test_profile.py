"""``ppml-torch profile`` as a user runs it: a model given as pkg.mod:factory, presets, bad input."""

from __future__ import annotations

import pytest

from ppml_torch.cli import main

MODEL = ["tests.profiling.toy:costly", "float32[4,16]"]


def table_rows(out: str) -> list[str]:
    """The rows of the first table (after its dashes, up to the blank line)."""
    lines = out.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith("---")) + 1
    return lines[start : lines.index("", start)]


def test_a_factory_model_costliest_module_first(tmp_path, capsys):
    plot = tmp_path / "profile.png"
    argv = ["profile", *MODEL, "--runs", "spu:ABY3", "--repeats", "3", "--plot", str(plot)]
    assert main([*argv, "--networks", "lan", "wan", "puma-lan"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("tests.profiling.toy:costly on float32[4, 16] (random inputs, seed 0)")
    assert "on spu:ABY3:FM64" in out
    rows = table_rows(out)
    assert rows[0].split()[:2] == ["1", "Costly"]
    assert {r.split()[0] for r in rows} == {"0", "1", "2"}
    assert "bytes 100.0% and sends 100.0% of the whole's" in out
    for net in ("lan (1 Gbit/s, 0.5 ms round trip)", "wan (100 Mbit/s", "puma-lan (5 Gbit/s"):
        assert net in out
    assert f"wrote {plot}" in out and plot.read_bytes()[:4] == b"\x89PNG"


def test_grads_and_one_module(capsys):
    argv = ["profile", *MODEL, "--runs", "spu:SEMI2K", "--grads", "--module", "2"]
    assert main([*argv, "--bandwidth", "2e8", "--rtt", "0.01"]) == 0
    out = capsys.readouterr().out
    assert "forward and backward" in out and "sent bwd" in out
    assert "module 2 (Linear):" in out
    assert [r.split()[0] for r in table_rows(out)] == ["2"]
    assert "custom (200 Mbit/s, 10 ms round trip): " in out


def test_homework_preset(capsys):
    assert main(["profile", "--homework", "--runs", "spu:SEMI2K", "--top", "0"]) == 0
    out = capsys.readouterr().out
    assert "one SGD step (batch 10, lr 0.01)" in out
    rows = {r.split()[0] for r in table_rows(out)}
    assert {"0", "1", "2", "3", "4", "(loss)", "(optimizer)"} <= rows


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([*MODEL, "--runs", "cpu"], "profiling a plaintext run has nothing to count"),
        ([*MODEL, "--runs", "torch"], "this command has no torch eager run"),
        ([*MODEL, "--runs", "secretflow:SEMI2K"], "profile runs on in-process spu sessions"),
        ([*MODEL, "--runs", "spu:NOPE"], "unknown protocol"),
        ([*MODEL, "--networks", "moon"], "unknown network 'moon'"),
        ([*MODEL, "--bandwidth", "0", "--rtt", "0.01"], "bandwidth must be a positive number"),
        ([*MODEL, "--bandwidth", "-5", "--rtt", "0.01"], "bandwidth must be a positive number"),
        ([*MODEL, "--bandwidth", "1e9"], "--bandwidth and --rtt go together"),
        ([*MODEL, "--module", "3"], "--module '3' is not a module of the model"),
        ([*MODEL, "--module", "costly"], "--module 'costly' is not a module of the model"),
        ([*MODEL, "--plot", "out.jpg"], "give a file name ending in .png"),
        ([*MODEL, "--plot", "no/such/dir/out.png"], "folder no/such/dir does not exist"),
        ([], "give one model: MODULE_SPEC [INPUTS], --homework or --gpt2"),
        ([*MODEL, "--homework"], "give one model"),
        (["--homework", "--grads"], "forward and backward already"),
        (["--gpt2", "--layers", "0"], "--layers must be at least 1"),
        (["no_such_pkg.mod:make", "float32[2,2]"], "no_such_pkg"),
        ([MODEL[0], "float32[4,"], "float32[4,"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(argv, message, capsys):
    assert main(["profile", *argv]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert message in err, err
    assert "\n" not in err and captured.out == ""
