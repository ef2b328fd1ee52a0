"""The digits training with each party in its own process (SecretFlow production mode).

The same training as in one process (:mod:`.train`: ``ppml_torch.fit``), run by every party
with its own rows only (:meth:`DigitsData.for_party`: the other party's arrays are shape-only
placeholders, checked against the shapes their owner announces).  The trained weights reach
alice's process only (``fit`` returns ``None`` as the module elsewhere), so only alice's row
has an accuracy.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ...runners.runspec import RunSpec
from .data import load_data
from .report import DigitsRow, fit_row


@dataclasses.dataclass(frozen=True)
class PartyResult:
    """What one party's process learned: its row, and the trained module (alice's only)."""

    row: DigitsRow  # accuracy is None outside alice's process
    module: Any  # the trained torch module in alice's process (weights_to), None elsewhere


def run_party(
    run: RunSpec,
    *,
    cluster: str,
    party: str,
    epochs: int,
    batch_size: int,
    train_rows: int | None = None,
) -> PartyResult:
    """Train on ``run`` as party ``party`` of ``cluster``."""
    data = load_data(train_rows).for_party(party)
    with run.open(cluster=cluster, party=party) as s:
        s.check_same(
            {"--epochs": epochs, "--batch": batch_size, "--train-rows": train_rows}, "digits"
        )
        row, module = fit_row(run, s, data, epochs=epochs, batch_size=batch_size)
    return PartyResult(row, module)
