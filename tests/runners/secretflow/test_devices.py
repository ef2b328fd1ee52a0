"""Link settings and device descriptions built from a cluster file
(runners/secretflow/devices.py); the devices themselves run in every SecretFlow test."""

from __future__ import annotations

from ppml_torch.runners.secretflow.cluster import loopback_cluster, parse_cluster
from ppml_torch.runners.secretflow.devices import LinkBounds, cross_silo_cluster, cross_silo_tls


def test_link_bounds_follow_the_cluster_file():
    """Catches the cross-silo channel getting the short bound (party 0 compiling an SPU
    program for longer than timeout_s would then be taken for a lost party)."""
    c = parse_cluster(loopback_cluster(["alice", "bob"], timeout_s=20, start_timeout_s=45))
    b = LinkBounds.of(c)
    assert (b.timeout_ms, b.silo_ms) == (20_000, 45_000)
    assert b.options == {
        "recv_timeout_ms": 20_000,
        "connect_retry_times": 45,
        "connect_retry_interval_ms": 1000,
    }
    c = parse_cluster(loopback_cluster(["alice", "bob"], timeout_s=90, start_timeout_s=10))
    assert LinkBounds.of(c).silo_ms == 90_000


def test_cross_silo_cluster_listens_where_the_file_says():
    raw = loopback_cluster(["alice", "bob"])
    raw["parties"]["bob"]["listen"] = "0.0.0.0"
    c = parse_cluster(raw)
    cfg = cross_silo_cluster(c, "bob")
    assert cfg["self_party"] == "bob"
    bob = raw["parties"]["bob"]["address"]
    assert cfg["parties"]["bob"] == {
        "address": bob,
        "listen_addr": "0.0.0.0:" + bob.split(":")[1],
    }
    alice = raw["parties"]["alice"]["address"]
    assert cfg["parties"]["alice"] == {"address": alice, "listen_addr": alice}
    assert cross_silo_tls(c, "bob") is None
