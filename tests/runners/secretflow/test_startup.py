"""Start-up of a production party (runners/secretflow/startup.py).  The full start-up runs in
every multi-process test (test_production.py, test_supervision.py); here: what happens before
anything connects."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from ppml_torch.runners.secretflow.cluster import loopback_cluster
from tests.runners.secretflow.processes import ENV, ROOT

CHANGED_TARGET = """
import json, socket, sys
from ppml_torch.runners import open_session
from ppml_torch.runners.secretflow import patches
from ppml_torch.runners.secretflow.cluster import load_cluster, reachable
from ppml_torch.runners.secretflow.production import ProductionSession

# a target whose code is not what the patch was made from
changed = patches.Target("secretflow", patches.SECRETFLOW, "json", "dumps", "0" * 16)
patches.PRODUCTION = (*patches.PRODUCTION, changed)
stdout = sys.stdout
try:
    open_session("secretflow", cluster=sys.argv[1], party="alice")
except patches.PatchError as e:
    alice = load_cluster(sys.argv[1]).party("alice")
    free = []
    for addr in (alice.address, alice.spu_address):
        host, port = addr.split(":")
        with socket.socket() as s:
            s.bind((host, int(port)))  # nothing holds alice's ports
        free.append(not reachable(addr))
    print(json.dumps({"error": str(e), "console": sys.stdout is stdout, "free": free,
                      "active": ProductionSession._active is not None}))
"""


@pytest.mark.secretflow
def test_a_changed_patch_target_stops_start_up_before_anything_connects(tmp_path):
    """Catches the patch check coming after ``sf.init`` (or not at all): the party would
    redirect its console, start its guard and watchdog and connect with a runtime it cannot
    patch (with this file's 1 s bounds, the watchdog then ends it with exit code 3)."""
    pytest.importorskip("secretflow")
    path = tmp_path / "cluster.json"
    path.write_text(json.dumps(loopback_cluster(["alice", "bob"], timeout_s=1, start_timeout_s=1)))
    done = subprocess.run(
        [sys.executable, "-c", CHANGED_TARGET, str(path)],
        capture_output=True,
        text=True,
        env=ENV,
        cwd=ROOT,
        timeout=300,
    )
    assert done.returncode == 0 and done.stdout.strip(), done.stdout + done.stderr[-2000:]
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert "\n" not in got["error"] and "dumps (json), whose code differs" in got["error"]
    assert got == {"error": got["error"], "console": True, "free": [True, True], "active": False}
