"""The homework with each party in its own process (SecretFlow production mode).

Each process keeps only its own data (:meth:`HomeworkData.for_party`); the weights are alice's
secret, the test scores are revealed to bob alone, so only bob's row has an AUC.  It runs the
homework's hand-written Flax loop (:mod:`.flax_loop`), the loop that was verified across
processes; ``fit`` takes its data from each party the same way, but is not run across
processes yet.
"""

from __future__ import annotations

from ...runspec import RunSpec
from .data import load_data
from .evaluate import auc
from .flax_loop import fit, init_flax_mlp, predict_test
from .report import HomeworkRow


def run_party(
    run: RunSpec, *, cluster: str, party: str, epochs: int = 10, normalise: str = "per-feature"
) -> HomeworkRow:
    """Train and score on ``run`` as party ``party`` of ``cluster``; the AUC is ``None``
    outside bob's process."""
    data = load_data(normalise).for_party(party)
    apply_fn, params = init_flax_mlp()
    with run.open(cluster=cluster, party=party) as s:
        result = fit(s, apply_fn, params, data, epochs=epochs)
        scores = predict_test(s, apply_fn, result.params, data)
    score = None if scores is None else auc(scores, data)
    return HomeworkRow(run.backend, run.protocol or "-", run.field or "-", score, result.report)
