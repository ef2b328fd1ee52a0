"""What a measured program would take between machines: bandwidth, round trips, compute.

A profile measures, per part of the program, the run time in one process (every party on this
machine, messages through memory), the bytes each party sent and the sends each party made.
Between machines a part takes

    compute + max over parties (bytes sent * 8 / bandwidth) + rounds * rtt / 2

* compute: the part's measured time in one process;
* bandwidth: each party's own link (its machine's network card) carries what it sends, so
  the party that sends most sets the transfer time; parties send at the same time;
* rounds: SPU counts sends, not rounds.  In a round of SEMI2K, CHEETAH or ABY3 every party
  sends its messages and waits for its peers' (no party waits for an answer to its own
  message before sending), and each party sends at least one message per round, so the
  largest count of sends of one party bounds the rounds from above; SEMI2K and ABY3 send one
  message per party per round in most rounds (measured: a 2-party product is 1 send per party,
  an ABY3 comparison 8), so the bound is close.  A round costs one one-way delay, rtt / 2.

Parts run one after the other (each waits for its inputs), so the estimate of a program is
the sum over its parts; it ignores that a real network overlaps a part's transfer with the
next part's compute, and TCP's slow start on the first messages.  ``bench/bench_network.py``
checks it against two and three processes joined through links limited with ``tc`` and a
relay that delays every message; docs/profile.md has the measured against estimated figures.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

from ..errors import PpmlError


class NetworkError(PpmlError, ValueError):
    """A network preset that does not exist, or a bandwidth or round trip that cannot be."""


@dataclasses.dataclass(frozen=True)
class Network:
    """A network between the parties: each party's link bandwidth and the round-trip time."""

    name: str
    bandwidth_bits_per_s: float
    rtt_s: float

    def describe(self) -> str:
        return (
            f"{self.name} ({_rate(self.bandwidth_bits_per_s)}, {self.rtt_s * 1e3:g} ms round trip)"
        )


# published settings: CrypTen/PUMA-style LAN and WAN, and PUMA's own LAN (5 Gbit/s, 1 ms)
NETWORKS: dict[str, Network] = {
    "lan": Network("lan", 1e9, 0.5e-3),
    "wan": Network("wan", 100e6, 40e-3),
    "puma-lan": Network("puma-lan", 5e9, 1e-3),
}


def as_network(network: str | Network | float, rtt_s: float | None = None) -> Network:
    """A preset name, a :class:`Network`, or a bandwidth in bits/s with ``rtt_s``."""
    if isinstance(network, Network):
        if rtt_s is not None:
            raise NetworkError("give either a network or a bandwidth with rtt_s, not both")
        return _checked(network)
    if isinstance(network, str):
        if network not in NETWORKS:
            raise NetworkError(
                f"unknown network {network!r}; use one of {', '.join(NETWORKS)} or "
                "estimate(bandwidth_bits_per_s, rtt_s)"
            )
        if rtt_s is not None:
            raise NetworkError(f"network {network!r} has its own round trip; drop rtt_s")
        return NETWORKS[network]
    if isinstance(network, bool) or not isinstance(network, (int, float)):
        raise NetworkError(
            f"network must be a preset name ({', '.join(NETWORKS)}) or a bandwidth in bits/s, "
            f"got {type(network).__name__}"
        )
    if rtt_s is None:
        raise NetworkError(
            "a bandwidth needs its round trip: estimate(bandwidth_bits_per_s, rtt_s)"
        )
    return _checked(Network("custom", network, rtt_s))


def _checked(net: Network) -> Network:
    b, r = net.bandwidth_bits_per_s, net.rtt_s
    if not (isinstance(b, (int, float)) and math.isfinite(b) and b > 0):
        raise NetworkError(f"bandwidth must be a positive number of bits per second, got {b!r}")
    if not (isinstance(r, (int, float)) and math.isfinite(r) and r >= 0):
        raise NetworkError(f"round trip must be 0 or more seconds, got {r!r}")
    return net


def _rate(bits_per_s: float) -> str:
    for unit, scale in (("Gbit/s", 1e9), ("Mbit/s", 1e6), ("kbit/s", 1e3)):
        if bits_per_s >= scale:
            return f"{bits_per_s / scale:g} {unit}"
    return f"{bits_per_s:g} bit/s"


@dataclasses.dataclass(frozen=True)
class Terms:
    """One part's (or a sum of parts') estimate, split into its three terms."""

    compute_s: float = 0.0
    transfer_s: float = 0.0
    latency_s: float = 0.0

    @property
    def seconds(self) -> float:
        return self.compute_s + self.transfer_s + self.latency_s

    def __add__(self, other: Terms) -> Terms:
        return Terms(
            self.compute_s + other.compute_s,
            self.transfer_s + other.transfer_s,
            self.latency_s + other.latency_s,
        )


def part_terms(
    seconds: float, party_bytes: Sequence[int], party_sends: Sequence[int], net: Network
) -> Terms:
    """The estimate of one part from its measured time and each party's bytes and sends."""
    most_bytes = max(party_bytes, default=0)
    rounds = max(party_sends, default=0)
    return Terms(seconds, most_bytes * 8 / net.bandwidth_bits_per_s, rounds * net.rtt_s / 2)
