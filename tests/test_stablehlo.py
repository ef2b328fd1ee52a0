"""StableHLO text out of JAX functions and converted models, and the export files (no SPU run)."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest

from ppml_torch.errors import InputFileError
from ppml_torch.model import ConvertedModel
from ppml_torch.models.mlp import MLP
from ppml_torch.stablehlo import (
    ExportError,
    check_stem,
    describe_leaves,
    read_export,
    to_stablehlo,
    write_export,
)


@pytest.fixture(scope="module")
def mlp():
    model = MLP(features=(15, 8, 1), activation="relu")
    x = np.random.default_rng(0).normal(size=(16, 30)).astype(np.float32)
    params = model.init(jax.random.PRNGKey(0), x)
    return model, params, x


def test_mlp_forward_text_is_stablehlo(mlp):
    model, params, x = mlp
    text = to_stablehlo(model.apply, params, x)
    assert text.startswith("module @")
    assert "stablehlo.dot_general" in text
    assert "stablehlo.maximum" in text  # relu
    assert "chlo." not in text and "mhlo.erf" not in text
    # every array is an input, params first (Dense_0 bias, kernel, ...), then x
    n_inputs = len(jax.tree_util.tree_leaves(params)) + 1
    assert text.count("%arg") >= n_inputs and f"%arg{n_inputs - 1}: tensor<16x30xf32>" in text


def test_converted_model_passes_params_first(mlp):
    model, params, x = mlp
    cm = ConvertedModel(params, model.apply, lambda p: {}, route="flax", source="MLP")
    assert to_stablehlo(cm, x) == to_stablehlo(model.apply, params, x)


def test_chlo_is_legalized():
    x = np.linspace(-2, 2, 12, dtype=np.float32).reshape(3, 4)

    def gelu(x):
        return jax.nn.gelu(x, approximate=False)

    assert "chlo.erf" in to_stablehlo(gelu, x, legalize=False)
    legal = to_stablehlo(gelu, x)
    assert "chlo." not in legal and "@mhlo.erf" in legal


def test_unused_inputs_are_kept():
    text = to_stablehlo(lambda a, b: a * 2.0, np.ones(2, np.float32), np.ones(3, np.float32))
    assert "%arg1: tensor<3xf32>" in text


@pytest.mark.parametrize("name", ["../x", "a/b", "", ".", "..", ".hidden", "a\\b"])
def test_output_names_stay_in_the_folder(name):
    with pytest.raises(ExportError, match="plain file stem") as e:
        check_stem(name)
    assert "\n" not in str(e.value)


@pytest.fixture
def written(tmp_path):
    w = {"fc.weight": np.ones((2, 3), np.float32), "fc.bias": np.zeros(2, np.float32)}
    params = {"fc.bias": w["fc.bias"], "fc.weight": w["fc.weight"]}
    x = jax.ShapeDtypeStruct((4, 3), np.float32)
    inputs = describe_leaves(params, "params") + describe_leaves((x,), "args")
    text = to_stablehlo(lambda p, x: x @ p["fc.weight"].T + p["fc.bias"], params, x)
    out = describe_leaves(jax.ShapeDtypeStruct((4, 2), np.float32), "out")
    paths = write_export(tmp_path / "out", "fc", text, w, inputs, out, "test")
    return paths


def test_export_files_round_trip(written):
    mlir, weights, manifest = written
    export = read_export(mlir)
    assert [e["name"] for e in export.inputs] == [
        "params['fc.bias']",
        "params['fc.weight']",
        "args[0]",
    ]
    assert export.outputs == [{"name": "out", "shape": [4, 2], "dtype": "float32"}]
    np.testing.assert_array_equal(export.weight_of("params['fc.weight']"), np.ones((2, 3)))
    assert export.weight_of("args[0]") is None
    assert read_export(manifest).text == mlir.read_text()


def _one_line_error(path, match):
    with pytest.raises(InputFileError, match=match) as e:
        read_export(path)
    assert "\n" not in str(e.value)


def test_missing_empty_truncated_files(written):
    mlir, weights, manifest = written
    _one_line_error(mlir.with_name("nope.mlir"), "nope.json: no such file")
    manifest.write_text(manifest.read_text()[:40])
    _one_line_error(mlir, "not valid JSON.*re-export")
    manifest.write_text("")
    _one_line_error(mlir, "the file is empty")
    manifest.write_text(json.dumps({"mlir": "fc.mlir"}))
    _one_line_error(mlir, "no 'weights' entry")


def test_bad_mlir_or_weights(written):
    mlir, weights, manifest = written
    good = mlir.read_text()
    mlir.write_text(good[:30])
    _one_line_error(mlir, "no main function")
    mlir.write_text(good)
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    _one_line_error(mlir, "not a readable safetensors file")
    weights.unlink()
    _one_line_error(mlir, "fc.safetensors: no such file")


def test_weights_of_another_export_are_refused(written, tmp_path):
    mlir, weights, manifest = written
    from safetensors.numpy import save_file

    save_file(
        {"fc.weight": np.ones((5, 3), np.float32), "fc.bias": np.zeros(5, np.float32)}, str(weights)
    )
    _one_line_error(mlir, r"has shape \[5\], the manifest says \[2\]")
    save_file({"other": np.ones(2, np.float32)}, str(weights))
    _one_line_error(mlir, "no weight for manifest input")


def test_unwritable_output_folder(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputFileError, match="cannot write into output folder"):
        write_export(tmp_path / "file" / "sub", "fc", "", {}, [], [], "test")
