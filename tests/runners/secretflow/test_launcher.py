"""The launcher's pieces that need no party process (the runs are in
tests/apps/homework/test_parties.py and tests/cli/test_gpt2.py)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from ppml_torch.runners.secretflow.cluster import ClusterError
from ppml_torch.runners.secretflow.launcher import cpu_shares, describe_shares, parse_parties, pin


def test_cpu_shares_split_the_cpus_contiguously():
    assert cpu_shares(2, [0, 1]) == [[0], [1]]
    assert cpu_shares(2, [3, 0, 2, 1]) == [[0, 1], [2, 3]]
    assert cpu_shares(3, range(8)) == [[0, 1, 2], [3, 4, 5], [6, 7]]  # the first ones larger
    assert cpu_shares(3, [0, 1]) is None  # fewer CPUs than parties: nothing pinned
    assert describe_shares(["alice", "bob"], [[0, 1], [2, 3]]) == "alice 0,1, bob 2,3"


def test_pin_keeps_a_started_process_and_its_later_threads_on_its_cpus():
    cpus = sorted(os.sched_getaffinity(0))[:1]
    code = (
        "import os, sys, threading; sys.stdin.readline(); got = []; "
        "t = threading.Thread(target=lambda: got.append(sorted(os.sched_getaffinity(0)))); "
        "t.start(); t.join(); print(sorted(os.sched_getaffinity(0)), got[0])"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    pin(proc.pid, cpus)
    out, _ = proc.communicate("go\n", timeout=60)
    assert out.strip() == f"{cpus} {cpus}"  # the main thread and one started after pin


@pytest.mark.parametrize(
    ("text", "fix"),
    [
        ("alice,alice", "list each once"),
        ("alice", "2 (SEMI2K, CHEETAH) or 3"),
        ("a-b,c", "identifier"),
    ],
)
def test_parse_parties_refuses_in_one_line(text, fix):
    with pytest.raises(ClusterError, match=re.escape(fix)) as e:
        parse_parties(text)
    assert "\n" not in str(e.value)


FAKE_PARTY = """#!/bin/sh
# stands in for `python -m ppml_torch ... --party P`: bob fails at once, alice hangs
case "$*" in *"--party bob"*) echo "bob fails"; exit 4;; esac
echo "alice waits"
exec sleep 60
"""


def test_a_failed_party_ends_the_launch_and_the_others_are_killed_after_the_bound(tmp_path):
    """Catches a launch that waits forever for a party that never ends, kills it before its
    bound (timeout_s + grace_s), or loses a party's lines or exit code."""
    import io
    import json
    import time

    from ppml_torch.runners.secretflow.launcher import launch

    fake = tmp_path / "fake-python"
    fake.write_text(FAKE_PARTY)
    fake.chmod(0o755)
    out = io.StringIO()
    t0 = time.monotonic()
    result = launch(
        ["alice", "bob"],
        ["homework-mlp"],
        timeout_s=1,
        grace_s=0.5,
        out=out,
        python=str(fake),
        workdir=str(tmp_path),
        pin_cpus=False,
    )
    elapsed = time.monotonic() - t0
    assert 1.5 <= elapsed < 15, elapsed
    alice, bob = result.runs
    assert (alice.returncode, alice.killed, bob.returncode, bob.killed) == (-9, True, 4, False)
    assert result.returncode == 128 + 9  # the first party's: killed by signal 9, as shells say
    assert alice.lines == ["alice waits\n"] and bob.lines == ["bob fails\n"]
    text = out.getvalue()
    assert "  bob | bob fails\n" in text and "alice | alice waits\n" in text
    assert "launch | killed alice: still running 1.5 s after bob failed\n" in text
    cluster = json.loads((tmp_path / "cluster.json").read_text())
    assert result.cluster_file == str(tmp_path / "cluster.json")
    assert cluster["timeout_s"] == 1 and set(cluster["parties"]) == {"alice", "bob"}


FOLLOWING_PARTY = """#!/bin/sh
# stands in for `python -m ppml_torch ... --party P`, which follows the launcher's news from its
# first moment: bob fails at once, alice waits
case "$*" in *"--party bob"*) echo "bob fails"; exit 4;; esac
PYTHONPATH={root} exec {python} -c "
import time
from ppml_torch.runners.secretflow.launcher import follow_launcher
follow_launcher()
time.sleep(60)
"
"""


def _fake(tmp_path, text):
    from tests.runners.secretflow.processes import ROOT

    fake = tmp_path / "fake-python"
    fake.write_text(text.format(root=ROOT, python=sys.executable))
    fake.chmod(0o755)
    return str(fake)


def _ours(folder):
    return sorted(n for n in os.listdir(folder) if n.startswith("ppml-torch-"))


def test_a_party_that_fails_is_named_by_the_others_at_once(tmp_path, monkeypatch):
    """Catches a party that learns nothing of a party that ended during start-up (under
    launch alice printed nothing and was killed at +45 s): alice ends within seconds with one
    line naming bob and his exit code, exit code 3; the launch's folder is gone afterwards."""
    import io
    import time

    from ppml_torch.runners.secretflow.launcher import launch

    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr("tempfile.tempdir", None)
    out = io.StringIO()
    t0 = time.monotonic()
    result = launch(
        ["alice", "bob"],
        ["homework-mlp"],
        timeout_s=30,
        out=out,
        python=_fake(tmp_path, FOLLOWING_PARTY),
        pin_cpus=False,
    )
    elapsed = time.monotonic() - t0
    alice, bob = result.runs
    assert (alice.returncode, alice.killed, bob.returncode) == (3, False, 4), out.getvalue()
    assert alice.lines == [
        "ppml-torch: party bob ended (exit code 4) before this party's session started; its "
        "own output says why it stopped\n"
    ]
    print(f"alice ended {elapsed:.1f} s after the launch started (bob: at once)")
    assert elapsed < 10
    assert not os.path.exists(os.path.dirname(result.cluster_file))
    assert _ours(tmp_path) == []


# ^C as a terminal delivers it: a process started in the background by a non-interactive shell
# (a CI job, say) inherits SIGINT ignored, and Python then installs no KeyboardInterrupt
KILLED = """
import signal
import sys
signal.signal(signal.SIGINT, signal.default_int_handler)
from ppml_torch.runners.secretflow.launcher import launch
launch(["alice", "bob"], ["homework-mlp"], python=sys.argv[1], pin_cpus=False)
"""

SLEEPING_PARTY = """#!/bin/sh
echo "$$ started"
exec sleep 60
"""


@pytest.mark.parametrize("sig", ["SIGKILL", "SIGTERM", "SIGINT"])
def test_a_killed_launcher_leaves_no_party_and_no_file(tmp_path, sig):
    """Catches parties that outlive their launcher (killed: they would run on, and their files
    with them; SIGTERM or ^C: its own clean-up), or its cluster file's folder left behind."""
    import signal
    import time

    from tests.runners.secretflow.processes import ENV

    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED, _fake(tmp_path, SLEEPING_PARTY)],
        stdout=subprocess.PIPE,
        text=True,
        env=dict(ENV, TMPDIR=str(tmp_path)),
        start_new_session=True,
    )
    pids = []
    try:
        while len(pids) < 2:
            line = proc.stdout.readline()
            assert line, "the launcher ended early"
            if line.endswith(" started\n"):
                pids.append(int(line.split("|")[1].split()[0]))
        assert len(_ours(tmp_path)) == 1  # the launch's folder, with the cluster file
        os.kill(proc.pid, getattr(signal, sig))
        proc.wait(timeout=30)
        end = time.monotonic() + 20
        while time.monotonic() < end and (_ours(tmp_path) or any(_alive(p) for p in pids)):
            time.sleep(0.2)
        assert not any(_alive(p) for p in pids)
        assert _ours(tmp_path) == []
    finally:
        for p in pids:
            if _alive(p):
                os.kill(p, signal.SIGKILL)


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return not f.read().split(") ")[1].startswith("Z")
    except OSError:
        return False
