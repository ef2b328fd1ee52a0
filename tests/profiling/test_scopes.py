"""Which row, direction and kind of work an equation of a traced program belongs to."""

from __future__ import annotations

import pytest

from ppml_torch.profiling.scopes import MODEL, OUTSIDE, PART, place, unwrap


@pytest.mark.parametrize(
    ("scope", "primitive", "row", "kind", "backward"),
    [
        # graph route: "<path>: <class>" then the ATen op
        (f"{MODEL}/h.0.attn: Attention/op:aten._softmax.default", "exp", "h.0.attn", "softmax", False),
        (f"{MODEL}/h.0.mlp.act: GELU/op:aten.gelu.default", "tanh", "h.0.mlp.act", "GeLU", False),
        (f"{MODEL}/ln: LayerNorm/op:aten.native_layer_norm.default", "rsqrt", "ln", "LayerNorm", False),
        (f"{MODEL}/fc: Linear/op:aten.addmm.default", "dot_general", "fc", "matmul", False),
        (f"{MODEL}/fc: Linear/op:aten.addmm.default", "add", "fc", "matmul", False),
        (f"{MODEL}/0: ReLU/op:aten.relu.default", "max", "0", "comparisons", False),
        (f"{MODEL}/wte: Embedding/op:aten.embedding.default", "gather", "wte", "embedding", False),
        (f"{MODEL}/h.0: Block/op:aten.add.Tensor", "add", "h.0", "other", False),
        (f"{MODEL}/GPT/op:aten.add.Tensor", "add", "", "other", False),  # the root's own work
        # differentiation wraps the scopes
        (f"transpose(jvp({MODEL}))/transpose(jvp(fc: Linear))/op:aten.mm.default", "dot_general",
         "fc", "matmul", True),
        (f"jvp({MODEL})/jvp(fc: Linear)/op:aten.mm.default", "dot_general", "fc", "matmul", False),
        # Flax route: module names under the root's class name; the class from tracing
        (f"{MODEL}/GPT/transformer/h_0/ln_1", "rsqrt", "transformer.h_0.ln_1", "LayerNorm", False),
        (f"{MODEL}/GPT/transformer/h_0/attn", "reduce_max", "transformer.h_0.attn", "comparisons", False),
        (f"{MODEL}/GPT/transformer/h_0/attn", "exp", "transformer.h_0.attn", "nonlinear", False),
        (f"{MODEL}/GPT/transformer.lm_head/wte.attend", "dot_general", "transformer.wte", "matmul", False),
        # outside the model
        (f"{PART}argmax", "max", "(argmax)", "argmax", False),
        (f"{PART}loss", "mul", "(loss)", "other", False),
        ("", "mul", OUTSIDE, "other", False),
    ],
)  # fmt: skip
def test_place(scope, primitive, row, kind, backward):
    kinds = {"transformer.h_0.ln_1": "LayerNorm", "transformer.h_0.attn": "CausalSelfAttention"}
    p = place(scope, primitive, kinds, "GPT")
    assert (p.row, p.kind, p.backward) == (row, kind, backward)
    assert (p.path is None) == row.startswith("(")


def test_unwrap():
    assert unwrap("transpose(jvp(fc1: Linear))") == ("fc1: Linear", True)
    assert unwrap("jvp(fc1: Linear)") == ("fc1: Linear", False)
    assert unwrap("fc1: Linear") == ("fc1: Linear", False)
