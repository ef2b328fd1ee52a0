"""The homework with one process per party, through ``ppml-torch launch`` (issue 11, fit).

Both parties run ``homework-mlp --runs secretflow:SEMI2K`` (SecretFlow production mode), each
with its own data only; the training goes through ``ppml_torch.fit`` and the scoring through
``ppml_torch.predict``, like the one-process homework.  Checked: the trained weights reach
alice's process only, the test scores bob's only, each party's output says what it got, and
both agree with the same training in one process (``spu``) within twice the tolerance table
(two fixed-point runs, each within the table of plaintext), on both conversion routes (the
graph route runs across processes, unlike in SecretFlow's one-process simulation).
"""

from __future__ import annotations

import io
import os

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
EPOCHS = 1


@pytest.mark.slow
@pytest.mark.secretflow
@pytest.mark.parametrize("route", ["flax", "graph"])
def test_launch_homework_fit_matches_in_process_spu(tmp_path, monkeypatch, route):
    from ppml_torch.apps.homework import train
    from ppml_torch.apps.homework.data import load_data
    from ppml_torch.apps.homework.evaluate import auc
    from ppml_torch.cli.launch import check_command
    from ppml_torch.runners import open_session
    from ppml_torch.runners.secretflow.launcher import cpu_shares, describe_shares, launch
    from ppml_torch.testing import max_abs_error, tolerance

    monkeypatch.setenv("PYTHONPATH", ROOT)  # the parties import this checkout's ppml_torch
    monkeypatch.chdir(ROOT)
    save = tmp_path / "got"
    out = io.StringIO()
    argv = [
        "homework-mlp",
        "--runs",
        "secretflow:SEMI2K",
        "--epochs",
        str(EPOCHS),
        "--route",
        route,
    ]
    argv += ["--save", str(save)]
    result = launch(["alice", "bob"], argv, timeout_s=30, out=out, check=check_command)
    text = out.getvalue()
    assert result.returncode == 0, text[-4000:]
    shares = cpu_shares(2)  # each party on its own share of the CPUs when there are enough
    if shares is None:
        assert "launch | 2 parties on 1 CPUs: not pinned" in text, text[:2000]
    else:
        assert f"launch | CPUs: {describe_shares(['alice', 'bob'], shares)}" in text, text[:2000]
    alice, bob = result.output("alice"), result.output("bob")
    # what each party's output says it learned
    assert "alice received: the trained weights" in alice, alice
    assert "the test scores were revealed to bob only, no AUC here" in alice, alice
    assert "bob received: the test scores (114), hence the AUC" in bob, bob
    assert "the trained weights went to alice" in bob, bob
    bob_row = next(x for x in bob.splitlines() if x.startswith("secretflow "))
    alice_row = next(x for x in alice.splitlines() if x.startswith("secretflow "))
    assert alice_row.split()[3] == "-"  # no AUC in alice's table
    got_auc = float(bob_row.split()[3])
    # what each process wrote: alice only weights, bob only scores
    a, b = np.load(save / "alice.npz"), np.load(save / "bob.npz")
    assert "scores" not in a.files and any(k.startswith("weight:") for k in a.files)
    assert b.files == ["scores"]

    data = load_data()
    with open_session("spu", "SEMI2K") as s:
        module, _ = train.train(s, data, epochs=EPOCHS, route=route)
        scores = train.predict_test(s, module, data, route=route)
    want_w = {f"weight:{k}": v.detach().numpy() for k, v in module.state_dict().items()}
    assert sorted(want_w) == sorted(a.files)
    tol = tolerance("SEMI2K", "FM64")
    err_w = max_abs_error([a[k] for k in sorted(want_w)], [want_w[k] for k in sorted(want_w)])
    err_s = max_abs_error(b["scores"], scores)
    print(f"{route}: largest error vs in-process spu: weights {err_w:.2e}, scores {err_s:.2e}")
    for k, v in want_w.items():
        np.testing.assert_allclose(a[k], v, atol=2 * tol.atol, rtol=2 * tol.rtol)
    np.testing.assert_allclose(b["scores"], scores, atol=2 * tol.atol, rtol=2 * tol.rtol)
    assert abs(got_auc - auc(scores, data)) <= 1e-4 + 0.005
    assert abs(got_auc - auc(b["scores"], data)) < 1e-4  # the printed AUC is of bob's scores
