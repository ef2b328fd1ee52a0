"""Start-up of a production party (runners/secretflow/startup.py).  The full start-up runs in
every multi-process test (test_production.py, test_supervision.py); here: what happens before
anything connects."""

from __future__ import annotations

import json
import socket
import sys

import pytest

from ppml_torch.runners.secretflow import patches
from ppml_torch.runners.secretflow.cluster import loopback_cluster, reachable


@pytest.mark.secretflow
def test_a_changed_patch_target_stops_start_up_before_anything_connects(tmp_path, monkeypatch):
    """Catches the patch check coming after ``sf.init`` (or not at all): the party would
    connect, open its ports and start its guard with a runtime it cannot patch."""
    pytest.importorskip("secretflow")
    from ppml_torch.runners import open_session
    from ppml_torch.runners.secretflow.production import ProductionSession

    changed = patches.Target(
        "secretflow", patches.SECRETFLOW, "json", "dumps", "0" * 16
    )  # a target whose code is not what the patch was made from
    monkeypatch.setattr(patches, "PRODUCTION", (*patches.PRODUCTION, changed))
    path = tmp_path / "cluster.json"
    cluster = loopback_cluster(["alice", "bob"], protocol="SEMI2K")
    path.write_text(json.dumps(cluster))
    stdout = sys.stdout
    with pytest.raises(patches.PatchError) as e:
        open_session("secretflow", cluster=str(path), party="alice")
    assert "\n" not in str(e.value) and "dumps (json), whose code differs" in str(e.value)
    assert sys.stdout is stdout  # the console was not redirected (NativeLogs)
    assert ProductionSession._active is None
    for addr in cluster["parties"]["alice"].values():  # nothing listens on alice's ports
        assert not reachable(addr)
        host, port = addr.split(":")
        with socket.socket() as s:  # and they are free again
            s.bind((host, int(port)))
