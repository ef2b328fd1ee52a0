"""converters/torch_to_flax.py and converters/flax_to_torch.py (and converters/flax/files.py)."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from flax_cases import assert_state_dicts_equal, homework_mlp, tiny_hf_gpt2, tiny_nanogpt

from ppml_torch.converters.flax import WeightMapError, files, to_flax

ROOT = Path(__file__).resolve().parents[3]


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "converters" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


torch_to_flax, flax_to_torch = _script("torch_to_flax"), _script("flax_to_torch")


@pytest.mark.parametrize("fmt", ["safetensors", "msgpack"])
def test_mlp_checkpoint_round_trip(tmp_path, fmt):
    m = homework_mlp()
    torch.save(m.state_dict(), tmp_path / "mlp.pt")
    out = tmp_path / f"mlp.{fmt}"
    assert (
        torch_to_flax.main(
            ["--mlp", "30,15,8,1", "--checkpoint", str(tmp_path / "mlp.pt"), "--out", str(out)]
        )
        == 0
    )

    variables, spec = files.load_flax(out)
    assert spec == {
        "family": "mlp",
        "widths": [30, 15, 8, 1],
        "activation": "relu",
        "final_activation": None,
    }
    np.testing.assert_array_equal(
        variables["params"]["Dense_0"]["kernel"], m[0].weight.detach().numpy().T
    )

    back = tmp_path / "back.safetensors"
    assert flax_to_torch.main(["--params", str(out), "--out", str(back)]) == 0
    assert_state_dicts_equal(files.load_torch_state_dict(back), m.state_dict())


def test_hf_dir_round_trip_and_save_pretrained(tmp_path):
    hf = tiny_hf_gpt2()
    hf.save_pretrained(tmp_path / "hf")
    torch_to_flax.main(["--hf-dir", str(tmp_path / "hf"), "--out", str(tmp_path / "gpt2.msgpack")])
    variables, spec = files.load_flax(tmp_path / "gpt2.msgpack")
    assert spec["family"] == "hf_gpt2" and spec["config"]["n_head"] == 2
    assert variables["params"]["transformer"]["h"]["0"]["attn"]["c_attn"]["kernel"].shape == (
        96,
        32,
    )

    flax_to_torch.main(
        ["--params", str(tmp_path / "gpt2.msgpack"), "--hf-out", str(tmp_path / "back")]
    )
    from transformers import GPT2LMHeadModel

    back = GPT2LMHeadModel.from_pretrained(tmp_path / "back", local_files_only=True)
    assert_state_dicts_equal(back.state_dict(), hf.state_dict())


def test_hf_dir_as_nanogpt(tmp_path):
    hf = tiny_hf_gpt2()
    hf.save_pretrained(tmp_path / "hf")
    out = tmp_path / "nano.safetensors"
    torch_to_flax.main(["--hf-dir", str(tmp_path / "hf"), "--as-nanogpt", "--out", str(out)])
    variables, spec = files.load_flax(out)
    assert spec["family"] == "nanogpt" and spec["config"]["n_layer"] == 2
    wte = variables["params"]["transformer"]["wte"]["embedding"]
    np.testing.assert_array_equal(wte, hf.transformer.wte.weight.detach().numpy())


def test_nanogpt_config_and_checkpoint(tmp_path):
    gpt = tiny_nanogpt()
    files.save_torch_state_dict(tmp_path / "gpt.safetensors", gpt.state_dict())  # tied: copies
    cfg = json.dumps(dataclasses.asdict(gpt.config))
    torch_to_flax.main(
        [
            "--nanogpt-config",
            cfg,
            "--checkpoint",
            str(tmp_path / "gpt.safetensors"),
            "--out",
            str(tmp_path / "p.safetensors"),
        ]
    )
    back = tmp_path / "b.pt"
    flax_to_torch.main(["--params", str(tmp_path / "p.safetensors"), "--out", str(back)])
    assert_state_dicts_equal(files.load_torch_state_dict(back), gpt.state_dict())


def test_into_own_module_and_other_heads_rejected(tmp_path):
    out = tmp_path / "p.safetensors"
    files.save_flax(out, to_flax(tiny_nanogpt()).params, to_flax(tiny_nanogpt()).extras["spec"])
    factory = tmp_path / "my_models.py"
    factory.write_text(
        "from ppml_torch.models.nanogpt import GPT, GPTConfig\n"
        "def make(**kw):\n    return GPT(GPTConfig(**kw))\n"
    )
    kw = json.dumps(dict(block_size=32, vocab_size=100, n_layer=2, n_head=4, n_embd=32))
    sys.path.insert(0, str(tmp_path))
    try:
        good = json.dumps(dict(block_size=32, vocab_size=100, n_layer=2, n_head=2, n_embd=32))
        flax_to_torch.main(
            [
                "--params",
                str(out),
                "--out",
                str(tmp_path / "ok.pt"),
                "--module",
                "my_models:make",
                "--kwargs",
                good,
            ]
        )
        assert_state_dicts_equal(
            files.load_torch_state_dict(tmp_path / "ok.pt"), tiny_nanogpt().state_dict()
        )
        with pytest.raises(WeightMapError, match=r"config\.n_head: 2 vs 4"):
            flax_to_torch.main(
                [
                    "--params",
                    str(out),
                    "--out",
                    str(tmp_path / "b.pt"),
                    "--module",
                    "my_models:make",
                    "--kwargs",
                    kw,
                ]
            )
        assert not (tmp_path / "b.pt").exists()
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("my_models", None)


def test_wrong_checkpoint_for_spec_names_keys(tmp_path):
    torch.save(homework_mlp().state_dict(), tmp_path / "mlp.pt")
    with pytest.raises(WeightMapError, match=r"0\.weight: \(16, 30\) vs \(15, 30\)"):
        torch_to_flax.main(
            [
                "--mlp",
                "30,16,8,1",
                "--checkpoint",
                str(tmp_path / "mlp.pt"),
                "--out",
                str(tmp_path / "x.msgpack"),
            ]
        )


def test_bad_suffix_and_foreign_file(tmp_path):
    with pytest.raises(ValueError, match=r"use one of \.safetensors, \.msgpack"):
        files.save_flax(tmp_path / "x.npz", {"params": {}}, {})
    from safetensors.numpy import save_file

    save_file({"a": np.zeros(2, np.float32)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(ValueError, match="no ppml_torch.spec metadata"):
        files.load_flax(tmp_path / "other.safetensors")


def test_scripts_run_as_programs(tmp_path):
    """`python converters/torch_to_flax.py` from a checkout (one process: imports cost ~8 s)."""
    torch.save(homework_mlp().state_dict(), tmp_path / "mlp.pt")
    run = lambda *a: subprocess.run([sys.executable, *a], cwd=ROOT, capture_output=True, text=True)  # noqa: E731
    r = run(
        "converters/torch_to_flax.py",
        "--mlp",
        "30,15,8,1",
        "--checkpoint",
        str(tmp_path / "mlp.pt"),
        "--out",
        str(tmp_path / "p.safetensors"),
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert "-> " + str(tmp_path / "p.safetensors") in r.stdout
    assert (
        flax_to_torch.main(
            ["--params", str(tmp_path / "p.safetensors"), "--out", str(tmp_path / "b.pt")]
        )
        == 0
    )
    assert_state_dicts_equal(
        files.load_torch_state_dict(tmp_path / "b.pt"), homework_mlp().state_dict()
    )
