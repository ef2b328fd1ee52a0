"""Bad and edge inputs, one row each: what the user does, the error class, a message fragment.

Every row is something a new user may pass in; each must give a one-line error naming what is
wrong (and the fix), never a wrong number.  Later issues add their rows to ``CASES``.  Rows
that need an MPC runtime use the shared in-process SPU sessions (cheap: nothing is compiled
before the error).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn as nn

import ppml_torch
from ppml_torch.converters.fx import convert
from ppml_torch.converters.fx.errors import ConversionError
from ppml_torch.errors import InputError, PpmlError
from ppml_torch.runners import ConfigError, HandleError, open_session, wrap
from ppml_torch.runners.config import fixed_point_range
from ppml_torch.runners.runspec import parse_runs
from tests.sessions import get_session


@dataclasses.dataclass(frozen=True)
class Case:
    id: str
    run: Callable[[], Any]  # does the bad thing
    error: type[BaseException]
    fragment: str  # must appear in the message


def _spu(field: str = "FM64"):
    return get_session("spu", "SEMI2K", field)


def _put(value: Any, owner: str = "alice", field: str = "FM64") -> Callable[[], Any]:
    return lambda: _spu(field).put(value, owner=owner)


def _put_cpu(value: Any, owner: str = "alice") -> Callable[[], Any]:
    return lambda: get_session("cpu").put(value, owner=owner)


# --- models ------------------------------------------------------------------------------------
class Classifier(nn.Module):
    """Token ids -> embedding -> linear -> log-probability of the label (ids AND labels index)."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(12, 4)
        self.head = nn.Linear(4, 3)

    def forward(self, ids: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        logp = torch.log_softmax(self.head(self.emb(ids).mean(1)), -1)
        return torch.gather(logp, 1, labels.view(-1, 1))


IDS = np.array([[0, 5, 11], [3, 3, 7]], np.int32)
LABELS = np.array([2, 0], np.int32)


@functools.cache
def _classifier():
    torch.manual_seed(0)
    return convert(Classifier(), (torch.as_tensor(IDS).long(), torch.as_tensor(LABELS).long()))


@functools.cache
def _linear():
    torch.manual_seed(0)
    return convert(nn.Linear(3, 2), (torch.randn(4, 3),))


def _with(params: dict, key: str, value: Any) -> dict:
    out = dict(params)
    out[key] = value
    return out


def _without(params: dict, key: str) -> dict:
    return {k: v for k, v in params.items() if k != key}


class IfOnData(nn.Module):
    def forward(self, x):
        if x.sum() > 0:
            return x
        return -x


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(4, 4), IfOnData())

    def forward(self, x):
        return self.body(x) * 2


class MaskSelect(nn.Module):
    def forward(self, x):
        return x[x > 0].sum()


class UsesMaskSelect(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.inner = MaskSelect()

    def forward(self, x):
        return self.inner(x) + 1


class Complex(nn.Module):
    def forward(self, x):
        c = torch.complex(x, x)
        return (c * c).real


class UsesCond(nn.Module):
    def forward(self, x):
        return torch.cond(x.sum() > 0, lambda x: x, lambda x: -x, (x,))


def _cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU()).eval()


@functools.cache
def _cnn_converted():
    return convert(_cnn(), (torch.randn(1, 3, 8, 8),))


@functools.cache
def _cnn_folded():
    return convert(_cnn(), (torch.randn(1, 3, 8, 8),), fold_batch_norm=True)


class _Strided(nn.Module):
    def forward(self, x):
        return torch.as_strided(x.t(), (2, 2), (1, 2))


def _wrap_apply(cm, *args):
    return lambda: wrap(_spu(), cm.apply, owners=("alice",) + ("bob",) * len(args))(
        cm.params, *args
    )


def _freed_handle(action: str) -> Callable[[], Any]:
    def run():
        s = get_session("cpu")
        h = s.put(np.ones(2, np.float32), owner="alice")
        s.free(h)
        if action == "free":
            s.free(h)
        elif action == "reveal":
            s.reveal(h)
        else:
            s.call(lambda x: x, h)

    return run


def _foreign_handle(action: str) -> Callable[[], Any]:
    def run():
        other = _spu()
        h = other.put(np.ones(2, np.float32), owner="alice")
        try:
            s = get_session("cpu")
            if action == "free":
                s.free(h)
            elif action == "reveal":
                s.reveal(h)
            else:
                s.call(lambda x: x, h)
        finally:
            other.free(h)

    return run


F32 = np.float32


def _load_vertical(block: Any) -> Any:
    from ppml_torch.train import vertical
    from ppml_torch.train.data import load

    return load(vertical({"alice": (range(2), block)}, weights_owner="alice"), ("alice", "bob"),
                need_labels=False)  # fmt: skip


def _generate_placeholder_prompt() -> Any:
    from ppml_torch.generation import generate
    from ppml_torch.models.nanogpt import GPT, GPTConfig

    gpt = GPT(GPTConfig(block_size=8, vocab_size=20, n_layer=1, n_head=1, n_embd=8))
    return generate(gpt, jax.ShapeDtypeStruct((1, 3), np.int32), 2, session="cpu")


CASES = [
    # -- owner-side checks in put (issue 10, item 1) -------------------------------------------
    Case("put-nan", _put(np.array([1, np.nan], F32)), InputError, "put(owner=alice): value: 1 NaN"),
    Case("put-inf-public", _put(np.array([np.inf], F32), "public"), InputError, "owner=public"),
    Case(
        "put-nan-names-leaf",
        _put({"layer": {"w": np.array([[0, np.nan]], F32)}}),
        InputError,
        "value['layer']['w']: 1 NaN/inf value(s), first nan at index (0, 1)",
    ),
    Case("put-nan-cpu-too", _put_cpu(np.array([np.nan], F32)), InputError, "NaN/inf"),
    Case("put-nan-torch", _put(torch.tensor([0.0, float("-inf")])), InputError, "first -inf"),
    Case(
        "put-beyond-fm64",
        _put(np.array([1e14], F32)),
        InputError,
        "beyond FM64 with 18 fraction bits (|x| < 1.759e+13); it fits FM64 with 14 fraction bits "
        "(|x| < 2.815e+14, resolution 6.1e-05) or FM128 with 26 fraction bits",
    ),
    Case(  # the suggestion keeps to settings open_session accepts (it crashed with a
        # ConfigError about fxp_fraction_bits=1 before)
        "put-beyond-fm64-by-far",
        _put(np.array([2.0**56], F32)),
        InputError,
        "is beyond FM64 with 18 fraction bits (|x| < 1.759e+13); it fits FM128 with 26 fraction",
    ),
    Case(
        "put-beyond-fm128",
        _put(np.array([-1e31], F32), field="FM128"),
        InputError,
        "beyond FM128 with 26 fraction bits (|x| < 1.268e+30); it fits FM128 with 22 fraction bits",
    ),
    Case(
        "put-int64-beyond-int32",
        _put(np.array([2**40 + 5], np.int64)),
        InputError,
        "int64 value 1099511627781 is outside int32's range",
    ),
    Case(
        "put-uint64-beyond-uint32",
        _put(np.array([2**63], np.uint64)),
        InputError,
        "uint64 value 9223372036854775808 is outside uint32's range",
    ),
    Case("put-float64-to-inf", _put(np.array([1e300])), InputError, "becomes inf as float32"),
    Case("put-float64-to-0", _put(np.array([1e-300])), InputError, "becomes 0 as float32"),
    Case("put-complex", _put(np.array([1j])), InputError, "complex array cannot be an input"),
    Case("put-strings", _put(np.array(["a"])), InputError, "non-numeric"),
    Case("put-empty", _put({}), InputError, "no arrays"),
    # -- sessions and handles (item 4) --------------------------------------------------------
    Case("free-twice", _freed_handle("free"), HandleError, "was already freed"),
    Case("reveal-freed", _freed_handle("reveal"), HandleError, "reveal: handle #"),
    Case("call-freed", _freed_handle("call"), HandleError, "argument 0: handle #"),
    Case("free-foreign", _foreign_handle("free"), HandleError, "belongs to session"),
    Case("reveal-foreign", _foreign_handle("reveal"), HandleError, "belongs to session"),
    Case("call-foreign", _foreign_handle("call"), HandleError, "belongs to session"),
    Case(
        "call-not-a-handle",
        lambda: get_session("cpu").call(lambda x: x, np.ones(2)),
        TypeError,
        "not a Handle; put it in first",
    ),
    Case(
        "wrap-reveal-to-unknown",
        lambda: wrap(_spu(), lambda x: x, owners=("alice",), reveal_to="dave"),
        ConfigError,
        "reveal_to='dave' is not a party",
    ),
    Case(
        "wrap-owner-unknown",
        lambda: wrap(_spu(), lambda x: x, owners=("dave",)),
        ConfigError,
        "owner 'dave' of input 0 is not a party",
    ),
    Case(
        "wrap-owner-count",
        lambda: wrap(_spu(), lambda a, b: a, owners=("alice",))(np.ones(1), np.ones(1)),
        ConfigError,
        "2 positional inputs but 1 owners",
    ),
    # -- index inputs (item 3) -----------------------------------------------------------------
    Case(
        "ids-beyond-table",
        lambda: _classifier()(np.array([[0, 5, 12], [3, 3, 7]], np.int32), LABELS),
        InputError,
        "input 'ids' (ids used by aten.embedding.default at emb: Embedding): id 12 is outside "
        "the table of 12 entries",
    ),
    Case(
        "ids-negative",
        lambda: _classifier().check_inputs(np.array([[0, -1, 2], [3, 3, 7]]), LABELS),
        InputError,
        "id -1 is outside the table of 12 entries",
    ),
    Case(
        "ids-float",
        lambda: _classifier().check_inputs(IDS.astype(F32), LABELS),
        InputError,
        "ids are float32, they must be integers",
    ),
    Case(
        "labels-beyond-classes",
        lambda: _classifier()(IDS, np.array([2, 3], np.int32)),
        InputError,
        "input 'labels' (ids used by aten.gather.default at Classifier): id 3 is outside the "
        "table of 3 entries",
    ),
    Case(
        "ids-beyond-table-under-mpc",
        _wrap_apply(_classifier(), np.array([[0, 5, 99], [3, 3, 7]], np.int32), LABELS),
        InputError,
        "id 99 is outside the table of 12 entries",
    ),
    Case(
        "ids-torch-long-beyond-table",
        lambda: _classifier()(torch.tensor([[0, 5, 40], [3, 3, 7]]), torch.tensor([2, 0])),
        InputError,
        "id 40 is outside",
    ),
    # -- converted models check params and inputs (item 5) ------------------------------------
    Case(
        "param-wrong-shape",
        lambda: _linear().apply(
            _with(_linear().params, "weight", jnp.zeros((2, 4))), np.ones((4, 3), F32)
        ),
        InputError,
        "param ['weight'] is float32[2, 4], the converted model has float32[2, 3]",
    ),
    Case(
        "param-int",
        lambda: _linear().apply(
            _with(_linear().params, "weight", jnp.zeros((2, 3), jnp.int32)), np.ones((4, 3), F32)
        ),
        InputError,
        "param ['weight'] is int32[2, 3]",
    ),
    Case(
        "param-missing",
        lambda: _linear().apply(_without(_linear().params, "bias"), np.ones((4, 3), F32)),
        InputError,
        "missing ['bias'], extra none",
    ),
    Case(
        "param-wrong-shape-under-jit",
        lambda: jax.jit(_linear().apply)(
            _with(_linear().params, "bias", jnp.zeros(3)), np.ones((4, 3), F32)
        ),
        InputError,
        "param ['bias'] is float32[3]",
    ),
    Case(
        "param-wrong-shape-under-mpc",
        lambda: wrap(_spu(), _linear().apply, owners=("alice", "bob"))(
            _with(_linear().params, "bias", np.zeros(3, F32)), np.ones((4, 3), F32)
        ),
        InputError,
        "param ['bias'] is float32[3]",
    ),
    Case(
        "input-wrong-shape",
        lambda: _linear()(np.ones((5, 3), F32)),
        InputError,
        "input 'input' has shape (5, 3), the model was converted for (4, 3)",
    ),
    Case(
        "input-wrong-dtype",
        lambda: _linear()(np.ones((4, 3), np.int32)),
        InputError,
        "input 'input' is int32, the model was converted with float32",
    ),
    Case(
        "input-wrong-shape-under-grad",
        lambda: jax.grad(lambda x: _linear()(x).sum())(jnp.ones((4, 2))),
        InputError,
        "has shape (4, 2)",
    ),
    # -- export errors name the op and module path, and advise only what works ---------------
    Case(
        "export-if-on-data",
        lambda: convert(Block(), (torch.randn(3, 4),)),
        ConversionError,
        "failing in body.1: IfOnData",
    ),
    Case(
        "export-no-torch-cond-advice",
        lambda: convert(IfOnData(), (torch.randn(3, 4),)),
        ConversionError,
        "torch.where(cond, a, b) or a mask",
    ),
    Case(
        "export-torch-cond",
        lambda: convert(UsesCond(), (torch.randn(3, 4),)),
        ConversionError,
        "the converter has no lowering for torch.cond",
    ),
    Case(
        "export-mask-select",
        lambda: convert(UsesMaskSelect(), (torch.randn(3, 4),)),
        ConversionError,
        "(used by inner: MaskSelect) gives a shape that depends on the data",
    ),
    Case(
        "export-complex-op",
        lambda: convert(Complex(), (torch.randn(3, 4),)),
        ConversionError,
        "aten.complex.default (used by Complex) has dtype complex64",
    ),
    Case(
        "export-complex-input",
        lambda: convert(nn.Linear(4, 3), (torch.randn(2, 4, dtype=torch.complex64),)),
        ConversionError,
        "input 'input' of Linear has dtype complex64",
    ),
    # -- configuration and earlier issues --------------------------------------------------------
    Case("backend", lambda: open_session("gpu"), ConfigError, "unknown backend 'gpu'"),
    Case("protocol", lambda: open_session("spu", "SPDZ"), ConfigError, "unknown protocol 'SPDZ'"),
    Case("field", lambda: open_session("spu", "ABY3", "FM32"), ConfigError, "unknown field"),
    Case(
        "parties",
        lambda: open_session("spu", "ABY3", parties=["a", "b"]),
        ConfigError,
        "protocol ABY3 needs exactly 3 parties",
    ),
    Case(
        "runtime-knob",
        lambda: open_session("spu", runtime={"fxp_bits": 3}),
        ConfigError,
        "unknown SPU runtime setting(s) ['fxp_bits']",
    ),
    Case(
        "fraction-bits-range",
        lambda: fixed_point_range("FM64", 40),
        ConfigError,
        "fxp_fraction_bits=40 does not fit FM64",
    ),
    Case("run-spec", lambda: parse_runs(["spu:ABY9"], "FM64"), ConfigError, "ABY9"),
    Case(
        "index-lowering",
        lambda: convert(nn.Linear(2, 2), (torch.ones(1, 2),), index_lowering="onehot"),
        ValueError,
        "index_lowering='onehot'",
    ),
    Case(
        "convert-not-a-module",
        lambda: convert(lambda x: x, (torch.ones(1),)),
        TypeError,
        "expected a torch.nn.Module",
    ),
    Case(
        "convert-args-not-tuple",
        lambda: convert(nn.Linear(2, 2), torch.ones(1, 2)),
        TypeError,
        "example_args must be a tuple",
    ),
    Case(
        "data-owner-gives-placeholder",
        lambda: _load_vertical(jax.ShapeDtypeStruct((4, 2), np.float32)),
        PpmlError,
        "alice's block is a shape-only placeholder in alice's own process",
    ),
    Case(
        "data-loader-fails",
        lambda: _load_vertical(lambda: open("/nonexistent/alice.npy")),  # noqa: SIM115
        PpmlError,
        "alice's loader failed: FileNotFoundError",
    ),
    Case(
        "generate-placeholder-prompt-in-one-process",
        lambda: _generate_placeholder_prompt(),
        PpmlError,
        "prompt_ids is a shape-only placeholder",
    ),
    Case(
        "to-flax-unknown-family",
        lambda: ppml_torch.to_flax(nn.Sequential(nn.Bilinear(2, 2, 2))),
        PpmlError,
        "no Flax weight map for Sequential",
    ),
    # -- convolutional networks (issue 20): refused before any MPC work ---------------------------
    Case(
        "cnn-channels",
        lambda: convert(_cnn(), (torch.randn(1, 4, 8, 8),)),
        ConversionError,
        "do not fit Sequential, failing in 0: Conv2d: Given groups=1, weight of size [8, 3, 3, 3], "
        "expected input[1, 4, 8, 8] to have 3 channels",
    ),
    Case(
        "cnn-kernel-larger-than-padded-input",
        lambda: convert(_cnn(), (torch.randn(1, 3, 2, 2),)),
        ConversionError,
        "failing in 0: Conv2d: Calculated padded input size per channel: (2 x 2). Kernel size: "
        "(3 x 3)",
    ),
    Case(
        "cnn-pool-larger-than-input",
        lambda: convert(nn.Sequential(nn.MaxPool2d(4)), (torch.randn(1, 3, 3, 3),)),
        ConversionError,
        "failing in 0: MaxPool2d: Given input size: (3x3x3). Calculated output size: (3x0x0)",
    ),
    Case(
        "cnn-integer-images",
        lambda: convert(_cnn(), (torch.randint(0, 255, (1, 3, 8, 8)),)),
        ConversionError,
        "images and other real-valued inputs must be float: pass x.float()",
    ),
    Case(
        "cnn-uint8-images",
        lambda: convert(_cnn(), (torch.randint(0, 255, (1, 3, 8, 8), dtype=torch.uint8),)),
        ConversionError,
        "uint8[1, 3, 8, 8]) do not fit Sequential",
    ),
    Case(
        "cnn-apply-other-image-size",
        lambda: _cnn_converted().apply(_cnn_converted().params, np.zeros((1, 3, 10, 10), F32)),
        InputError,
        "input 'input' has shape (1, 3, 10, 10), the model was converted for (1, 3, 8, 8)",
    ),
    Case(
        "cnn-apply-other-channels-under-mpc",
        lambda: _wrap_apply(_cnn_converted(), np.zeros((1, 4, 8, 8), F32))(),
        InputError,
        "has shape (1, 4, 8, 8)",
    ),
    Case(
        "cnn-batch-norm-training-mode",
        lambda: convert(
            nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)), (torch.randn(2, 3, 6, 6),)
        ),
        ConversionError,
        "for batch norm in training mode convert with buffer_updates='return'",
    ),
    Case(
        "cnn-folded-model-with-module-weights",
        lambda: _cnn_folded().apply(_cnn_converted().params, np.zeros((1, 3, 8, 8), F32)),
        InputError,
        "params keys differ from the converted ones",
    ),
    Case(
        "cnn-fractional-max-pool",
        lambda: convert(nn.FractionalMaxPool2d(2, output_size=2), (torch.randn(1, 2, 5, 5),)),
        ConversionError,
        "fractional max pooling places its windows at random",
    ),
    Case(
        "cnn-as-strided-non-contiguous",
        lambda: convert(_Strided(), (torch.randn(3, 4),)),
        ConversionError,
        "as_strided on a non-contiguous tensor",
    ),
    Case(
        "to-flax-grouped-conv",
        lambda: ppml_torch.to_flax(nn.Sequential(nn.Conv2d(4, 4, 3, groups=2))),
        PpmlError,
        "0 (Conv2d): groups, padding_mode and string padding are not mapped",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_gives_one_line_error(case: Case) -> None:
    with pytest.raises(case.error) as info:
        case.run()
    message = str(info.value)
    assert case.fragment in message, message
    assert "\n" not in message.strip(), f"not one line: {message!r}"


def test_case_ids_are_unique() -> None:
    assert len({c.id for c in CASES}) == len(CASES)
