"""``ppml-torch gpt2``: runs side by side on a tiny random GPT-2; bad input is one line, exit 2."""

from __future__ import annotations

import json

import pytest

from ppml_torch.cli import main

pytestmark = pytest.mark.filterwarnings("ignore:.*LeafSpec.*:FutureWarning")


def test_torch_and_cpu_runs_agree(capsys):
    argv = ["gpt2", "--runs", "torch", "cpu", "--route", "flax", "--tokens", "3"]
    assert main([*argv, "--layers", "1", "--width", "16", "--heads", "2"]) == 0
    out = capsys.readouterr().out
    assert "seeded random GPT-2" in out
    assert "= 7 ids [40, 2883, 6155, 351, 616, 13779, 3290]" in out
    assert "all runs agree: yes" in out
    assert out.count(" ids [") == 3  # the prompt line + one per run


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--prompt", ""], "--prompt is empty"),
        (["--tokens", "0"], "--tokens must be at least 1"),
        # --layers: the random model (1024 positions), also when models/tiny-gpt2 is built
        (["--tokens", "2000", "--layers", "1"], "positions; the model's position table has 1024"),
        (["--checkpoint", "/nonexistent/dir"], "does not exist"),
        (["--checkpoint", "/tmp", "--layers", "2"], "--layers set the random model's shape"),
        (["--width", "30", "--heads", "4"], "--width 30 is not a multiple of --heads 4"),
        (["--runs", "spu:FOO"], "unknown protocol"),
    ],
)
def test_bad_input_one_line_exit_2(capsys, extra, message):
    assert main(["gpt2", "--runs", "cpu", *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err


def test_checkpoint_whose_vocabulary_is_not_gpt2s(tmp_path, capsys):
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=8, n_head=2, vocab_size=100)).save_pretrained(
        tmp_path
    )
    assert json.loads((tmp_path / "config.json").read_text())["model_type"] == "gpt2"
    assert main(["gpt2", "--runs", "cpu", "--checkpoint", str(tmp_path)]) == 2
    assert "the model's vocabulary has 100" in capsys.readouterr().err


def test_approx_uses_the_checkpoints_candidates(tmp_path, capsys):
    import re

    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    cfg = GPT2Config(n_layer=1, n_embd=8, n_head=2, n_positions=16, initializer_range=0.3)
    GPT2LMHeadModel(cfg).save_pretrained(tmp_path)
    cand = [11, 290, 13, 1000, 40000]
    (tmp_path / "candidates.json").write_text(json.dumps({"token_ids": sorted(cand)}))
    argv = ["gpt2", "--runs", "cpu", "--route", "flax", "--tokens", "3", "--approx"]
    assert main([*argv, "--checkpoint", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "argmax over the checkpoint's 5 candidate tokens (candidates.json)" in out
    m = re.search(r"cpu\S* flax\s+ids (\[[^\]]*\])", out)
    assert m, out
    ids = json.loads(m[1])
    assert len(ids) == 3 and set(ids) <= set(cand), out
