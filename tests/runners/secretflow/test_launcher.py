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
