"""ppml_torch/train/progress.py: the bar starts with fit and names the stage it is in; each
set-up stage is timed for the history."""

from __future__ import annotations

import time

import torch
import torch.nn as nn

import ppml_torch
from ppml_torch.train.progress import Stages
from tests.sessions import get_session
from tests.train.toy import split, tiny_data, tiny_mlp


def test_stages_are_timed_and_named_on_the_bar(capsys):
    st = Stages(2, True)
    st.stage("convert")
    time.sleep(0.05)
    assert st.bar.desc == "fit: convert"
    st.stage("share")
    st.epoch(1, 2)
    assert st.bar.desc == "fit: compile + epoch 1/2"
    st.done_epoch(0.5)
    st.epoch(2, 2)
    assert st.bar.desc == "fit: epoch 2/2" and st.bar.n == 1
    st.close()
    assert set(st.times) == {"convert", "share"} and st.times["convert"] >= 0.05
    assert "fit: epoch 2/2" in capsys.readouterr().err  # tqdm writes to stderr


def test_fit_history_has_the_stages_and_the_real_clock():
    """The bar's clock is fit's: from the call (checks, conversion, range check, shares) to
    the reveal; ``wall_s`` covers all of it."""
    x, y = tiny_data()
    m = tiny_mlp(seed=5)
    t0 = time.perf_counter()
    _, history = ppml_torch.fit(
        m, nn.MSELoss(), torch.optim.SGD(m.parameters(), lr=0.1), split(x, y),
        session=get_session("spu", "SEMI2K", "FM64"), batch_size=8, progress=False,
    )  # fmt: skip
    wall = time.perf_counter() - t0
    assert list(history.stages) == ["checks", "convert", "range check", "share", "reveal"]
    epochs = sum(e.run_s + (e.compile_s or 0.0) for e in history.epochs)
    assert sum(history.stages.values()) + epochs <= history.wall_s <= wall
    assert history.setup_s == sum(history.stages[k] for k in ("checks", "convert", "range check"))
