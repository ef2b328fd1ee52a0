"""Network estimates from measured bytes, sends and compute time, and their bad inputs."""

from __future__ import annotations

import math

import pytest

from ppml_torch.profiling.network import NETWORKS, Network, NetworkError, as_network, part_terms
from ppml_torch.profiling.report import Cost, Measured, PartCost, ProfileReport


def part(row, nbytes, sends, seconds, parties=2, backward=False, kind="matmul"):
    per_b = tuple(nbytes // parties for _ in range(parties))
    per_s = tuple(sends // parties for _ in range(parties))
    cost = Cost(nbytes, sends, seconds)
    return PartCost(row, row, "Linear", kind, backward, cost, seconds, per_b, per_s, 1)


def make_report(parts) -> ProfileReport:
    total = Cost(sum(p.cost.bytes for p in parts), sum(p.cost.sends for p in parts),
                 sum(p.cost.seconds for p in parts))  # fmt: skip
    whole = Measured(total, 0.1, (total.bytes // 2,) * 2, (total.sends // 2,) * 2)
    return ProfileReport("toy", "spu:SEMI2K:FM64", "graph", False, ("alice", "bob"), whole,
                         tuple(parts), 0.0, 1.0, {"a": "Linear", "b": "ReLU"})  # fmt: skip


REPORT = make_report([part("a", 8_000_000, 20, 0.5), part("b", 1000, 400, 0.1, kind="comparisons")])


def test_presets_are_the_published_settings():
    assert NETWORKS["lan"] == Network("lan", 1e9, 0.5e-3)
    assert NETWORKS["wan"] == Network("wan", 100e6, 40e-3)
    assert NETWORKS["puma-lan"] == Network("puma-lan", 5e9, 1e-3)


def test_one_part_by_hand():
    """compute + the busiest party's bytes / bandwidth + its sends x rtt / 2."""
    t = part_terms(0.5, (3_000_000, 1_000_000), (10, 30), Network("x", 8e6, 0.02))
    assert t.compute_s == 0.5
    assert t.transfer_s == pytest.approx(3.0)
    assert t.latency_s == pytest.approx(30 * 0.01)
    assert t.seconds == pytest.approx(3.8)


@pytest.mark.parametrize("bandwidth", [1e7, 1e8, 1e9])
def test_estimate_grows_with_the_round_trip(bandwidth):
    times = [REPORT.estimate(bandwidth, rtt).seconds for rtt in (0.0, 1e-3, 1e-2, 4e-2, 0.1)]
    assert all(a < b for a, b in zip(times, times[1:], strict=False))


@pytest.mark.parametrize("rtt", [0.0, 1e-3, 4e-2])
def test_estimate_falls_with_bandwidth(rtt):
    times = [REPORT.estimate(b, rtt).seconds for b in (1e6, 1e7, 1e8, 1e9, 5e9)]
    assert all(a > b for a, b in zip(times, times[1:], strict=False))
    assert times[-1] >= REPORT.total_seconds  # never below the compute time


def test_presets_order_and_rows_add_up():
    lan, wan, puma = (REPORT.estimate(n) for n in ("lan", "wan", "puma-lan"))
    assert wan.seconds > lan.seconds
    for e in (lan, wan, puma):
        assert sum(t.seconds for t in e.rows.values()) == pytest.approx(e.seconds)
        assert e.terms.compute_s == pytest.approx(REPORT.total_seconds)
    assert "wan (100 Mbit/s, 40 ms round trip)" in wan.describe()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("moon",), "unknown network 'moon'; use one of lan, wan, puma-lan"),
        ((0, 0.01), "bandwidth must be a positive number"),
        ((-1e9, 0.01), "bandwidth must be a positive number"),
        ((math.nan, 0.01), "bandwidth must be a positive number"),
        ((1e9, -0.01), "round trip must be 0 or more seconds"),
        ((1e9,), "a bandwidth needs its round trip"),
        (("lan", 0.01), "has its own round trip"),
        ((True, 0.01), "network must be a preset name"),
    ],
)
def test_bad_networks_are_one_line_errors(args, message):
    with pytest.raises(NetworkError) as e:
        as_network(*args)
    assert message in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(NetworkError):
        REPORT.estimate(*args)
