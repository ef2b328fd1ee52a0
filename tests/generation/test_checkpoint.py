"""ppml_torch/generation/checkpoint.py and generate's input checks: offline GPT-2 tokenizer, local
checkpoints, and one-line errors before anything is shared."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from ppml_torch.errors import PpmlError
from ppml_torch.generation import (
    GenerationError,
    check_tokenizer,
    generate,
    gpt2_tokenizer,
    load_candidates,
    load_checkpoint,
    torch_greedy,
)
from ppml_torch.generation.checkpoint import bpe_files
from tests.sessions import get_session

pytestmark = pytest.mark.filterwarnings("ignore:.*LeafSpec.*:FutureWarning")

DEMO = "I enjoy walking with my cute dog"
DEMO_IDS = [40, 2883, 6155, 351, 616, 13779, 3290]  # GPT-2's own ids


@pytest.fixture(scope="module")
def tiny() -> GPT2LMHeadModel:
    torch.manual_seed(0)
    cfg = GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=300, n_positions=16)
    return GPT2LMHeadModel(cfg).eval()


def test_gpt2_tokenizer_is_gpt2s_own_offline():
    from transformers import GPT2Tokenizer

    vocab, merges = bpe_files()
    tok = GPT2Tokenizer(vocab_file=vocab, merges_file=merges)
    assert tok.encode(DEMO) == DEMO_IDS
    ours = gpt2_tokenizer()
    assert len(ours) == 50257
    assert ours.encode(DEMO) == DEMO_IDS
    assert ours.decode(DEMO_IDS) == DEMO


def test_from_pretrained_local_checkpoint_generates_like_torch(tiny, tmp_path):
    tiny.save_pretrained(tmp_path)
    model = load_checkpoint(tmp_path)
    assert isinstance(model, GPT2LMHeadModel) and not model.training
    for k, v in tiny.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k
    prompt = np.array([[3, 14, 15, 92]])
    with torch.no_grad():
        want = tiny.generate(
            torch.as_tensor(prompt), max_new_tokens=3, do_sample=False, pad_token_id=0
        )[:, 4:].numpy()
    g = generate(model, prompt, 3, session=get_session("cpu"), route="flax")
    np.testing.assert_array_equal(g.ids, want)
    np.testing.assert_array_equal(torch_greedy(model, prompt, 3)[0], want)


def test_checkpoint_tokenizer_files_are_preferred(tiny, tmp_path):
    tiny.save_pretrained(tmp_path)
    gpt2_tokenizer().save_pretrained(tmp_path)  # writes vocab.json + merges.txt
    assert gpt2_tokenizer(tmp_path).encode(DEMO) == DEMO_IDS


@pytest.mark.parametrize(
    "setup, message",
    [
        (lambda d: d / "missing", "does not exist"),
        (lambda d: d, "has no config.json"),
        (
            lambda d: (d / "config.json").write_text(json.dumps({"model_type": "bert"})) and d,
            "is not a GPT-2",
        ),
        (
            lambda d: (d / "config.json").write_text(json.dumps({"model_type": "gpt2"})) and d,
            "has no weights",
        ),
    ],
    ids=["missing", "no-config", "not-gpt2", "no-weights"],
)
def test_bad_checkpoint_directories(tmp_path, setup, message):
    with pytest.raises(GenerationError, match=message) as e:
        load_checkpoint(setup(tmp_path))
    assert "\n" not in str(e.value) and isinstance(e.value, PpmlError)


def test_tokenizer_model_vocabulary_mismatch(tiny):
    with pytest.raises(GenerationError, match="50257 tokens but the model's vocabulary has 300"):
        check_tokenizer(gpt2_tokenizer(), tiny.config.vocab_size)
    check_tokenizer(gpt2_tokenizer(), 50257)


@pytest.mark.parametrize(
    "prompt, new, kwargs, message",
    [
        ([], 3, {}, "prompt is empty"),
        (np.zeros((1, 0), np.int32), 3, {}, "prompt is empty"),
        ([1, 2, 300], 3, {}, "token id 300 is outside the model's vocabulary 0..299"),
        ([1, -1], 3, {}, "token id -1 is outside"),
        ([1.0, 2.0], 3, {}, "integer token ids"),
        ([1, 2], 0, {}, "max_new_tokens must be a positive integer"),
        ([1] * 10, 8, {}, "needs 17 positions; the model's position table has 16"),
        ([1] * 4, 4, {"max_len": 6}, "needs 7 cache slots; max_len is 6"),
        ([1, 2], 2, {"route": "onnx"}, "route 'onnx' is unknown"),
        ([1, 2], 2, {"session": "torch"}, "has no MPC session"),
        ([1, 2], 2, {"session": "spu:NOPE"}, "unknown protocol"),
    ],
)
def test_bad_input_is_one_line_before_any_put(tiny, prompt, new, kwargs, message):
    s = get_session("cpu")
    before = len(s.reports)
    kwargs.setdefault("session", s)
    with pytest.raises(PpmlError, match=message) as e:
        generate(tiny, prompt, new, **kwargs)
    assert "\n" not in str(e.value)
    assert len(s.reports) == before  # nothing was put or run


def test_not_a_gpt2_is_refused():
    with pytest.raises(GenerationError, match="is not a GPT-2"):
        generate(torch.nn.Linear(2, 2), [1], 1, session=get_session("cpu"))


def test_ppml_torch_generate_is_the_function(tiny):
    import ppml_torch

    g = ppml_torch.generate(tiny, [1, 2], 2, session=get_session("cpu"), route="flax")
    assert g.ids.shape == (1, 2)
    assert ppml_torch.generate is generate


def test_decoder_refuses_a_prompt_of_another_shape_before_any_put(tiny):
    from ppml_torch.generation import Decoder

    s = get_session("cpu")
    dec = Decoder(tiny, s, prompt_len=3, max_new_tokens=2, route="flax")
    before = len(s.reports)
    with pytest.raises(GenerationError, match=r"built for prompts of shape \(1, 3\), got \(1, 4\)"):
        dec.generate([[1, 2, 3, 4]])
    assert len(s.reports) == before


def test_train_example_writes_a_checkpoint_generate_loads(tmp_path, capsys):
    """examples/train_tiny_gpt2.py (2 steps, tiny): its directory loads with its tokenizer."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "examples" / "train_tiny_gpt2.py"
    spec = importlib.util.spec_from_file_location("train_tiny_gpt2", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    argv = ["--out", str(tmp_path), "--layers", "1", "--width", "16", "--heads", "2"]
    assert mod.main([*argv, "--context", "8", "--batch", "2", "--steps", "2"]) == 0
    assert "2 steps in" in capsys.readouterr().out
    model, tok = load_checkpoint(tmp_path), gpt2_tokenizer(tmp_path)
    check_tokenizer(tok, model.config.vocab_size)
    prompt = [tok.encode("The class")]
    g = generate(model, prompt, 2, session=get_session("cpu"), route="flax")
    np.testing.assert_array_equal(g.ids, torch_greedy(model, prompt, 2)[0])


def test_load_candidates_reads_candidates_json_or_gives_none(tmp_path):
    assert load_candidates(tmp_path) is None  # no file: the whole vocabulary
    (tmp_path / "candidates.json").write_text(json.dumps({"token_ids": [3, 17, 290]}))
    got = load_candidates(tmp_path)
    assert got.dtype == np.int32 and got.tolist() == [3, 17, 290]
    (tmp_path / "candidates.json").write_text(json.dumps({"ids": [1]}))
    with pytest.raises(GenerationError, match="not a list of token ids under 'token_ids'"):
        load_candidates(tmp_path)


def test_checkpoint_architecture_only_needs_no_weight_file(tiny, tmp_path):
    """``weights=False`` (a process that does not own the weights): config.json only."""
    torch.manual_seed(1)  # load_checkpoint(weights=False) seeds 0, as the fixture did
    saved = GPT2LMHeadModel(tiny.config).eval()
    saved.save_pretrained(tmp_path)
    for f in tmp_path.iterdir():
        if f.name != "config.json":
            f.unlink()
    with pytest.raises(GenerationError, match="has no weights"):
        load_checkpoint(tmp_path)
    torch.manual_seed(7)
    want_next = torch.rand(3)
    torch.manual_seed(7)
    model = load_checkpoint(tmp_path, weights=False)
    assert torch.equal(torch.rand(3), want_next)  # the caller's RNG state is left as it was
    got = {k: (v.shape, v.dtype) for k, v in model.state_dict().items()}
    assert got == {k: (v.shape, v.dtype) for k, v in saved.state_dict().items()}
    assert not torch.equal(model.transformer.wte.weight, saved.transformer.wte.weight)


class _Payload:
    """Pickled code that would write a marker file if a loader ran it."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("damage", ["truncated", "garbage", "flipped bytes", "pickle"])
def test_damaged_weight_file_is_one_line(tiny, tmp_path, damage):
    """A truncated, garbage, flipped-byte or pickled-code weight file: one GenerationError line
    (was a 27- to 58-line traceback from safetensors or torch), and the pickled code never
    runs."""
    import pickle

    tiny.save_pretrained(tmp_path)
    weights = tmp_path / "model.safetensors"
    raw = weights.read_bytes()
    if damage == "truncated":
        weights.write_bytes(raw[: len(raw) // 2])
    elif damage == "garbage":
        weights.write_bytes(np.random.default_rng(0).bytes(len(raw)))
    elif damage == "flipped bytes":
        b = bytearray(raw)
        b[10] ^= 0xFF
        weights.write_bytes(bytes(b))
    else:
        weights.unlink()
        marker = tmp_path / "pwned"
        with open(tmp_path / "pytorch_model.bin", "wb") as f:
            pickle.dump({"x": _Payload(str(marker))}, f)
    with pytest.raises(GenerationError, match="its weights cannot be read") as e:
        load_checkpoint(tmp_path)
    assert "\n" not in str(e.value)
    if damage == "pickle":
        assert "pickled objects other than tensors, which are not run" in str(e.value)
        assert not marker.exists()
