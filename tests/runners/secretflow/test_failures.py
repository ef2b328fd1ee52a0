"""Failures of the multi-party runtime as one line naming the party
(runners/secretflow/failures.py), without SecretFlow: the causes are built here and the other
party's ports are this test's own sockets (open) or free ports (closed)."""

from __future__ import annotations

import contextlib
import socket

import pytest

from ppml_torch.runners.config import ConfigError
from ppml_torch.runners.secretflow.cluster import loopback_cluster, parse_cluster
from ppml_torch.runners.secretflow.failures import Failures, PartyLostError


@contextlib.contextmanager
def _listening(cluster, party):
    """``party``'s two ports answer while inside."""
    socks = []
    try:
        for addr in (cluster.party(party).address, cluster.party(party).spu_address):
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            host, port = addr.split(":")
            s.bind((host, int(port)))
            s.listen()
            socks.append(s)
        yield
    finally:
        for s in socks:
            s.close()


def _failures(parties=("alice", "bob")):
    cluster = parse_cluster(loopback_cluster(list(parties), timeout_s=30, start_timeout_s=60))
    lost = []
    return cluster, Failures(cluster, "alice", lambda: lost.append(True)), lost


class _PeerError(Exception):
    """What SecretFlow raises when another party's exception arrives."""

    def __init__(self, src, cause):
        super().__init__(str(cause))
        self._src_party, self._cause = src, cause


def test_a_party_whose_ports_are_closed_is_named():
    _, f, lost = _failures()
    e = f.error("SPU op epoch", RuntimeError("what: brpc says something long"))
    assert str(e) == (
        "party bob stopped answering during SPU op epoch: no reply within 30 s (timeout_s) and "
        "nothing listens on its ports; check that it runs (its own output says why it stopped)"
    )
    assert lost == [True] and f.lost
    e = f.error("start-up (SPU link)", None, start=True)
    assert str(e).startswith("party bob did not start during start-up (SPU link): no reply ")
    assert "within 60 s (start_timeout_s)" in str(e)


def test_with_the_ports_open_the_cause_is_told():
    cluster, f, _ = _failures()
    with _listening(cluster, "bob"):
        peer = f.error("put(owner=bob)", _PeerError("bob", ValueError("bad value")))
        stalled = f.error("SPU op fit", RuntimeError("what:  recv   timeout after 30000 ms"))
        other = f.error("reveal to bob", KeyError("k"))
    assert str(peer) == "party bob failed during put(owner=bob): bad value"
    assert str(stalled) == (
        "no reply from party bob during SPU op fit within 30 s (timeout_s), though its ports "
        "are open (stalled, or a different program/cluster file?): recv timeout after 30000 ms"
    )
    assert str(other) == "reveal to bob failed in party alice: KeyError: 'k'"


def test_logs_are_kept_when_the_cause_may_be_in_them_only():
    """Catches a kept folder that the line does not name, or logs kept (left in the temporary
    folder) for a lost party, whose own output says why."""
    cluster = parse_cluster(loopback_cluster(["alice", "bob"], timeout_s=30, start_timeout_s=60))
    kept = []
    f = Failures(cluster, "alice", lambda: None, lambda: kept.append(1) or "/tmp/ppml-torch-x")
    gone = f.error("SPU op epoch", RuntimeError("socket closed"))
    assert "kept" not in str(gone) and kept == []
    with _listening(cluster, "bob"):
        stalled = f.error("SPU op fit", RuntimeError("recv timeout after 30000 ms"))
        other = f.error("reveal to bob", KeyError("k"))
    assert str(stalled).endswith("(this party's logs kept in /tmp/ppml-torch-x)")
    assert str(other).endswith("KeyError: 'k' (this party's logs kept in /tmp/ppml-torch-x)")
    assert kept == [1, 1]


def test_three_parties_a_stall_names_another_party():
    cluster, f, _ = _failures(("alice", "bob", "carol"))
    with _listening(cluster, "bob"), _listening(cluster, "carol"):
        e = f.error("SPU op x", RuntimeError("connection closed"))
    assert str(e).startswith("no reply from another party during SPU op x within 30 s")


def test_guard_translates_runtime_errors_and_passes_setting_errors_through():
    """Catches a guard that swallows a disagreement (a ConfigError must stay itself: exit 2,
    not a lost party) or that lets the session go on after a lost party."""
    _, f, lost = _failures()
    with pytest.raises(ConfigError, match="runs with field FM128") as e:
        with f.guard("start-up"):
            raise ConfigError("party 'bob' runs with field FM128 but 'alice' with FM64")
    assert not isinstance(e.value, PartyLostError) and not lost
    with pytest.raises(KeyboardInterrupt), f.guard("start-up"):
        raise KeyboardInterrupt
    with pytest.raises(PartyLostError, match="party bob stopped answering during put") as e:
        with f.guard("put"):
            raise RuntimeError("socket closed")
    assert isinstance(e.value.__cause__, RuntimeError) and lost == [True]
    with pytest.raises(PartyLostError, match="lost a party earlier; open a new one"):
        with f.guard("reveal"):
            raise AssertionError("a lost session must not run anything")
