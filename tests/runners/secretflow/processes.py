"""Party processes for the production-mode tests (imported by them, not collected).

:func:`run_parties` starts ``prod_party.py SCENARIO CLUSTER PARTY`` once per party on a loopback
cluster file and reads each party's ``RESULT`` line; the other helpers find, wait for and kill
the processes of a ``ppml-torch launch``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from ppml_torch.runners.secretflow.cluster import load_cluster, loopback_cluster, reachable

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))
SCRIPT = os.path.join(HERE, "prod_party.py")
ENV = dict(os.environ, PYTHONPATH=ROOT, PYTHONUNBUFFERED="1")


def run_parties(tmp_path, scenario, parties=("alice", "bob"), **cluster):
    """Every party runs ``scenario``; each must exit 0; its ``RESULT`` as a dict per party."""
    path = tmp_path / "cluster.json"
    path.write_text(json.dumps(loopback_cluster(list(parties), **cluster)))
    procs = {
        p: subprocess.Popen(
            [sys.executable, SCRIPT, scenario, str(path), p],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=ENV,
            start_new_session=True,
        )
        for p in parties
    }
    out = {}
    try:
        for p, proc in procs.items():
            text, _ = proc.communicate(timeout=400)
            assert proc.returncode == 0, text[-3000:]
            line = next(x for x in text.splitlines() if x.startswith("RESULT "))
            out[p] = json.loads(line[len("RESULT ") :])
    finally:
        for proc in procs.values():
            kill_group(proc.pid)
    return out


def run_parties_with(tmp_path, cluster, scenario):
    """alice and bob run ``scenario`` with the cluster file ``cluster``: (exit code, output)."""
    path = tmp_path / "cluster.json"
    path.write_text(json.dumps(cluster))
    procs = {
        p: subprocess.Popen(
            [sys.executable, SCRIPT, scenario, str(path), p],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=ENV,
            start_new_session=True,
        )
        for p in ("alice", "bob")
    }
    out = {}
    try:
        for p, proc in procs.items():
            text, _ = proc.communicate(timeout=300)
            out[p] = (proc.returncode, text)
    finally:
        for proc in procs.values():
            kill_group(proc.pid)
    return out


def kill_group(pid):
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def wait_spu_links(cluster, limit=120):
    c = load_cluster(cluster)
    end = time.monotonic() + limit
    while not all(reachable(p.spu_address) for p in c.parties):
        assert time.monotonic() < end, "the parties never opened their SPU links"
        time.sleep(0.5)


def pid_of(cluster, party, missing_ok=False):
    """The pid of ``party``'s ``homework-mlp`` process of the launch using ``cluster``."""
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                args = f.read().split(b"\0")
        except OSError:
            continue
        words = [a.decode(errors="replace") for a in args]
        if (
            cluster in words
            and "homework-mlp" in words
            and words[words.index("--party") + 1 :][:1] == [party]
        ):
            return int(pid)
    if missing_ok:
        return None
    raise AssertionError(f"no process of {party}")
