"""A torch model to .mlir + .safetensors + manifest (the library behind export-stablehlo).

The exported files are run on SPU as a user would (``run_exported``) and compared with torch.
The command line itself is tested in tests/cli/test_export_stablehlo.py.
"""

from __future__ import annotations

import importlib
import json
import sys

import numpy as np
import pytest

from ppml_torch.converters.torch_to_stablehlo import (
    InputSpec,
    export_torch,
    load_factory_module,
    load_hf_causal_lm,
    parse_input_spec,
    parse_kwargs,
)
from ppml_torch.errors import InputFileError
from ppml_torch.runners.spu import run_exported
from ppml_torch.stablehlo import ExportError
from ppml_torch.testing import Tolerance, assert_close
from tests.sessions import get_session

# the tiny GPT-2's logits go through tanh, exp, division and rsqrt: 9.6e-4 measured (SEMI2K/FM64)
APPROX = Tolerance(atol=5e-3, rtol=0.0)

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


def test_input_specs():
    assert parse_input_spec("input_ids=int64[1, 8]") == InputSpec("input_ids", "int64", (1, 8))
    assert parse_input_spec("float32[]") == InputSpec(None, "float32", ())
    for bad, match in [
        ("float32(4,30)", "write dtype\\[shape\\]"),
        ("floaty[4]", "unknown dtype 'floaty'"),
        ("float32[4,,3]", "empty dimension"),
        ("1x=float32[4]", "write dtype"),
    ]:
        with pytest.raises(ExportError, match=match) as e:
            parse_input_spec(bad)
        assert "\n" not in str(e.value)


def test_kwargs_and_module_paths(tiny_pkg):
    assert parse_kwargs('{"hidden": 7}') == {"hidden": 7}
    with pytest.raises(ExportError, match="not valid JSON"):
        parse_kwargs("{hidden: 7}")
    with pytest.raises(ExportError, match="must be a JSON object"):
        parse_kwargs("[7]")
    with pytest.raises(ExportError, match="cannot import 'no_such_pkg'"):
        load_factory_module("no_such_pkg.models:make")
    with pytest.raises(ExportError, match="has no attribute 'nope'"):
        load_factory_module("tiny_models:nope")
    with pytest.raises(ExportError, match="write package.module:factory_or_class"):
        load_factory_module("tiny_models")
    with pytest.raises(ExportError, match="fix --kwargs"):
        load_factory_module("tiny_models:make", {"width": 3})


def test_factory_to_files_that_run_on_spu(tiny_pkg):
    import torch

    module, source = load_factory_module("tiny_models:make", {"hidden": 7}, seed=0)
    out_dir = tiny_pkg / "out"
    result = export_torch(module, [parse_input_spec("float32[4,30]")], out_dir, name="mlp")
    assert result.mlir_path == out_dir / "mlp.mlir" and result.n_weights == 4
    text = result.mlir_path.read_text()
    assert "stablehlo.dot_general" in text and "chlo." not in text
    manifest = json.loads(result.manifest_path.read_text())
    assert [i["name"] for i in manifest["inputs"]] == [
        "params['0.bias']", "params['0.weight']", "params['2.bias']", "params['2.weight']", "args[0]",
    ]  # fmt: skip
    assert manifest["inputs"][1]["shape"] == [7, 30]
    assert manifest["outputs"] == [{"name": "out", "shape": [4, 1], "dtype": "float32"}]

    torch.manual_seed(0)  # load_factory_module built it with seed 0
    net = importlib.import_module("tiny_models").make(hidden=7).eval()
    x = np.random.default_rng(0).normal(size=(4, 30)).astype(np.float32)
    want = net(torch.from_numpy(x)).detach().numpy()
    s = get_session("spu", "SEMI2K", "FM64")
    got = run_exported(
        s, result.mlir_path, {"args[0]": x}, weights_owner="alice", inputs_owner="bob"
    )
    assert_close(got["out"], want, protocol="SEMI2K", field="FM64", what="exported MLP")


def test_checkpoint_is_loaded(tiny_pkg):
    import torch

    net = importlib.import_module("tiny_models").make()
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(3.0)
    torch.save(net.state_dict(), tiny_pkg / "w.pt")
    module, source = load_factory_module("tiny_models:make", checkpoint=tiny_pkg / "w.pt")
    assert source == f"Sequential from {tiny_pkg / 'w.pt'}"
    result = export_torch(module, [parse_input_spec("float32[4,30]")], tiny_pkg / "out")
    from safetensors.numpy import load_file

    saved = load_file(str(result.weights_path))
    assert result.weights_path.name == "Sequential.safetensors"
    assert sorted(saved) == sorted(net.state_dict())
    for k, v in net.state_dict().items():
        np.testing.assert_array_equal(saved[k], v.numpy())


def test_bad_checkpoints(tiny_pkg):
    import torch

    (tiny_pkg / "empty.pt").write_bytes(b"")
    torch.save(importlib.import_module("tiny_models").make().state_dict(), tiny_pkg / "w.pt")
    data = (tiny_pkg / "w.pt").read_bytes()
    (tiny_pkg / "cut.pt").write_bytes(data[: len(data) // 2])
    torch.save(
        importlib.import_module("tiny_models").make(hidden=4).state_dict(), tiny_pkg / "o.pt"
    )
    for name, match in [
        ("missing.pt", "no such file"),
        ("empty.pt", "the file is empty"),
        ("cut.pt", "not a readable torch checkpoint"),
        ("o.pt", "does not fit Sequential"),
    ]:
        with pytest.raises(InputFileError, match=match) as e:
            load_factory_module("tiny_models:make", checkpoint=tiny_pkg / name)
        assert "\n" not in str(e.value)


def test_hf_gpt2_directory(tmp_path):
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    cfg = GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=64, n_positions=16)
    torch.manual_seed(0)
    net = GPT2LMHeadModel(cfg).eval()
    net.save_pretrained(tmp_path / "tiny-gpt2")
    module, source = load_hf_causal_lm(tmp_path / "tiny-gpt2")
    spec = parse_input_spec("input_ids=int64[1,6]")
    result = export_torch(module, [spec], tmp_path / "out", name="gpt2", source=source)
    manifest = json.loads(result.manifest_path.read_text())
    assert manifest["inputs"][-1] == {
        "name": "kwargs['input_ids']",
        "shape": [1, 6],
        "dtype": "int32",
    }
    assert manifest["outputs"] == [
        {"name": "out['logits']", "shape": [1, 6, 64], "dtype": "float32"}
    ]

    ids = np.array([[5, 17, 3, 60, 0, 9]], dtype=np.int32)
    with torch.no_grad():
        want = net(torch.from_numpy(ids).long()).logits.numpy()
    s = get_session("spu", "SEMI2K", "FM64")
    got = run_exported(
        s, result.mlir_path, {"kwargs['input_ids']": ids}, weights_owner="alice", inputs_owner="bob"
    )
    assert_close(got["out['logits']"], want, tol=APPROX, what="exported GPT-2 logits")


def test_bad_hf_directories(tmp_path):
    with pytest.raises(InputFileError, match="no such folder"):
        load_hf_causal_lm(tmp_path / "nope")
    with pytest.raises(InputFileError, match="no config.json"):
        load_hf_causal_lm(tmp_path)
    (tmp_path / "config.json").write_text('{"model_type": "gpt2", ')
    with pytest.raises(InputFileError, match="cannot load a causal LM") as e:
        load_hf_causal_lm(tmp_path)
    assert "\n" not in str(e.value)


def test_output_folder_and_name_checked_before_converting(tiny_pkg, monkeypatch):
    import ppml_torch.converters.fx as fx

    monkeypatch.setattr(fx, "convert", lambda *a, **k: pytest.fail("converted before checks"))
    module, _ = load_factory_module("tiny_models:make")
    spec = [parse_input_spec("float32[4,30]")]
    (tiny_pkg / "a_file").write_text("")
    with pytest.raises(InputFileError, match="cannot write into output folder"):
        export_torch(module, spec, tiny_pkg / "a_file" / "out")
    for name in ("../x", "a/b"):
        with pytest.raises(ExportError, match="plain file stem"):
            export_torch(module, spec, tiny_pkg / "out", name=name)
    assert not (tiny_pkg / "x.mlir").exists()
