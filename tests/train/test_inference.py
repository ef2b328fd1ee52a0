"""ppml_torch/train/inference.py: ``ppml_torch.predict`` equals the module, reveals only to its
receiver, and refuses bad arguments in one line before any session work."""

from __future__ import annotations

import pytest
import torch

import ppml_torch
from ppml_torch.errors import PpmlError
from ppml_torch.testing import assert_close
from tests.train.toy import ROUTES, RUNS, session_of, split, tiny_data, tiny_mlp


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("backend,protocol", RUNS)
def test_predict_reveals_only_to_receiver(route, backend, protocol):
    x, _ = tiny_data(n=9)
    module = tiny_mlp()
    s = session_of(backend, protocol)
    start = len(s.record)
    out = ppml_torch.predict(
        module, split(x, None, labels=False), route=route, session=s, reveal_to="bob"
    )
    with torch.no_grad():
        assert_close(out, module(torch.as_tensor(x)).numpy(), protocol=protocol, what="predict")
    assert [(e.kind, e.party) for e in s.record[start:]] == [
        ("put", "alice"), ("put", "alice"), ("put", "bob"), ("reveal", "bob"),
    ]  # fmt: skip


@pytest.mark.parametrize("route", ROUTES)
def test_one_array_is_owned_by_the_first_party(route):
    """An array (not a Data) is the session's first party's (columns of a vertical split), who
    also puts the weights; rows of more than two dimensions are a horizontal split."""
    x, _ = tiny_data(n=5)
    module = tiny_mlp()
    s = session_of("cpu", None)
    start = len(s.record)
    out = ppml_torch.predict(module, torch.as_tensor(x), route=route, session=s)
    with torch.no_grad():
        assert_close(out, module(torch.as_tensor(x)).numpy(), what="predict of one array")
    first = s.parties[0]
    assert [(e.kind, e.party) for e in s.record[start:]] == [
        ("put", first), ("put", first), ("reveal", None),
    ]  # fmt: skip


@pytest.mark.parametrize(
    "kw,match",
    [
        ({"reveal_to": "dave"}, "reveal_to='dave' is not a party"),
        ({"route": "onnx"}, "route must be 'graph' or 'flax'"),
        ({"session": "torch"}, "session 'torch' is torch eager"),
        ({"inputs": [1.0, 2.0]}, "inputs must have rows first"),
    ],
)
def test_bad_input_is_one_line_before_any_session_work(kw, match):
    x, _ = tiny_data(n=5)
    s = session_of("spu", "SEMI2K")
    n_record, n_reports = len(s.record), len(s.reports)
    kw = {"inputs": x, "session": s, **kw}
    with pytest.raises(PpmlError, match=match) as info:
        ppml_torch.predict(tiny_mlp(), kw.pop("inputs"), **kw)
    assert "\n" not in str(info.value)
    assert (len(s.record), len(s.reports)) == (n_record, n_reports)  # nothing put, nothing run
