"""The examples run as a user would run them (small settings)."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_torch_mlp_on_spu(capsys):
    assert _load("torch_mlp_on_spu").main(["--protocol", "SEMI2K"]) == 0
    errors = [
        float(e)
        for e in re.findall(r"max abs error vs torch ([0-9.e+-]+)", capsys.readouterr().out)
    ]
    assert len(errors) == 2 and max(errors) < 1e-3


def test_gpt2_next_token_routes_agree_with_torch(capsys):
    assert (
        _load("gpt2_next_token").main(
            ["--layers", "1", "--width", "32", "--heads", "2", "--vocab", "128"]
        )
        == 0
    )
    out = capsys.readouterr().out
    torch_token = int(re.search(r"torch next token (\d+)", out).group(1))
    margin = float(re.search(r"top-1 margin ([0-9.e+-]+)", out).group(1))
    for route in ("graph", "flax"):
        line = next(ln for ln in out.splitlines() if ln.startswith(route))
        err = float(re.search(r"logits max abs error ([0-9.e+-]+)", line).group(1))
        assert margin > 2 * err, f"prompt too close to call under MPC: {out}"
        assert int(re.search(r"next token (\d+)", line).group(1)) == torch_token, out


def test_fit_breast_cancer(capsys):
    argv = ["--session", "cpu", "--route", "flax", "--epochs", "2"]
    assert _load("fit_breast_cancer").main(argv) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    auc, ref = (
        float(v) for v in re.search(r"AUC ([0-9.]+) \(torch eager ([0-9.]+)\)", line).groups()
    )
    assert abs(auc - ref) < 1e-4 and ref > 0.95, line


def test_finetune_hf_follows_torch_eager(capsys):
    """GPT-2 as transformers makes it, its own loss, dropout off: fit on cpu is torch's steps."""
    argv = ["--session", "cpu", "--dropout", "0", "--epochs", "2", "--sequences", "8"]
    assert _load("finetune_hf").main(argv) == 0
    out = capsys.readouterr().out
    assert "GPT2LMHeadModel(input_ids=<input_ids>, labels=<labels>, use_cache=False).loss" in out
    err = float(re.search(r"vs torch eager \(the same steps\) ([0-9.e+-]+)", out).group(1))
    assert err < 1e-5, out
