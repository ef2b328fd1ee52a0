"""``ppml-torch calibrate`` as a user runs it: presets, a model spec, the gate, bad input."""

from __future__ import annotations

import re
import sys

import numpy as np
import pytest

from ppml_torch.cli import main

MODELS = """
import torch

def make(scale=1.0):
    torch.manual_seed(0)
    m = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
    with torch.no_grad():
        for p in m.parameters():
            p.mul_(scale)
    return m

class Embed(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = torch.nn.Embedding(10, 4)

    def forward(self, ids):
        return self.emb(ids).sum(-1)
"""


@pytest.fixture
def models(tmp_path, monkeypatch):
    (tmp_path / "cal_models.py").write_text(MODELS)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    sys.modules.pop("cal_models", None)


def test_homework_preset(capsys):
    assert main(["calibrate", "--homework", "--epochs", "1", "--check"]) == 0
    out = capsys.readouterr().out
    assert "homework MLP [30, 15, 8, 1] ReLU, 1 epochs" in out
    assert "on float32[455, 30]" in out
    for row in ("(inputs)", "0         Linear", "4         Linear"):
        assert row in out
    assert "recommended: FM64 with 18 fraction bits (this setting)" in out
    assert "check: no wrong result predicted" in out


def test_a_model_built_to_overflow_is_flagged_and_refused_with_check(models, capsys):
    spec = ["--module", "cal_models:make", "--kwargs", '{"scale": 1e5}', "--input", "float32[8,4]"]
    assert main(["calibrate", *spec]) == 0
    out = capsys.readouterr().out
    assert "overflow risk" in out
    assert "on random inputs" in out
    assert main(["calibrate", *spec, "--check"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "overflow risk in 2 (Linear)" in err and "use field=" in err
    # FM128 holds it
    assert main(["calibrate", *spec, "--field", "FM128", "--check"]) == 0


def test_given_samples_and_integer_inputs(models, capsys, tmp_path):
    ids = np.array([[1, 2, 3]], np.int64)
    np.save(tmp_path / "ids.npy", ids)
    args = ["calibrate", "--module", "cal_models:Embed", "--input", "int64[1,3]"]
    assert main([*args, "--sample", "ids.npy"]) == 0
    assert re.search(r"^emb +Embedding ", capsys.readouterr().out, re.M)
    assert main([*args, "--int-high", "10"]) == 0
    capsys.readouterr()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--gpt2", "--input", "float32[1]"],
            "--input, --sample, --kwargs and --checkpoint go with",
        ),
        (["--module", "cal_models:make"], "--module needs its inputs"),
        (["--module", "cal_models:Embed", "--input", "int64[1,3]"], "give --int-high N"),
        (
            ["--module", "cal_models:make", "--input", "float32[8,4]", "--sample", "nope.npy"],
            "nope.npy: no such file",
        ),
        (
            ["--module", "cal_models:make", "--input", "float32[8,4]", "--sample", "ids.npy"],
            "holds int64[1, 3], but input 0 is float32[8, 4]",
        ),
        (["--homework", "--strict"], "--strict goes with --check"),
        (["--homework", "--fraction-bits", "40"], "use an integer in 8..26"),
        (["--homework", "--field", "FM32"], "unknown field 'FM32'"),
        (["--homework", "--protocol", "SPDZ"], "unknown protocol 'SPDZ'"),
    ],
)
def test_bad_input_is_one_line(models, capsys, tmp_path, argv, message):
    np.save(tmp_path / "ids.npy", np.array([[1, 2, 3]], np.int64))
    assert main(["calibrate", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err


@pytest.mark.slow
def test_gpt2_preset_flax_route(capsys):
    assert main(["calibrate", "--gpt2", "--tokens", "8", "--route", "flax"]) == 0
    out = capsys.readouterr().out
    assert "transformer.h.1.attn" in out and "mask values (clamped, ok)" in out
