"""ppml_torch/converters/flax/jobs.py: the to-flax / from-flax jobs, called as a library.

The scripts and ``python -m ppml_torch`` are run as a user would in tests/cli/test_to_flax.py
and tests/cli/test_from_flax.py.
"""

from __future__ import annotations

import dataclasses
import json
import sys

import numpy as np
import pytest
import torch
from flax_cases import assert_state_dicts_equal, homework_mlp, tiny_hf_gpt2, tiny_nanogpt

from ppml_torch.converters.flax import WeightMapError, files, to_flax
from ppml_torch.converters.flax.jobs import flax_file_to_torch, torch_to_flax_file
from ppml_torch.errors import InputFileError, PpmlError


@pytest.mark.parametrize("fmt", ["safetensors", "msgpack"])
def test_mlp_checkpoint_round_trip(tmp_path, fmt):
    m = homework_mlp()
    torch.save(m.state_dict(), tmp_path / "mlp.pt")
    out = tmp_path / f"mlp.{fmt}"
    cm = torch_to_flax_file(out, mlp="30,15,8,1", checkpoint=tmp_path / "mlp.pt")
    assert cm.extras["spec"]["family"] == "mlp"

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
    result = flax_file_to_torch(out, out=back)
    assert result.path == back and result.n_tensors == 6
    assert_state_dicts_equal(files.load_torch_state_dict(back), m.state_dict())


def test_mlp_activations_reach_the_spec(tmp_path):
    m = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Tanh(), torch.nn.Linear(3, 1))
    m.append(torch.nn.Sigmoid())
    torch.save(m.state_dict(), tmp_path / "m.pt")
    cm = torch_to_flax_file(
        tmp_path / "m.msgpack",
        mlp="4,3,1",
        activation="tanh",
        final_activation="sigmoid",
        checkpoint=tmp_path / "m.pt",
    )
    assert cm.extras["spec"]["activation"] == "tanh"
    assert cm.extras["spec"]["final_activation"] == "sigmoid"
    x = torch.randn(5, 4)
    with torch.no_grad():
        np.testing.assert_allclose(np.asarray(cm(x.numpy())), m(x).numpy(), atol=1e-6)


def test_hf_dir_round_trip_and_save_pretrained(tmp_path):
    hf = tiny_hf_gpt2()
    hf.save_pretrained(tmp_path / "hf")
    torch_to_flax_file(tmp_path / "gpt2.msgpack", hf_dir=tmp_path / "hf")
    variables, spec = files.load_flax(tmp_path / "gpt2.msgpack")
    assert spec["family"] == "hf_gpt2" and spec["config"]["n_head"] == 2
    kernel = variables["params"]["transformer"]["h"]["0"]["attn"]["c_attn"]["kernel"]
    assert kernel.shape == (96, 32)

    flax_file_to_torch(tmp_path / "gpt2.msgpack", hf_out=tmp_path / "back")
    from transformers import GPT2LMHeadModel

    back = GPT2LMHeadModel.from_pretrained(tmp_path / "back", local_files_only=True)
    assert_state_dicts_equal(back.state_dict(), hf.state_dict())


def test_hf_dir_as_nanogpt(tmp_path):
    hf = tiny_hf_gpt2()
    hf.save_pretrained(tmp_path / "hf")
    out = tmp_path / "nano.safetensors"
    torch_to_flax_file(out, hf_dir=tmp_path / "hf", as_nanogpt=True)
    variables, spec = files.load_flax(out)
    assert spec["family"] == "nanogpt" and spec["config"]["n_layer"] == 2
    wte = variables["params"]["transformer"]["wte"]["embedding"]
    np.testing.assert_array_equal(wte, hf.transformer.wte.weight.detach().numpy())


def test_nanogpt_config_and_checkpoint(tmp_path):
    gpt = tiny_nanogpt()
    files.save_torch_state_dict(tmp_path / "gpt.safetensors", gpt.state_dict())  # tied: copies
    (tmp_path / "cfg.json").write_text(json.dumps(dataclasses.asdict(gpt.config)))
    torch_to_flax_file(
        tmp_path / "p.safetensors",
        nanogpt_config=str(tmp_path / "cfg.json"),
        checkpoint=tmp_path / "gpt.safetensors",
    )
    back = tmp_path / "b.pt"
    flax_file_to_torch(tmp_path / "p.safetensors", out=back)
    assert_state_dicts_equal(files.load_torch_state_dict(back), gpt.state_dict())


@pytest.fixture
def my_models(tmp_path, monkeypatch):
    """A user's module file ``my_models.py`` in the current folder."""
    (tmp_path / "my_models.py").write_text(
        "from ppml_torch.models.nanogpt import GPT, GPTConfig\n"
        "def make(**kw):\n    return GPT(GPTConfig(**kw))\n"
        "def not_a_module():\n    return 3\n"
    )
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    sys.modules.pop("my_models", None)
    if str(tmp_path) in sys.path:
        sys.path.remove(str(tmp_path))


def test_into_own_module_and_other_heads_rejected(my_models):
    out = my_models / "p.safetensors"
    cm = to_flax(tiny_nanogpt())
    files.save_flax(out, cm.params, cm.extras["spec"])
    good = json.dumps(dict(block_size=32, vocab_size=100, n_layer=2, n_head=2, n_embd=32))
    flax_file_to_torch(out, out=my_models / "ok.pt", module="my_models:make", kwargs=good)
    assert_state_dicts_equal(
        files.load_torch_state_dict(my_models / "ok.pt"), tiny_nanogpt().state_dict()
    )
    heads4 = json.dumps(dict(block_size=32, vocab_size=100, n_layer=2, n_head=4, n_embd=32))
    with pytest.raises(WeightMapError, match=r"config\.n_head: 2 vs 4"):
        flax_file_to_torch(out, out=my_models / "b.pt", module="my_models:make", kwargs=heads4)
    assert not (my_models / "b.pt").exists()


def test_own_module_from_to_flax(my_models):
    kw = json.dumps(dict(block_size=32, vocab_size=100, n_layer=2, n_head=2, n_embd=32))
    cm = torch_to_flax_file(my_models / "p.msgpack", module="my_models:make", kwargs=kw)
    assert cm.extras["spec"]["family"] == "nanogpt"


def test_wrong_checkpoint_for_spec_names_keys(tmp_path):
    torch.save(homework_mlp().state_dict(), tmp_path / "mlp.pt")
    with pytest.raises(WeightMapError, match=r"0\.weight: \(16, 30\) vs \(15, 30\)"):
        torch_to_flax_file(tmp_path / "x.msgpack", mlp="30,16,8,1", checkpoint=tmp_path / "mlp.pt")
    assert not (tmp_path / "x.msgpack").exists()


def _truncate(path, keep=0.5):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


@pytest.fixture(scope="module")
def good_files(tmp_path_factory):
    """A torch checkpoint, Flax params in both formats, an HF folder; shared by the table."""
    d = tmp_path_factory.mktemp("good")
    m = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 1))
    torch.save(m.state_dict(), d / "mlp.pt")
    files.save_torch_state_dict(d / "mlp.safetensors", m.state_dict())
    torch_to_flax_file(d / "p.safetensors", mlp="4,3,1", checkpoint=d / "mlp.pt")
    torch_to_flax_file(d / "p.msgpack", mlp="4,3,1", checkpoint=d / "mlp.pt")
    tiny_hf_gpt2(n_layer=1).save_pretrained(d / "hf")
    return d


def _copy(src, dst):
    dst.write_bytes(src.read_bytes())
    return dst


class _Evil:
    def __reduce__(self):
        return (print, ("pickled code ran",))


# (id, how to make the bad input in tmp dir t from good files g, job kwargs, message part)
TO_FLAX_CASES = [
    ("missing-checkpoint", None, dict(mlp="4,3,1", checkpoint="{t}/nope.pt"), "no such file"),
    (
        "empty-checkpoint",
        lambda t, g: (t / "e.pt").write_bytes(b""),
        dict(mlp="4,3,1", checkpoint="{t}/e.pt"),
        "the file is empty",
    ),
    (
        "truncated-pt",
        lambda t, g: _truncate(_copy(g / "mlp.pt", t / "c.pt")),
        dict(mlp="4,3,1", checkpoint="{t}/c.pt"),
        "cannot be read",
    ),
    (
        "truncated-safetensors",
        lambda t, g: _truncate(_copy(g / "mlp.safetensors", t / "c.safetensors")),
        dict(mlp="4,3,1", checkpoint="{t}/c.safetensors"),
        "cannot be read",
    ),
    (
        "pickled-code",
        lambda t, g: torch.save({"w": _Evil()}, t / "evil.pt"),
        dict(mlp="4,3,1", checkpoint="{t}/evil.pt"),
        "pickled objects other than tensors",
    ),
    (
        "not-a-state-dict",
        lambda t, g: torch.save([torch.zeros(2)], t / "list.pt"),
        dict(mlp="4,3,1", checkpoint="{t}/list.pt"),
        "holds a list, not a state_dict",
    ),
    (
        "checkpoint-suffix",
        lambda t, g: (t / "c.npz").write_bytes(b"x"),
        dict(mlp="4,3,1", checkpoint="{t}/c.npz"),
        "use one of .safetensors, .pt",
    ),
    ("bad-widths", None, dict(mlp="4,x,1", checkpoint="{g}/mlp.pt"), "positive integers"),
    (
        "unknown-activation",
        None,
        dict(mlp="4,3,1", activation="swish", checkpoint="{g}/mlp.pt"),
        "unknown activation 'swish'",
    ),
    (
        "activation-without-mlp",
        None,
        dict(hf_dir="{g}/hf", activation="relu"),
        "goes only with --mlp",
    ),
    ("no-checkpoint", None, dict(mlp="4,3,1"), "--checkpoint is needed"),
    ("two-sources", None, dict(mlp="4,3,1", hf_dir="{g}/hf"), "exactly one model source"),
    (
        "bad-json",
        None,
        dict(nanogpt_config="{{n_layer: 2}}", checkpoint="{g}/mlp.pt"),
        "not valid JSON",
    ),
    (
        "json-not-object",
        None,
        dict(nanogpt_config="[1, 2]", checkpoint="{g}/mlp.pt"),
        "must be a JSON object",
    ),
    (
        "missing-json-file",
        None,
        dict(nanogpt_config="{t}/cfg.json", checkpoint="{g}/mlp.pt"),
        "no such file",
    ),
    (
        "unknown-config-field",
        None,
        dict(nanogpt_config='{{"n_layers": 2}}', checkpoint="{g}/mlp.pt"),
        "unknown GPTConfig fields ['n_layers']",
    ),
    ("missing-hf-dir", None, dict(hf_dir="{t}/nope"), "no such folder"),
    (
        "hf-dir-without-config",
        lambda t, g: (t / "hf").mkdir(),
        dict(hf_dir="{t}/hf"),
        "no config.json",
    ),
    (
        "hf-dir-not-gpt2",
        lambda t, g: (
            (t / "hf").mkdir() or (t / "hf/config.json").write_text('{"model_type": "t5"}')
        ),
        dict(hf_dir="{t}/hf"),
        "model_type 't5'",
    ),
    (
        "hf-dir-truncated-weights",
        lambda t, g: (
            (t / "hf").mkdir(),
            _copy(g / "hf/config.json", t / "hf/config.json"),
            _truncate(_copy(g / "hf/model.safetensors", t / "hf/model.safetensors")),
        ),
        dict(hf_dir="{t}/hf"),
        "cannot be read",
    ),
    (
        "checkpoint-with-hf-dir",
        None,
        dict(hf_dir="{g}/hf", checkpoint="{g}/mlp.pt"),
        "in the folder",
    ),
    ("module-no-colon", None, dict(module="torch.nn.Linear"), "write package.module:factory"),
    (
        "module-unknown",
        None,
        dict(module="no_such_pkg_xyz:make"),
        "cannot import 'no_such_pkg_xyz'",
    ),
    ("module-no-attr", None, dict(module="torch.nn:Linearr"), "has no attribute 'Linearr'"),
    (
        "module-bad-kwargs",
        None,
        dict(module="torch.nn:Linear", kwargs='{{"in": 3}}'),
        "raised TypeError",
    ),
    ("module-not-a-module", None, dict(module="collections:OrderedDict"), "not a torch"),
    ("out-suffix", None, dict(mlp="4,3,1", checkpoint="{g}/mlp.pt", out="{t}/o.npz"), "use one of"),
    (
        "out-folder-missing",
        None,
        dict(mlp="4,3,1", checkpoint="{g}/mlp.pt", out="{t}/no/o.msgpack"),
        "is not an existing folder",
    ),
    (
        "out-under-a-file",
        lambda t, g: (t / "f").write_text("x"),
        dict(mlp="4,3,1", checkpoint="{g}/mlp.pt", out="{t}/f/o.msgpack"),
        "is not an existing folder",
    ),
    (
        "out-is-a-folder",
        lambda t, g: (t / "d.msgpack").mkdir(),
        dict(mlp="4,3,1", checkpoint="{g}/mlp.pt", out="{t}/d.msgpack"),
        "is a folder",
    ),
    (
        "out-over-the-hf-weights",
        lambda t, g: (
            _copy(g / "hf/model.safetensors", t / "model.safetensors")
            and _copy(g / "hf/config.json", t / "config.json")
        ),
        dict(hf_dir="{t}", out="{t}/model.safetensors"),
        "is also an input",
    ),
    (
        "out-over-its-input",
        lambda t, g: _copy(g / "mlp.safetensors", t / "m.safetensors"),
        dict(mlp="4,3,1", checkpoint="{t}/m.safetensors", out="{t}/m.safetensors"),
        "is also an input",
    ),
]


def _fill(kwargs, t, g):
    return {k: v.format(t=t, g=g) if isinstance(v, str) else v for k, v in kwargs.items()}


@pytest.mark.parametrize(
    "make, kwargs, message", [c[1:] for c in TO_FLAX_CASES], ids=[c[0] for c in TO_FLAX_CASES]
)
def test_to_flax_bad_input_is_one_line(tmp_path, good_files, make, kwargs, message, capsys):
    if make:
        make(tmp_path, good_files)
    kwargs = _fill(kwargs, tmp_path, good_files)
    out = kwargs.pop("out", str(tmp_path / "out.msgpack"))
    with pytest.raises(PpmlError) as e:
        torch_to_flax_file(out, **kwargs)
    assert message in str(e.value)
    assert "\n" not in str(e.value)
    assert "pickled code ran" not in capsys.readouterr().out
    assert not any(p.name.startswith("out") for p in tmp_path.iterdir())


def _spec_file(t, spec_text, fmt="safetensors"):
    from safetensors.numpy import save_file

    save_file(
        {"params/Dense_0/kernel": np.zeros((4, 1), np.float32)},
        str(t / "p.safetensors"),
        metadata={files.SPEC_KEY: spec_text},
    )


FROM_FLAX_CASES = [
    ("missing-params", None, dict(params="{t}/nope.msgpack", out="{t}/o.pt"), "no such file"),
    (
        "empty-params",
        lambda t, g: (t / "p.msgpack").write_bytes(b""),
        dict(params="{t}/p.msgpack", out="{t}/o.pt"),
        "the file is empty",
    ),
    (
        "truncated-msgpack",
        lambda t, g: _truncate(_copy(g / "p.msgpack", t / "p.msgpack")),
        dict(params="{t}/p.msgpack", out="{t}/o.pt"),
        "cannot be read",
    ),
    (
        "truncated-safetensors",
        lambda t, g: _truncate(_copy(g / "p.safetensors", t / "p.safetensors")),
        dict(params="{t}/p.safetensors", out="{t}/o.pt"),
        "cannot be read",
    ),
    (
        "foreign-safetensors",
        lambda t, g: _copy(g / "mlp.safetensors", t / "p.safetensors"),
        dict(params="{t}/p.safetensors", out="{t}/o.pt"),
        "no ppml_torch.spec metadata",
    ),
    (
        "spec-bad-json",
        lambda t, g: _spec_file(t, "{family: mlp"),
        dict(params="{t}/p.safetensors", out="{t}/o.pt"),
        "cannot be read (JSONDecodeError",
    ),
    (
        "spec-unknown-family",
        lambda t, g: _spec_file(t, '{"family": "vgg"}'),
        dict(params="{t}/p.safetensors", out="{t}/o.pt"),
        "unknown Flax model family 'vgg'",
    ),
    (
        "spec-bad-config",
        lambda t, g: _spec_file(t, '{"family": "nanogpt", "config": {"n_layerz": 1}}'),
        dict(params="{t}/p.safetensors", out="{t}/o.pt"),
        "does not describe a model",
    ),
    (
        "spec-bad-widths",
        lambda t, g: _spec_file(t, '{"family": "mlp", "widths": [4]}'),
        dict(params="{t}/p.safetensors", out="{t}/o.pt"),
        "widths must be at least two",
    ),
    (
        "params-suffix",
        None,
        dict(params="{g}/mlp.pt", out="{t}/o.pt"),
        "use one of .safetensors, .msgpack",
    ),
    ("out-suffix", None, dict(params="{g}/p.msgpack", out="{t}/o.npz"), "use one of"),
    (
        "out-folder-missing",
        None,
        dict(params="{g}/p.msgpack", out="{t}/no/o.pt"),
        "is not an existing folder",
    ),
    (
        "out-over-params",
        lambda t, g: _copy(g / "p.safetensors", t / "p.safetensors"),
        dict(params="{t}/p.safetensors", out="{t}/p.safetensors"),
        "is also an input",
    ),
    ("no-output", None, dict(params="{g}/p.msgpack"), "exactly one of --out"),
    (
        "hf-out-for-an-mlp",
        None,
        dict(params="{g}/p.msgpack", hf_out="{t}/hf"),
        "these params are a 'mlp' model",
    ),
    (
        "hf-out-is-a-file",
        lambda t, g: (t / "f").write_text("x"),
        dict(params="{g}/p.msgpack", hf_out="{t}/f"),
        "is a file",
    ),
    (
        "kwargs-without-module",
        None,
        dict(params="{g}/p.msgpack", out="{t}/o.pt", kwargs="{{}}"),
        "--kwargs",
    ),
    (
        "module-of-other-family",
        None,
        dict(
            params="{g}/p.msgpack",
            out="{t}/o.pt",
            module="torch.nn:Conv1d",
            kwargs='{{"in_channels": 1, "out_channels": 1, "kernel_size": 1}}',
        ),
        "no Flax weight map for Conv1d",
    ),
]


@pytest.mark.parametrize(
    "make, kwargs, message", [c[1:] for c in FROM_FLAX_CASES], ids=[c[0] for c in FROM_FLAX_CASES]
)
def test_from_flax_bad_input_is_one_line(tmp_path, good_files, make, kwargs, message):
    if make:
        make(tmp_path, good_files)
    kwargs = _fill(kwargs, tmp_path, good_files)
    with pytest.raises(PpmlError) as e:
        flax_file_to_torch(kwargs.pop("params"), **kwargs)
    assert message in str(e.value)
    assert "\n" not in str(e.value)
    assert not (tmp_path / "o.pt").exists() and not (tmp_path / "hf").exists()


def test_file_errors_are_input_file_errors(tmp_path):
    with pytest.raises(InputFileError):
        files.load_flax(tmp_path / "nope.msgpack")
