"""The model/input spec syntax of ``ppml-torch check``."""

from __future__ import annotations

import pytest
import torch

from ppml_torch.equivalence.check import EquivalenceError
from ppml_torch.equivalence.spec import InputSpec, load_model, make_inputs, parse_input
from ppml_torch.errors import PpmlError


def test_parse_input():
    assert parse_input("float32[4,30]") == InputSpec(None, "float32", (4, 30))
    assert parse_input(" input_ids=int64[1, 8] ") == InputSpec("input_ids", "int64", (1, 8))
    assert parse_input("float32[]") == InputSpec(None, "float32", ())
    for bad in ("float32", "[4]", "x=float32(4)", "float32[4;3]"):
        with pytest.raises(PpmlError, match="write dtype"):
            parse_input(bad)


def test_make_inputs_and_load_model():
    args, kwargs = make_inputs(
        [InputSpec(None, "float32", (2, 3)), InputSpec("ids", "int64", (1, 4))], int_high=5
    )
    assert args[0].shape == (2, 3) and args[0].dtype == torch.float32
    assert kwargs["ids"].dtype == torch.int64 and int(kwargs["ids"].max()) < 5
    with pytest.raises(EquivalenceError, match="positional inputs come before"):
        make_inputs([InputSpec("a", "float32", (1,)), InputSpec(None, "float32", (1,))])
    module, source = load_model("torch.nn:Linear", '{"in_features": 3, "out_features": 2}')
    assert (
        isinstance(module, torch.nn.Linear) and not module.training and source == "torch.nn:Linear"
    )
    with pytest.raises(PpmlError, match="kwargs must be a JSON object"):
        load_model("torch.nn:Linear", "[1]")
    with pytest.raises(PpmlError, match="not a torch.nn.Module"):
        load_model("torch:zeros", '{"size": [2]}')
