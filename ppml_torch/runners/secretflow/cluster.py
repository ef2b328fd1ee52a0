"""The cluster file of a multi-process (production-mode) SecretFlow run, validated up front.

Every party runs the same program with the same cluster file (only ``--party`` differs)::

    {
      "parties": {
        "alice": {"address": "10.0.0.1:9100", "spu_address": "10.0.0.1:9101"},
        "bob":   {"address": "10.0.0.2:9100", "spu_address": "10.0.0.2:9101",
                  "listen": "0.0.0.0"}
      },
      "protocol": "SEMI2K",            optional; must match the session's if given
      "field": "FM64",                 optional; idem
      "timeout_s": 30,                 optional; how long a party waits for another
      "start_timeout_s": 60,           optional; how long start-up waits for late parties
      "tls": {                         optional: mutual TLS between parties
        "ca_cert": "ca.pem",
        "parties": {"alice": {"cert": "alice.pem", "key": "alice.key"}, ...}
      }
    }

``address`` is where the other parties reach this party's cross-silo channel (SecretFlow's
messages between parties), ``spu_address`` its SPU link (the MPC protocol's messages); both
ports must be open to the other parties.  ``listen`` (optional) is the host this party binds
(default: the host of its addresses; ``0.0.0.0`` behind NAT).  Relative certificate paths
are relative to the cluster file.

Everything here is cheap and runs before any process connects; each error is one line.
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
from collections.abc import Mapping
from typing import Any

from ..config import FIELDS, PROTOCOLS, ConfigError
from .tls import TlsError, check_files

DEFAULT_TIMEOUT_S = 30.0  # well under the 120 s default of SPU's and SecretFlow's links
DEFAULT_START_TIMEOUT_S = 60.0

_PARTY_KEYS = {"address", "spu_address", "listen"}
_TOP_KEYS = {"parties", "protocol", "field", "timeout_s", "start_timeout_s", "tls"}


class ClusterError(ConfigError):
    """A cluster file that is missing, malformed or inconsistent."""


@dataclasses.dataclass(frozen=True)
class PartyAddress:
    name: str
    address: str  # host:port of the cross-silo channel
    spu_address: str  # host:port of the SPU link
    listen: str | None = None  # host to bind, default the address's host

    def listen_address(self, which: str) -> str:
        addr = self.address if which == "address" else self.spu_address
        if self.listen is None:
            return addr
        return f"{self.listen}:{_split(addr, self.name, which)[1]}"


@dataclasses.dataclass(frozen=True)
class TlsFiles:
    ca_cert: str
    cert: str
    key: str


@dataclasses.dataclass(frozen=True)
class Cluster:
    path: str
    parties: tuple[PartyAddress, ...]
    protocol: str | None
    field: str | None
    timeout_s: float
    start_timeout_s: float
    tls: Mapping[str, TlsFiles] | None  # party -> its files (only parties listed)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.parties)

    def party(self, name: str) -> PartyAddress:
        for p in self.parties:
            if p.name == name:
                return p
        raise ClusterError(
            f"party {name!r} is not in cluster file {self.path} "
            f"(parties: {', '.join(self.names)}); pass --party with one of them"
        )


def _split(addr: Any, party: str, key: str) -> tuple[str, int]:
    if not isinstance(addr, str) or addr.count(":") != 1:
        raise ClusterError(f"party {party!r}: {key} {addr!r} is not host:port")
    host, port = addr.split(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ClusterError(f"party {party!r}: {key} {addr!r} is not host:port (port 1-65535)")
    return host, int(port)


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for k, v in pairs:
        if k in seen:
            raise ClusterError(f"key {k!r} is listed twice; list each party once")
        seen[k] = v
    return seen


def load_cluster(path: str | os.PathLike[str]) -> Cluster:
    """Read and validate a cluster file (no network, no ports bound)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ClusterError(f"cluster file {path} does not exist; write one (see docs/parties.md)")
    try:
        with open(path, encoding="utf-8") as f:
            raw = json.load(f, object_pairs_hook=_no_duplicate_keys)
    except ClusterError as e:
        raise ClusterError(f"cluster file {path}: {e}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ClusterError(f"cluster file {path} is not valid JSON ({e})") from None
    try:
        return parse_cluster(raw, path)
    except ClusterError as e:
        raise ClusterError(f"cluster file {path}: {e}") from None


def parse_cluster(raw: Any, path: str = "<dict>") -> Cluster:
    if not isinstance(raw, dict):
        raise ClusterError("the top level must be an object with 'parties'")
    unknown = sorted(set(raw) - _TOP_KEYS)
    if unknown:
        raise ClusterError(f"unknown key(s) {unknown}; allowed: {', '.join(sorted(_TOP_KEYS))}")
    parties_raw = raw.get("parties")
    if not isinstance(parties_raw, dict) or not parties_raw:
        raise ClusterError("'parties' must be an object: name -> {address, spu_address}")
    parties = []
    seen_ports: dict[tuple[str, int], str] = {}
    for name, entry in parties_raw.items():
        if not name.isidentifier():
            raise ClusterError(f"party name {name!r} must be an identifier like 'alice'")
        if not isinstance(entry, dict):
            raise ClusterError(f"party {name!r} must be an object with address and spu_address")
        bad = sorted(set(entry) - _PARTY_KEYS)
        if bad:
            raise ClusterError(
                f"party {name!r}: unknown key(s) {bad}; allowed: address, spu_address, listen"
            )
        for key in ("address", "spu_address"):
            if key not in entry:
                raise ClusterError(f"party {name!r} has no {key} (host:port)")
            host, port = _split(entry[key], name, key)
            where = f"{name}.{key}"
            hp = (_canon(host), port)
            if hp in seen_ports:
                raise ClusterError(
                    f"port {entry[key]} is listed twice ({seen_ports[hp]} and {where}); "
                    "give every address its own port"
                )
            seen_ports[hp] = where
        listen = entry.get("listen")
        if listen is not None and (not isinstance(listen, str) or ":" in listen or not listen):
            raise ClusterError(
                f"party {name!r}: listen must be a host such as 0.0.0.0, got {listen!r}"
            )
        parties.append(PartyAddress(name, entry["address"], entry["spu_address"], listen))
    protocol = raw.get("protocol")
    if protocol is not None:
        protocol = str(protocol).upper()
        if protocol not in PROTOCOLS:
            raise ClusterError(f"unknown protocol {protocol!r}; use one of {', '.join(PROTOCOLS)}")
        if PROTOCOLS[protocol] != len(parties):
            raise ClusterError(
                f"protocol {protocol} needs {PROTOCOLS[protocol]} parties, the file lists "
                f"{len(parties)} ({', '.join(p.name for p in parties)})"
            )
    field = raw.get("field")
    if field is not None:
        field = str(field).upper()
        if field not in FIELDS:
            raise ClusterError(f"unknown field {field!r}; use one of {', '.join(FIELDS)}")
    timeouts = []
    for key, default in (
        ("timeout_s", DEFAULT_TIMEOUT_S),
        ("start_timeout_s", DEFAULT_START_TIMEOUT_S),
    ):
        v = raw.get(key, default)
        if isinstance(v, bool) or not isinstance(v, int | float) or not 1 <= v <= 3600:
            raise ClusterError(f"{key} must be a number of seconds in [1, 3600], got {v!r}")
        timeouts.append(float(v))
    tls = _parse_tls(raw.get("tls"), [p.name for p in parties], path)
    return Cluster(path, tuple(parties), protocol, field, timeouts[0], timeouts[1], tls)


def _canon(host: str) -> str:
    return "127.0.0.1" if host in ("localhost", "127.0.0.1") else host


def _parse_tls(raw: Any, names: list[str], path: str) -> dict[str, TlsFiles] | None:
    if raw is None:
        return None
    if (
        not isinstance(raw, dict)
        or not isinstance(raw.get("parties"), dict)
        or "ca_cert" not in raw
    ):
        raise ClusterError('\'tls\' must be {"ca_cert": file, "parties": {name: {cert, key}}}')
    base = os.path.dirname(os.path.abspath(path)) if path != "<dict>" else os.getcwd()

    def file(p: Any, what: str) -> str:
        if not isinstance(p, str) or not p:
            raise ClusterError(f"tls: {what} must be a file name")
        full = p if os.path.isabs(p) else os.path.join(base, p)
        if not os.path.isfile(full):
            raise ClusterError(f"tls: {what} {full} does not exist")
        return full

    ca = file(raw["ca_cert"], "ca_cert")
    out = {}
    for name, entry in raw["parties"].items():
        if name not in names:
            raise ClusterError(f"tls: party {name!r} is not in 'parties' ({', '.join(names)})")
        if not isinstance(entry, dict) or set(entry) != {"cert", "key"}:
            raise ClusterError(f"tls: party {name!r} needs exactly cert and key")
        out[name] = TlsFiles(
            ca, file(entry["cert"], f"{name}'s cert"), file(entry["key"], f"{name}'s key")
        )
    return out


def check_party(cluster: Cluster, party: str | None) -> PartyAddress:
    """This process's entry; its ports must be free to bind (one line naming the port)."""
    if not party:
        raise ClusterError(f"pass party= (one of {', '.join(cluster.names)}) with cluster=")
    me = cluster.party(party)
    if cluster.tls is not None:
        if party not in cluster.tls:
            raise ClusterError(
                f"cluster file {cluster.path}: tls has no cert/key for party {party!r}"
            )
        f = cluster.tls[party]
        try:
            check_files(party, f.ca_cert, f.cert, f.key)
        except TlsError as e:
            raise ClusterError(f"cluster file {cluster.path}: {e}") from None
    for which in ("address", "spu_address"):
        host, port = _split(me.listen_address(which), party, which)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((host, port))
            except OSError as e:
                raise ClusterError(
                    f"party {party!r} cannot listen on {host}:{port} ({which}): {e.strerror}; "
                    "stop what uses the port or change it in the cluster file (every party's copy)"
                ) from None
    return me


def reachable(address: str, timeout: float = 0.5) -> bool:
    """Whether something accepts TCP connections at host:port (used to name a lost party)."""
    host, port = address.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            return True
    except OSError:
        return False


def free_ports(n: int, host: str = "127.0.0.1") -> list[int]:
    """``n`` distinct TCP ports free on ``host`` right now (for loopback cluster files)."""
    socks, ports = [], []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((host, 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


def loopback_cluster(parties: list[str], **extra: Any) -> dict[str, Any]:
    """A cluster file's contents for ``parties`` on 127.0.0.1 with free ports."""
    ports = free_ports(2 * len(parties))
    out: dict[str, Any] = {
        "parties": {
            p: {
                "address": f"127.0.0.1:{ports[2 * i]}",
                "spu_address": f"127.0.0.1:{ports[2 * i + 1]}",
            }
            for i, p in enumerate(parties)
        }
    }
    out.update(extra)
    return out
