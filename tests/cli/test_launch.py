"""``ppml-torch launch`` refuses what cannot run, in one line, before any process starts
(cli/launch.py; the runs themselves are in tests/apps/homework/test_parties.py,
tests/cli/test_gpt2.py and tests/runners/secretflow/test_production.py)."""

from __future__ import annotations

import pytest

LAUNCH_REFUSALS = [
    (["--parties", "alice,bob", "--", "homework-mlp"], "keep every party in one process"),
    (["--parties", "alice,bob", "--", "homework-mlp", "--runs", "spu:SEMI2K"], "spu:SEMI2K"),
    (["--parties", "alice,bob", "--", "ops"], "ops runs in one process"),
    (["--parties", "alice,bob", "--", "nope"], "unknown sub-command 'nope'"),
    (["--parties", "alice", "--", "homework-mlp"], "names 1 parties"),
    (["--parties", "alice,alice", "--", "homework-mlp"], "lists a party twice"),
    (
        [
            "--parties",
            "alice,bob",
            "--",
            "homework-mlp",
            "--runs",
            "secretflow:SEMI2K",
            "--party",
            "bob",
        ],
        "launch sets --party itself",
    ),
    (["--parties", "alice,bob", "--"], "give the sub-command after --"),
]


@pytest.mark.parametrize(
    "argv,message", LAUNCH_REFUSALS, ids=[" ".join(a[3:]) or "empty" for a, _ in LAUNCH_REFUSALS]
)
def test_launch_refuses_with_one_line(capsys, argv, message):
    from ppml_torch.cli import main

    assert main(["launch", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
