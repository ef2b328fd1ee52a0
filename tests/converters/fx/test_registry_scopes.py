"""The name-stack entry of each lowered ATen op (what ``ppml_torch.profile`` files work by)."""

from __future__ import annotations

import jax
import numpy as np
import torch

import ppml_torch
from ppml_torch.converters.fx.registry import OP_SCOPE, op_scope


def test_every_equation_names_its_module_and_aten_op():
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU()).eval()
    cm = ppml_torch.convert(module, (torch.ones(2, 4),))
    closed = jax.make_jaxpr(cm.apply)(cm.params, np.ones((2, 4), np.float32))
    stacks = {str(e.source_info.name_stack) for e in closed.jaxpr.eqns}
    assert "0: Linear/op:aten.addmm.default" in stacks
    assert "1: ReLU/op:aten.relu.default" in stacks
    assert op_scope(torch.ops.aten.addmm.default) == OP_SCOPE + "aten.addmm.default"
    assert ": " not in op_scope(torch.ops.aten.addmm.default)  # never read as a module


def test_attention_marks_its_softmax():
    q = torch.ones(1, 2, 3, 4)

    class Attn(torch.nn.Module):
        def forward(self, q):
            return torch.nn.functional.scaled_dot_product_attention(q, q, q, is_causal=True)

    cm = ppml_torch.convert(Attn().eval(), (q,))
    closed = jax.make_jaxpr(cm.apply)(cm.params, np.ones((1, 2, 3, 4), np.float32))
    exp = [e for e in closed.jaxpr.eqns if e.primitive.name == "exp"]
    assert exp and all(
        str(e.source_info.name_stack).endswith("op:aten._softmax.default") for e in exp
    )
