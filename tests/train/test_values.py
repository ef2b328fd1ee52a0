"""ppml_torch/train/values.py: every owner's block checked before anything is put."""

from __future__ import annotations

import jax
import numpy as np
import pytest
import torch
import torch.nn as nn

import ppml_torch
from ppml_torch.errors import InputError
from ppml_torch.train import horizontal, vertical
from ppml_torch.train.data import Loaded
from ppml_torch.train.values import check_blocks
from tests.sessions import get_session

F32 = np.float32


def _emb() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Embedding(10, 3), nn.Flatten(), nn.Linear(3, 2))


IDS = np.array([[1], [4], [9], [0]], np.int32)


@pytest.mark.parametrize(
    ("x", "fragment"),
    [
        (np.array([[1], [4], [10], [0]], np.int32), "id 10 is outside the table of 10 entries"),
        (np.array([[0.5, 1.0, np.inf]] * 4, F32), "4 NaN/inf value(s), first inf at index (0, 2)"),
        (np.array([[0.5, 1.0, 2e13]] * 4, F32), "|x| up to 2e+13 is beyond FM64"),
    ],
    ids=["id", "inf", "range"],
)
@pytest.mark.parametrize("entry", ["fit", "predict"])
def test_nothing_is_put_before_a_bad_block_is_refused(entry, x, fragment):
    """The refusal comes before the weights are put (catches: the check left to put, which
    runs after the weights are shared; the ids not checked at all, as before)."""
    s = get_session("spu", "SEMI2K", "FM64")
    model = _emb() if x.dtype.kind == "i" else nn.Linear(3, 2)
    before = len(s.record)
    with pytest.raises(InputError, match=rf"data: bob's block.*{_re(fragment)}"):
        if entry == "predict":
            ppml_torch.predict(model, x, session=s, owner="bob")
        else:
            y = np.zeros((4, 2), F32)
            data = horizontal({"bob": (x, y)}, weights_owner="alice")
            opt = torch.optim.SGD(model.parameters(), lr=0.1)
            ppml_torch.fit(model, nn.MSELoss(), opt, data, session=s, batch_size=2, progress=False)
    assert len(s.record) == before


def _re(text: str) -> str:
    import re

    return re.escape(text)


def _fit_ce(y: np.ndarray, **loss_kw) -> None:
    torch.manual_seed(0)
    model = nn.Linear(3, 4)
    data = vertical(
        {"alice": (range(3), np.ones((4, 3), F32))}, labels=("bob", y), weights_owner="alice"
    )
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loss = nn.CrossEntropyLoss(**loss_kw)
    ppml_torch.fit(model, loss, opt, data, batch_size=2, progress=False)


def test_class_indices_are_checked_against_the_outputs_classes():
    """A class index outside the output's 4 classes is refused (torch raises; the one-hot of
    the JAX loss would give a term of 0, a wrong loss); ``ignore_index`` is allowed."""
    with pytest.raises(InputError, match=r"bob's labels \(class indices of CrossEntropyLoss"):
        _fit_ce(np.array([0, 3, 4, 1]))
    _fit_ce(np.array([0, 3, -100, 1]))  # the default ignore_index
    with pytest.raises(InputError, match="id 7 is outside the table of 4 entries"):
        _fit_ce(np.array([0, 3, 7, 1]), ignore_index=-1)


def test_a_model_computing_its_own_loss_checks_its_labels():
    """The labels of a model's own loss are ids of its cross entropy, -100 ignored (HF's)."""
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=16, n_positions=8, n_embd=8, n_layer=1, n_head=1)
    model = transformers.GPT2LMHeadModel(config)
    ids = np.arange(16, dtype=np.int32).reshape(4, 4) % 16
    opt = torch.optim.SGD(model.parameters(), lr=0.1)

    def fit(labels):
        data = horizontal({"bob": ({"input_ids": ids}, labels)}, weights_owner="alice")
        return ppml_torch.fit(model, None, opt, data, batch_size=2, progress=False)

    with pytest.raises(InputError, match=r"bob's labels, input 'labels' of GPT2LMHeadModel"):
        fit(np.where(ids == 5, 16, ids))
    fit(np.where(ids == 5, -100, ids))  # ignored positions


class _Process:
    """A stand-in for one party's process of a production session: announce gives every
    party's answer, computed where that party's data is (``answers``)."""

    def __init__(self, answers):
        self.answers = answers

    def announce(self, fn):
        return {p: (fn(p) if p == "alice" else self.answers[p]) for p in ("alice", "bob")}


def test_one_process_per_party_stops_every_process_with_the_owners_line():
    """In alice's process bob's block is a placeholder; bob's process found an id out of range
    and announced the line: alice stops with it too (catches: alice going on to put her
    weights and waiting for a bob who has stopped)."""
    data = vertical(
        {"alice": (range(1), IDS), "bob": (range(1, 2), jax.ShapeDtypeStruct((4, 1), np.int32))},
        weights_owner="alice",
    )
    loaded = Loaded(data, (IDS, data.features[1].value), (), 4, 2, None)  # as in alice's process
    model = ppml_torch.convert(
        nn.Sequential(nn.Embedding(10, 3)), (torch.zeros(4, 2, dtype=torch.long),)
    )
    line = "data: bob's block, input 'input' of Sequential: id 12 is outside the table of 10"
    with pytest.raises(InputError, match=line):
        check_blocks(model, data, loaded, None, announce=_Process({"bob": line}).announce)
    check_blocks(model, data, loaded, None, announce=_Process({"bob": None}).announce)
