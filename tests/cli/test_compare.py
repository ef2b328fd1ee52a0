"""``ppml-torch compare mlp`` prints one row per run and writes its plots."""

from __future__ import annotations

from ppml_torch.cli import main


def test_torch_and_cpu_one_epoch(capsys, tmp_path):
    out = tmp_path / "plots"
    argv = ["compare", "mlp", "--runs", "torch", "cpu", "--routes", "graph", "--epochs", "1"]
    assert main([*argv, "--out", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("breast-cancer MLP [30, 15, 8, 1] ReLU defined in torch")
    assert lines[1].split()[:6] == ["run", "route", "epochs", "AUC", "|dAUC|", "max|dW|"]
    torch_row, cpu_row = lines[3].split(), lines[4].split()
    assert torch_row[:3] == ["torch", "-", "1"] and torch_row[4] == "0.0000"
    assert cpu_row[:3] == ["cpu", "graph", "1"] and float(cpu_row[5]) < 1e-5
    assert lines[-2:] == [f"wrote {out / 'loss_curves.png'}", f"wrote {out / 'predictions.png'}"]
    assert (out / "loss_curves.png").stat().st_size > 0


def test_bad_input_is_one_line(capsys):
    assert main(["compare", "mlp", "--runs", "cpu", "--epochs", "0"]) == 2
    assert capsys.readouterr().err.strip() == (
        "ppml-torch compare: argument --epochs: must be a positive integer, got 0 "
        "(see ppml-torch compare --help)"
    )
    assert main(["compare", "mlp", "--runs", "spu:NOPE"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ppml-torch compare: run 'spu:NOPE'") and "\n" not in err
