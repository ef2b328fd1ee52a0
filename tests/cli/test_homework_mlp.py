"""``ppml-torch homework-mlp`` prints its table."""

from __future__ import annotations

from ppml_torch.cli import main


def test_one_cpu_epoch_prints_the_table(capsys):
    assert main(["homework-mlp", "--runs", "cpu", "--epochs", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("breast-cancer MLP [30, 15, 8, 1] ReLU, 1 epochs")
    assert lines[2].split()[:5] == ["backend", "protocol", "field", "AUC", "|dAUC|"]
    row = lines[4].split()
    assert row[:3] == ["cpu", "-", "-"] and row[4] == "0.0000" and 0.0 <= float(row[3]) <= 1.0
    assert lines[5].startswith("compile: JAX/SPU compilation")


def test_epochs_below_one_is_one_line(capsys):
    assert main(["homework-mlp", "--runs", "cpu", "--epochs", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        "ppml-torch homework-mlp: argument --epochs: must be a positive integer, got 0 "
        "(see ppml-torch homework-mlp --help)"
    )
