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
