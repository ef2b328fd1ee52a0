"""``ppml-torch export-stablehlo`` and ``converters/torch_to_stablehlo.py`` as a user runs them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ppml_torch.cli import main

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "converters" / "torch_to_stablehlo.py"

TINY_MLP = """
import torch

def make(hidden=15):
    return torch.nn.Sequential(
        torch.nn.Linear(30, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 1)
    )
"""


@pytest.fixture
def tiny_pkg(tmp_path, monkeypatch):
    (tmp_path / "tiny_models.py").write_text(TINY_MLP)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    sys.modules.pop("tiny_models", None)


def test_script_and_command_write_the_same_files(tiny_pkg):
    """One subprocess each: the script and `python -m ppml_torch`, on the same model."""
    args = ["--module", "tiny_models:make", "--kwargs", '{"hidden": 7}', "--input", "float32[4,30]"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # this checkout's ppml_torch for `-m`
    runs = {
        "script": [sys.executable, str(SCRIPT), *args, "--out-dir", "a", "--name", "mlp"],
        "command": [sys.executable, "-m", "ppml_torch", "export-stablehlo", *args]
        + ["--out-dir", "b", "--name", "mlp", "--spu-check"],
    }
    for what, cmd in runs.items():
        done = subprocess.run(cmd, cwd=tiny_pkg, env=env, capture_output=True, text=True)
        assert done.returncode == 0, f"{what}: {done.stderr}"
        assert "Sequential: 5 inputs (4 weights)" in done.stdout
    assert "SPU accepted the StableHLO" in done.stdout
    for ext in (".mlir", ".safetensors", ".json"):
        a, b = (tiny_pkg / d / f"mlp{ext}" for d in "ab")
        assert a.read_bytes() == b.read_bytes(), f"mlp{ext} differs"


@pytest.mark.parametrize(
    "args,message",
    [
        (["--module", "tiny_models:nope"], "tiny_models has no attribute 'nope'"),
        (["--module", "nowhere.models:make"], "cannot import 'nowhere'"),
        (["--module", "tiny_models:make", "--kwargs", "{bad"], "are not valid JSON"),
        (["--module", "tiny_models:make", "--checkpoint", "none.pt"], "none.pt: no such file"),
        (["--module", "tiny_models:make", "--checkpoint", "empty.pt"], "the file is empty"),
        (["--module", "tiny_models:make", "--name", "../x"], "would leave the output folder"),
        (["--module", "tiny_models:make", "--name", "a/b"], "would leave the output folder"),
        (["--module", "tiny_models:make", "--out-dir", "afile/o"], "cannot write into output"),
        (["--hf-dir", "nodir"], "nodir: no such folder"),
        (["--hf-dir", ".", "--kwargs", "{}"], "go with --module"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tiny_pkg, capsys, args, message):
    (tiny_pkg / "empty.pt").write_bytes(b"")
    (tiny_pkg / "afile").write_text("")
    argv = ["export-stablehlo", *args, "--input", "float32[4,30]"]
    if "--out-dir" not in args:
        argv += ["--out-dir", "out"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ppml-torch export-stablehlo: ") and message in err, err
    assert "\n" not in err


def test_bad_input_spec_is_one_line(capsys):
    argv = ["export-stablehlo", "--module", "x:y", "--input", "float32(4,30)", "--out-dir", "o"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "bad input spec 'float32(4,30)'" in err and "\n" not in err
