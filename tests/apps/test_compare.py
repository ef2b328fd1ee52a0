"""``compare mlp``: every route x runner within 0.01 AUC of torch eager; the plots are written."""

from __future__ import annotations

import pytest

from ppml_torch.apps import compare
from ppml_torch.runners.runspec import parse_runs
from tests.sessions import get_session, record_error

PNG = b"\x89PNG\r\n\x1a\n"


def _check(rows, references, *, n_runs, epochs):
    assert len(rows) == n_runs
    for r in rows:
        assert r.error is None, (r.run, r.route, r.error)
        ref = references[r.epochs]
        assert r.epochs == epochs and r.reference_auc == ref.auc
        print(
            f"\n{r.run} {r.route}: AUC {r.auc:.5f} vs torch eager {ref.auc:.5f}, "
            f"max |dW| {r.max_weight_diff:.2e}"
        )
        assert abs(r.auc - ref.auc) <= 0.01
        assert len(r.losses) == epochs and r.scores.shape == ref.scores.shape
        if r.route != "-":
            record_error(f"compare {r.run}", r.max_weight_diff)
            assert (r.comm is not None) == (r.run != "cpu")


def test_cpu_and_semi2k_both_routes_match_torch_eager(tmp_path):
    runs = parse_runs(["torch", "cpu", "spu:SEMI2K"])
    seen = []
    rows, refs = compare.run_compare(runs, epochs=5, on_row=seen.append)
    assert rows == seen
    assert [(r.run, r.route) for r in rows] == [
        ("torch", "-"), ("cpu", "graph"), ("cpu", "flax"),
        ("spu:SEMI2K:FM64", "graph"), ("spu:SEMI2K:FM64", "flax"),
    ]  # fmt: skip
    _check(rows, refs, n_runs=5, epochs=5)
    for r in rows[1:3]:  # plaintext: the same float32 training as torch eager
        assert r.max_weight_diff < 1e-5
    for r in rows[3:]:  # FM64: 18 fraction bits, errors accumulate over 230 steps
        assert r.max_weight_diff < 5e-3
    paths = compare.write_plots(rows, refs, tmp_path / "plots")
    assert [p.name for p in paths] == [compare.LOSS_PLOT, compare.SCATTER_PLOT]
    for p in paths:
        head = p.read_bytes()[:8]
        assert p.stat().st_size > 10_000 and head == PNG


@pytest.mark.slow
def test_cheetah_one_epoch_both_routes(tmp_path):
    """CHEETAH costs ~18 s an epoch here: one epoch per route."""
    rows, refs = compare.run_compare(parse_runs(["spu:CHEETAH"]), epochs=3, cheetah_epochs=1)
    _check(rows, refs, n_runs=2, epochs=1)
    assert list(refs) == [1]
    assert all(r.max_weight_diff < 5e-3 for r in rows)


@pytest.mark.secretflow
@pytest.mark.parametrize("route", ["graph", "flax"])
def test_secretflow(route):
    run = parse_runs(["secretflow:SEMI2K"])
    session = get_session("secretflow", "SEMI2K", "FM64")
    rows, refs = compare.run_compare(run, routes=[route], epochs=5, sessions={run[0]: session})
    _check(rows, refs, n_runs=1, epochs=5)


def test_a_failed_run_is_a_row_and_left_out_of_the_plots(monkeypatch, tmp_path):
    def broken(hw, session, data, run, route, *rest):
        if route == "flax":
            raise RuntimeError("boom\nsecond line")
        return real(hw, session, data, run, route, *rest)

    real = compare._train_row
    monkeypatch.setattr(compare, "_train_row", broken)
    rows, refs = compare.run_compare(parse_runs(["cpu"]), epochs=1)
    assert [r.error for r in rows] == [None, "RuntimeError: boom"]
    assert compare.line(rows[1]).split()[2:] == ["1", "FAILED:", "RuntimeError:", "boom"]
    paths = compare.write_plots(rows, refs, tmp_path)
    assert all(p.read_bytes()[:8] == PNG for p in paths)
