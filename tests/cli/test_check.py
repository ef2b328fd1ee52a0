"""``ppml-torch check``: the table, exit 1 on a failing row, 2 on bad input (before any work)."""

from __future__ import annotations

import pytest
import torch

from ppml_torch.cli import main


def test_prints_the_table_and_exits_0(capsys):
    code = main(["check", "tests.equivalence.toy:gates", "float32[5,6]", "--runs", "torch", "cpu"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert out.startswith("tests.equivalence.toy:gates: Gates on (float32[5, 6])")
    assert "graph  cpu" in out and "all rows pass" in out


def test_failing_row_exits_1_naming_the_element(capsys):
    code = main(["check", "tests.equivalence.toy:overflowing", "float32[5,6]",
                 "--runs", "spu:SEMI2K", "--routes", "graph"])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 1
    assert "FAIL" in out and ": expected " in out and "1 row(s) failed" in out


@pytest.mark.parametrize(
    "argv,message",
    [
        (
            ["tests.equivalence.toy:gates", "float32(5,6)"],
            "bad input spec 'float32(5,6)': write dtype[shape]",
        ),
        (["tests.equivalence.toy:gates", "floot32[5,6]"], "unknown dtype 'floot32'"),
        (["tests.equivalence.toy:gates", "float32[5,6]", "--runs", "spu:XYZ"], "unknown protocol"),
        (["tests.equivalence.toy:nothing", "float32[5,6]"], "has no attribute 'nothing'"),
        (["no_such_pkg.mod:Net", "float32[5,6]"], "cannot import 'no_such_pkg'"),
        (["not-a-spec", "float32[5,6]"], "neither package.module:Factory nor a checkpoint folder"),
        (["tests.equivalence.toy:gates", "float32[5,7]"], "the example inputs do not fit Gates"),
        (["tests.equivalence.toy:gates", "float32[5,6]", "--tolerance", "0"], "must be positive"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(capsys, argv, message):
    assert main(["check", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err


def test_hf_checkpoint_folder(tmp_path, capsys):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=64, n_embd=16, n_layer=1, n_head=2, n_positions=16)
    GPT2LMHeadModel(cfg).save_pretrained(tmp_path)
    code = main(["check", str(tmp_path), "--runs", "cpu", "--routes", "graph"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert f"GPT2LMHeadModel from {tmp_path}: GPT2LMHeadModel on (input_ids=int64[1, 8])" in out
