"""Party faults, one table: each party started as a user would (``python -m ppml_torch
homework-mlp ... --cluster F --party P``), one fault planted, and for every party the exit code,
its one line and when it ended.  docs/parties.md's failures table is this table.

Bounds are generous (a loaded 2-core machine: a party's start-up alone takes 10-30 s here);
what each row catches is in its ``why``.  The parties' temporary folder is the test's own:
after each row it holds nothing but the log folders a line names as kept.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

import pytest

from ppml_torch.runners.secretflow.cluster import loopback_cluster, reachable
from tests.runners.secretflow.certs import make_certs
from tests.runners.secretflow.processes import ENV, ROOT, kill_group

pytestmark = [pytest.mark.slow, pytest.mark.secretflow]

RUN = ["-m", "ppml_torch", "homework-mlp", "--runs", "secretflow:SEMI2K", "--epochs", "1"]


@dataclasses.dataclass
class Ended:
    code: int
    lines: list[str]
    at: float  # time.monotonic() when it ended

    @property
    def errors(self) -> list[str]:
        return [x for x in self.lines if x.startswith("ppml-torch")]


def _run(tmp_path, clusters, extra=None, kill_bob_when_listening=False):
    """alice and bob, each with its cluster file; returns ({party: Ended}, start, kill time)."""
    (tmp_path / "tmp").mkdir(exist_ok=True)
    env = dict(ENV, TMPDIR=str(tmp_path / "tmp"))
    procs, out, t0 = {}, {}, time.monotonic()
    for p, c in clusters.items():
        path = tmp_path / f"cluster-{p}.json"
        path.write_text(json.dumps(c))
        args = [*RUN, *(extra or {}).get(p, []), "--cluster", str(path), "--party", p]
        procs[p] = subprocess.Popen(
            [sys.executable, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            cwd=ROOT,
            start_new_session=True,
        )

    def follow(p):
        lines = [line.rstrip("\n") for line in procs[p].stdout]
        out[p] = Ended(procs[p].wait(), lines, time.monotonic())

    threads = [threading.Thread(target=follow, args=(p,)) for p in procs]
    for t in threads:
        t.start()
    killed_at = None
    try:
        if kill_bob_when_listening:  # both connecting (alice's watchdog runs), then 1.5 s
            both = [clusters[p]["parties"][p]["address"] for p in ("alice", "bob")]
            while not all(map(reachable, both)) and procs["bob"].poll() is None:
                time.sleep(0.2)
            time.sleep(1.5)
            os.kill(procs["bob"].pid, signal.SIGKILL)
            killed_at = time.monotonic()
        for t in threads:
            t.join(timeout=300)
    finally:
        for proc in procs.values():
            kill_group(proc.pid)
    return out, t0, killed_at


def _cluster(**extra):
    return loopback_cluster(["alice", "bob"], timeout_s=5, start_timeout_s=30, **extra)


def _same(c):
    """Every party's copy of one cluster file."""
    return {"alice": c, "bob": c}


def _with_tls(tmp_path, c, bob_cert="bob", bob_key="bob", bob_ca="ca"):
    d = tmp_path / "certs"
    if not d.exists():
        d.mkdir()
        make_certs(d, "ca", ["alice", "bob"])
        make_certs(d, "ca", ["bob"], days=-1, suffix="-expired")
        make_certs(d, "rogue", ["bob"], suffix="-rogue")
        (d / "garbage.pem").write_text("not a certificate\n")
    pem = {"garbage": d / "garbage.pem"}

    def tls(ca, cert, key):
        return {
            "ca_cert": str(pem.get(ca, d / f"{ca}.pem")),
            "parties": {
                "alice": {"cert": str(d / "alice.pem"), "key": str(d / "alice.key")},
                "bob": {
                    "cert": str(pem.get(cert, d / f"{cert}.pem")),
                    "key": str(d / f"{key}.key"),
                },
            },
        }

    alice = dict(c, tls=tls("ca", "bob", "bob"))
    bob = dict(c, tls=tls(bob_ca, bob_cert, bob_key))
    return {"alice": alice, "bob": bob}


@dataclasses.dataclass
class Fault:
    name: str
    why: str  # what the row catches (the measurement)
    setup: object  # tmp_path -> (clusters, extra args)
    expect: dict  # party -> (exit code, text in its one line)
    within_s: float  # every party ended this long after the start (or after the kill)
    kill_bob: bool = False


def _differ_in_spu_port(tmp_path):
    c = _cluster()
    other = json.loads(json.dumps(c))
    host, port = other["parties"]["bob"]["spu_address"].split(":")
    other["parties"]["bob"]["spu_address"] = f"{host}:{int(port) + 1}"
    return {"alice": c, "bob": other}, None


FAULTS = [
    Fault(
        "fields differ",
        "FM64 vs FM128: the right line at 7.9 s, then every party waited to 96 s, printed a "
        "second line (start-up did not finish) and exited 3",
        lambda tmp: (
            _same(_cluster()),
            {"alice": ["--field", "FM64"], "bob": ["--field", "FM128"]},
        ),
        {
            "alice": (2, "party 'bob' runs with field FM128 but 'alice' with FM64"),
            "bob": (2, "party 'alice' runs with field FM64 but 'bob' with FM128"),
        },
        90,
    ),
    Fault(
        "cluster files differ in one port",
        "as for the fields: exit 2 from every party, within seconds of the comparison",
        _differ_in_spu_port,
        {
            "alice": (2, "the cluster files of parties 'bob' and 'alice' differ: bob at"),
            "bob": (2, "the cluster files of parties 'alice' and 'bob' differ: bob at"),
        },
        90,
    ),
    Fault(
        "bob killed during start-up",
        "alice said 'party bob did not start within 90 s' at +91.6 s",
        lambda tmp: (_same(_cluster()), None),
        {"alice": (3, "party bob stopped")},  # during start-up: in 3 s; after: timeout_s 5 s
        5 + 10,
        kill_bob=True,
    ),
    Fault(
        "expired certificate",
        "94 s, then a generic start-up message (brpc's log said 'certificate expired' in 1 s)",
        lambda tmp: (_with_tls(tmp, _cluster(), "bob-expired", "bob-expired"), None),
        {"bob": (2, "bob's cert"), "alice": (3, "party bob did not start within 35 s")},
        90,
    ),
    Fault(
        "certificate of another CA",
        "as for the expired certificate",
        lambda tmp: (_with_tls(tmp, _cluster(), "bob-rogue", "bob-rogue"), None),
        {"bob": (2, "unable to get local issuer certificate"), "alice": (3, "did not start")},
        90,
    ),
    Fault(
        "cluster files name different CAs",
        "only a handshake shows it: brpc's words from both sides, not the start-up bound",
        lambda tmp: (_with_tls(tmp, _cluster(), "bob-rogue", "bob-rogue", "rogue"), None),
        {"alice": (2, "brpc says '"), "bob": (2, "brpc says '")},
        90,
    ),
    Fault(
        "a CA file that is garbage",
        "'no reply within 60 s' after 4.9 s",
        lambda tmp: (_with_tls(tmp, _cluster(), bob_ca="garbage"), None),
        {"bob": (2, "holds no certificate OpenSSL can read"), "alice": (3, "did not start")},
        90,
    ),
    Fault(
        "a key of another certificate",
        "'Failed to listen on ... Fail to initialize channel'",
        lambda tmp: (_with_tls(tmp, _cluster(), bob_key="alice"), None),
        {"bob": (2, "does not belong to its cert"), "alice": (3, "did not start")},
        90,
    ),
]


@pytest.mark.parametrize("fault", FAULTS, ids=[f.name for f in FAULTS])
def test_a_party_fault_is_one_line_per_party_with_its_exit_code_in_time(tmp_path, fault):
    clusters, extra = fault.setup(tmp_path)
    out, t0, killed_at = _run(tmp_path, clusters, extra, fault.kill_bob)
    since = killed_at if fault.kill_bob else t0
    report = {p: (e.code, e.errors, round(e.at - since, 1)) for p, e in out.items()}
    print(f"{fault.name}: {report}")
    kept = []
    for p, (code, says) in fault.expect.items():
        e = out[p]
        assert e.code == code, (p, e.code, e.lines[-5:])
        assert len(e.errors) == 1 and says in e.errors[0], (p, e.lines[-5:])
        assert e.at - since < fault.within_s, (p, e.at - since)
        kept += re.findall(r"logs kept in (\S+)\)", e.errors[0])
    want = sorted(os.path.basename(k) for k in kept)
    end = time.monotonic() + 10  # each party's janitor removes its folder a moment after

    def ours():
        return sorted(n for n in os.listdir(tmp_path / "tmp") if n.startswith("ppml-torch-"))

    while ours() != want and time.monotonic() < end:
        time.sleep(0.2)
    assert ours() == want
