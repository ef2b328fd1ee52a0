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


def test_save_where_nothing_can_be_written_is_refused_before_any_party_starts(tmp_path, capsys):
    """Catches an output folder found unwritable only after the MPC work (13.8 s of it): a
    folder under a file, or where the system allows no folder, is one line, exit code 2,
    before any process starts (a launch would print its CPUs line first)."""
    import time

    from ppml_torch.cli import main

    (tmp_path / "a-file").write_text("")
    for bad in (str(tmp_path / "a-file" / "out"), "/proc/ppml-torch-out"):
        t0 = time.monotonic()
        argv = ["--parties", "alice,bob", "--", "homework-mlp", "--runs", "secretflow:SEMI2K"]
        assert main(["launch", *argv, "--save", bad]) == 2
        captured = capsys.readouterr()
        assert captured.out == ""  # no party started
        err = captured.err.strip()
        assert len(err.splitlines()) == 1, err
        assert err.startswith(f"ppml-torch launch: --save {bad}: cannot write there ("), err
        assert time.monotonic() - t0 < 5
    good = tmp_path / "new" / "out"
    from ppml_torch.cli.launch import check_writable_folder

    check_writable_folder(str(good), "--save")
    assert good.is_dir() and list(good.iterdir()) == []
