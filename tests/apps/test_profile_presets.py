"""The two programs of ``ppml-torch profile --homework`` and ``--gpt2``, profiled under SPU."""

from __future__ import annotations

import pytest

from ppml_torch.apps import profile_presets as presets
from tests.sessions import get_session


def agree(report) -> None:
    b, s = report.agreement
    assert abs(b - 1) <= 0.02 and abs(s - 1) <= 0.02, report.describe()


@pytest.mark.parametrize("protocol", ["SEMI2K", "ABY3"])
def test_homework_step(protocol):
    """Forward, backward, the homework's loss and the SGD update, each a row.  Under SEMI2K
    the loss's backward scales a value the forward scaled: XLA folds the two products into
    one in the whole program, so the parts must too (else 2 sends of 90 too many)."""
    report = presets.profile_program(get_session("spu", protocol, "FM64"), presets.homework_step())
    agree(report)
    rows = {r.path: r for r in report.rows}
    assert {"", "0", "1", "2", "3", "4", "(loss)", "(optimizer)", "(join features)"} <= set(rows)
    assert rows["(optimizer)"].backward.bytes == 0 and rows["(optimizer)"].bytes > 0
    assert rows["0"].kind == "Linear" and rows["1"].kind == "ReLU"
    assert rows["(join features)"].bytes == 0  # joining two parties' columns is local
    assert report.grads


@pytest.mark.parametrize("route", ["graph", "flax"])
def test_gpt2_decode_step(route):
    gpt, desc = presets.gpt2_module(layers=1, width=32, heads=2)
    program = presets.gpt2_decode_step(gpt, desc, route=route)
    report = presets.profile_program(get_session("spu", "ABY3", "FM64"), program)
    agree(report)
    kinds = report.kinds()
    assert kinds["argmax"][0].bytes == report.row("(argmax)").bytes > 0
    assert {"matmul", "LayerNorm", "embedding", "argmax"} <= set(kinds)
    assert "one decode step at position 7" in report.source
    # the vocabulary head multiplies by the tied embedding's weight: transformer.wte's row
    wte = "transformer.wte"
    head = [p for p in report.parts if p.path == wte and p.kind == "matmul"]
    assert head and sum(p.cost.bytes for p in head) > 0
