"""``ppml-torch to-flax`` and ``converters/torch_to_flax.py`` as a user runs them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from ppml_torch.cli import main
from ppml_torch.converters.flax import files

ROOT = Path(__file__).resolve().parents[2]


def _mlp_checkpoint(path: Path) -> Path:
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 1))
    torch.save(m.state_dict(), path)
    return path


def test_script_and_ppml_torch_give_the_same_file(tmp_path):
    """One subprocess each (imports cost a few seconds): same output bytes, same message."""
    ckpt = _mlp_checkpoint(tmp_path / "mlp.pt")
    args = ["--mlp", "4,3,1", "--activation", "tanh", "--checkpoint", str(ckpt), "--out"]
    run = [
        subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        for cmd in (
            [sys.executable, "converters/torch_to_flax.py", *args, str(tmp_path / "a.safetensors")],
            [sys.executable, "-m", "ppml_torch", "to-flax", *args, str(tmp_path / "b.safetensors")],
        )
    ]
    for r in run:
        assert r.returncode == 0, r.stderr[-2000:]
    assert run[0].stdout.replace("a.safetensors", "b.safetensors") == run[1].stdout
    assert "ConvertedModel(route='flax', source='Sequential', parameters=19) -> " in run[0].stdout
    a, b = (tmp_path / "a.safetensors").read_bytes(), (tmp_path / "b.safetensors").read_bytes()
    assert a == b
    _, spec = files.load_flax(tmp_path / "a.safetensors")
    assert spec["activation"] == "tanh"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--mlp", "4,3,1", "--checkpoint", "{t}/nope.pt"], "no such file"),
        (["--mlp", "4,3,1", "--checkpoint", "{t}/cut.pt"], "cannot be read"),
        (["--nanogpt-config", "{{bad", "--checkpoint", "{t}/mlp.pt"], "not valid JSON"),
        (["--module", "no_such_pkg_xyz:make"], "cannot import"),
        (["--mlp", "4,3,1", "--checkpoint", "{t}/mlp.pt", "--out", "{t}/no/o.msgpack"], "folder"),
        (["--mlp", "4,3,1", "--checkpoint", "{t}/mlp.pt", "--out", "{t}/o.txt"], "use one of"),
    ],
    ids=["missing", "truncated", "bad-json", "unknown-module", "no-folder", "suffix"],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, args, message):
    _mlp_checkpoint(tmp_path / "mlp.pt")
    data = (tmp_path / "mlp.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    argv = [a.format(t=tmp_path) for a in args]
    if "--out" not in argv:
        argv += ["--out", str(tmp_path / "o.msgpack")]
    assert main(["to-flax", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ppml-torch to-flax: ") and message in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "o.msgpack").exists()
