"""The digits CNN with one process per party, through ``ppml-torch launch`` (issue 20, item 5).

Both parties run ``digits --runs secretflow:SEMI2K`` (SecretFlow production mode), each with
its own rows only.  Checked: the trained weights reach alice's process only (her row has the
test accuracy, bob's has none and says so), and alice's accuracy is within 0.02 of torch
eager's on the same rows and steps (one epoch on the first 256 training images: 8 steps,
the suite's time).
"""

from __future__ import annotations

import io
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
ROWS = 256


@pytest.mark.slow
@pytest.mark.secretflow
def test_launch_digits_accuracy_within_two_points_of_eager(tmp_path, monkeypatch):
    from ppml_torch.apps.digits import train
    from ppml_torch.apps.digits.data import load_data
    from ppml_torch.cli.launch import check_command
    from ppml_torch.runners.secretflow.launcher import launch

    monkeypatch.setenv("PYTHONPATH", ROOT)  # the parties import this checkout's ppml_torch
    monkeypatch.chdir(ROOT)
    argv = ["digits", "--runs", "secretflow:SEMI2K", "--epochs", "1", "--train-rows", str(ROWS)]
    out = io.StringIO()
    result = launch(
        ["alice", "bob"], argv, timeout_s=30, out=out, check=check_command, workdir=str(tmp_path)
    )
    text = out.getvalue()
    assert result.returncode == 0, text[-4000:]
    alice, bob = result.output("alice"), result.output("bob")
    assert "alice received: the trained weights, scored on its test set" in alice, alice
    assert "bob received: nothing revealed; the trained weights went to alice" in bob, bob
    alice_row = next(x for x in alice.splitlines() if x.startswith("secretflow "))
    bob_row = next(x for x in bob.splitlines() if x.startswith("secretflow "))
    assert bob_row.split()[3] == "-"  # no accuracy where the weights did not go
    got = float(alice_row.split()[3])
    data = load_data(ROWS)
    want = train.accuracy(train.torch_eager(data, epochs=1), data)
    print(f"\nlaunch SEMI2K: accuracy {got:.4f} vs torch eager {want:.4f}")
    assert abs(got - want) <= 0.02
    assert float(alice_row.split()[4]) == pytest.approx(abs(got - want), abs=1e-4)
