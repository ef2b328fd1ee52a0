"""``ppml-torch from-flax`` and ``converters/flax_to_torch.py`` as a user runs them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from ppml_torch.cli import main
from ppml_torch.converters.flax import files, to_flax
from ppml_torch.converters.flax.jobs import flax_file_to_torch

ROOT = Path(__file__).resolve().parents[2]


def _params(path: Path) -> dict:
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 1))
    cm = to_flax(m)
    files.save_flax(path, cm.params, cm.extras["spec"])
    return m.state_dict()


def test_script_runs_as_a_user_would_and_matches_the_library(tmp_path):
    sd = _params(tmp_path / "p.msgpack")
    r = subprocess.run(
        [
            sys.executable,
            "converters/flax_to_torch.py",
            "--params",
            str(tmp_path / "p.msgpack"),
            "--out",
            str(tmp_path / "script.pt"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout == f"mlp (4 tensors) -> {tmp_path / 'script.pt'}\n"
    flax_file_to_torch(tmp_path / "p.msgpack", out=tmp_path / "lib.pt")
    script, lib = (files.load_torch_state_dict(tmp_path / n) for n in ("script.pt", "lib.pt"))
    assert set(script) == set(lib) == set(sd)
    assert all(torch.equal(script[k], lib[k]) and torch.equal(lib[k], sd[k]) for k in sd)


def test_ppml_torch_from_flax(tmp_path, capsys):
    _params(tmp_path / "p.safetensors")
    assert (
        main(
            [
                "from-flax",
                "--params",
                str(tmp_path / "p.safetensors"),
                "--out",
                str(tmp_path / "b.safetensors"),
            ]
        )
        == 0
    )
    assert capsys.readouterr().out == f"mlp (4 tensors) -> {tmp_path / 'b.safetensors'}\n"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--params", "{t}/nope.msgpack", "--out", "{t}/o.pt"], "no such file"),
        (["--params", "{t}/empty.msgpack", "--out", "{t}/o.pt"], "is empty"),
        (["--params", "{t}/cut.msgpack", "--out", "{t}/o.pt"], "cannot be read"),
        (["--params", "{t}/p.msgpack", "--hf-out", "{t}/o"], "use --out FILE"),
        (["--params", "{t}/p.msgpack", "--out", "{t}/p.msgpack"], "use one of"),
        (["--params", "{t}/p.msgpack", "--out", "{t}/o.pt", "--module", "x"], "package.module:"),
    ],
    ids=["missing", "empty", "truncated", "hf-out-mlp", "out-suffix", "bad-module"],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, args, message):
    _params(tmp_path / "p.msgpack")
    data = (tmp_path / "p.msgpack").read_bytes()
    (tmp_path / "cut.msgpack").write_bytes(data[: len(data) // 2])
    (tmp_path / "empty.msgpack").write_bytes(b"")
    assert main(["from-flax", *(a.format(t=tmp_path) for a in args)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ppml-torch from-flax: ") and message in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "o.pt").exists() and not (tmp_path / "o").exists()
