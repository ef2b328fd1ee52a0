"""``ppml-torch digits`` prints its table; bad arguments are one line before any work."""

from __future__ import annotations

import pytest

from ppml_torch.cli import main


def test_torch_and_cpu_rows(capsys):
    assert main(["digits", "--runs", "torch", "cpu", "--epochs", "1", "--train-rows", "64"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("digits CNN conv(1->8)-relu-maxpool-conv(8->16)-relu-maxpool")
    assert "1 epochs, batch 32" in lines[0] and "first 64 training images" in lines[0]
    assert lines[1].split()[:5] == ["backend", "protocol", "field", "acc", "|dacc|"]
    torch_row, cpu_row = lines[3].split(), lines[4].split()
    assert torch_row[:3] == ["torch", "-", "-"] and torch_row[4] == "0.0000"
    assert cpu_row[:3] == ["cpu", "-", "-"]
    assert cpu_row[3] == torch_row[3] and cpu_row[4] == "0.0000"  # fit on cpu is torch eager
    assert lines[5].startswith("acc: test accuracy (360 images)")


@pytest.mark.parametrize(
    "argv,words",
    [
        (["--batch", "0"], "--batch: must be a positive integer, got 0"),
        (["--epochs", "-1"], "--epochs: must be a positive integer"),
        (["--train-rows", "5000"], "--train-rows 5000: the training split has 1437 images"),
        (["--train-rows", "1"], "--train-rows: give at least 2"),
        (["--train-rows", "64", "--batch", "65"], "--batch 65 is larger than the 64 training"),
        (["--runs", "spu:SPDZ"], "SPDZ"),
        (["--cluster", "c.json"], "--cluster and --party go together"),
    ],
)
def test_bad_arguments_are_one_line(capsys, argv, words):
    assert (
        main(["digits", "--runs", "cpu", *argv] if "--runs" not in argv else ["digits", *argv]) == 2
    )
    out = capsys.readouterr()
    lines = out.err.strip().splitlines()
    assert len(lines) == 1 and words in lines[0], out.err
    assert out.out == ""
