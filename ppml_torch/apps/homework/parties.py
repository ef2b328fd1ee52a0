"""The homework with each party in its own process (SecretFlow production mode).

The same training as the one-process homework (:mod:`.train`: ``ppml_torch.fit``, then
``ppml_torch.predict`` of the test set), run by every party with its own data only
(:meth:`HomeworkData.for_party`: the other party's arrays are shape-only placeholders, checked
against the shapes their owner announces).  The trained weights reach alice's process only
(``fit`` returns ``None`` as the module elsewhere); the test scores reach bob's process only,
so only bob's row has an AUC.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ...runners import total
from ...runners.runspec import RunSpec
from .data import load_data
from .evaluate import auc
from .report import HomeworkRow
from .train import ROUTE, predict_test, torch_mlp, train


@dataclasses.dataclass(frozen=True)
class PartyResult:
    """What one party's process learned: its row, and the values it received."""

    row: HomeworkRow  # auc is None outside bob's process
    module: Any  # the trained torch module in alice's process (weights_to), None elsewhere
    scores: Any  # the test scores (numpy) in bob's process, None elsewhere


def run_party(
    run: RunSpec,
    *,
    cluster: str,
    party: str,
    epochs: int = 10,
    normalise: str = "per-feature",
    route: str = ROUTE,
) -> PartyResult:
    """Train and score on ``run`` as party ``party`` of ``cluster``."""
    data = load_data(normalise).for_party(party)
    module = torch_mlp()  # the architecture everywhere; its weights are read at alice only
    with run.open(cluster=cluster, party=party) as s:
        s.check_same(
            {"--epochs": epochs, "--normalise": normalise, "--route": route}, "homework-mlp"
        )
        trained, history = train(s, data, module=module, epochs=epochs, route=route)
        # predict reads the weights at alice only: the placeholder module elsewhere is fine
        scores = predict_test(s, trained if trained is not None else module, data, route=route)
    score = None if scores is None else auc(scores, data)
    report = total(history.reports, "train")  # this party's puts, epochs, reveal
    row = HomeworkRow(run.backend, run.protocol or "-", run.field or "-", score, report)
    return PartyResult(row, trained, scores)
