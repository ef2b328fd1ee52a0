"""SecretFlow's devices of a session: a ``PYU`` per party (where its plaintext lives) and the
``SPU`` device (where the MPC runs), for both modes, and the link settings they use.

Simulation (:mod:`.simulation`): every party's SPU runtime is a Ray actor of this process's
local Ray cluster; each logs to its own file.  Production (:mod:`.production`): this process
runs its own party's SPU runtime only, which talks to the others over the SPU link of the
cluster file's ``spu_address`` es; the cross-silo channel (SecretFlow's own messages: shapes,
programs, shares moving between devices) uses the ``address`` es.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from ..config import SessionConfig, spu_runtime_config_dict
from .cluster import Cluster
from .logs import SpuLogs
from .patches import runtime_class, spu_device_class


def pyus(sf: Any, parties: Sequence[str]) -> dict[str, Any]:
    """One ``PYU`` per party: its plaintext values live there (in its own process in production)."""
    return {p: sf.PYU(p) for p in parties}


def simulation_spu(sf: Any, config: SessionConfig, profile: bool, logs: SpuLogs) -> Any:
    """The SPU device of a simulation: every party's runtime a Ray actor, logging to
    ``logs.path(party)``."""
    cluster = sf.utils.testing.cluster_def(
        list(config.parties), runtime_config=spu_runtime_config_dict(config, profile=profile)
    )
    return spu_device_class(logs.path)(cluster)


@dataclasses.dataclass(frozen=True)
class LinkBounds:
    """How long a party waits for another on each link (from the cluster file)."""

    timeout_ms: int  # an SPU op's receive (timeout_s)
    silo_ms: int  # the cross-silo channel's receive (max(timeout_s, start_timeout_s))
    options: dict[str, int]  # the link options both links share

    @classmethod
    def of(cls, cluster: Cluster) -> LinkBounds:
        timeout_ms = int(cluster.timeout_s * 1000)
        # The cross-silo channel also carries one-sided waits: the other parties wait there
        # while party 0 compiles an SPU program or a party loads its data, and the link's
        # first handshake waits for the slowest party's start-up.  It gets the longer bound;
        # a party that dies is caught within timeout_s by the watchdog (ports closed).
        silo_ms = int(max(cluster.timeout_s, cluster.start_timeout_s) * 1000)
        retries = max(1, int(cluster.start_timeout_s))  # one connection attempt per second
        options = {
            "recv_timeout_ms": timeout_ms,
            "connect_retry_times": retries,
            "connect_retry_interval_ms": 1000,
        }
        return cls(timeout_ms, silo_ms, options)


def cross_silo_cluster(cluster: Cluster, party: str) -> dict[str, Any]:
    """``sf.init``'s ``cluster_config``: every party's cross-silo address, this party's own."""
    return {
        "parties": {
            p.name: {"address": p.address, "listen_addr": p.listen_address("address")}
            for p in cluster.parties
        },
        "self_party": party,
    }


def cross_silo_tls(cluster: Cluster, party: str) -> dict[str, str] | None:
    """``sf.init``'s ``tls_config`` for this party, or ``None`` without TLS."""
    if cluster.tls is None:
        return None
    t = cluster.tls[party]
    return {"ca_cert": t.ca_cert, "cert": t.cert, "key": t.key}


def _spu_tls(cluster: Cluster, party: str) -> dict[str, Any] | None:
    if cluster.tls is None:
        return None
    t = cluster.tls[party]
    ssl = {
        "certificate_path": t.cert,
        "private_key_path": t.key,
        "ca_file_path": t.ca_cert,
        "verify_depth": 1,
    }
    return {"server_ssl_opts": ssl, "client_ssl_opts": ssl}


def production_spu(
    cluster: Cluster,
    party: str,
    config: SessionConfig,
    profile: bool,
    logs: SpuLogs,
    bounds: LinkBounds,
) -> Any:
    """The SPU device of a production session: this party's runtime (with the link retries of
    :func:`~.patches.slow_retries`) logs to ``logs.path(party)``; it connects its link in a
    worker thread (the caller waits for it)."""
    nodes = []
    tls = _spu_tls(cluster, party)
    for p in cluster.parties:
        node = {"party": p.name, "address": p.spu_address}
        if p.name == party:
            node["listen_address"] = p.listen_address("spu_address")
            if tls:
                node["tls_opts"] = tls
        nodes.append(node)
    spu_cluster = {
        "nodes": nodes,
        "runtime_config": spu_runtime_config_dict(config, profile=profile),
    }
    device = spu_device_class(lambda _: logs.path(party), runtime_class(bounds.timeout_ms))
    # brpc's own protocol instead of the default HTTP: the homework's later epochs took 3.9 s
    # instead of 5.4 s between two processes here (SPU's thousands of small messages per
    # epoch are latency-bound)
    return device(spu_cluster, link_desc=dict(bounds.options, brpc_channel_protocol="baidu_std"))
