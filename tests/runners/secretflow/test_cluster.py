"""Cluster files: one line per mistake, before anything connects (runners/secretflow/cluster.py).

No process is started: these run in milliseconds.
"""

from __future__ import annotations

import json

import pytest

from ppml_torch.runners.secretflow.cluster import (
    ClusterError,
    check_party,
    free_ports,
    load_cluster,
    loopback_cluster,
)


def _two(**over):
    c = loopback_cluster(["alice", "bob"])
    c.update(over)
    return c


BAD_CLUSTERS = [
    ("missing file", None, "does not exist"),
    ("not JSON", "{parties: alice", "not valid JSON"),
    ("no parties", {"protocol": "SEMI2K"}, "'parties' must be an object"),
    ("unknown key", {"parties": {}, "partys": 1}, "unknown key"),
    (
        "party without spu_address",
        {
            "parties": {
                "alice": {"address": "127.0.0.1:1"},
                "bob": {"address": "127.0.0.1:2", "spu_address": "127.0.0.1:3"},
            }
        },
        "alice' has no spu_address",
    ),
    (
        "address not host:port",
        {"parties": {"alice": {"address": "alice", "spu_address": "127.0.0.1:3"}}},
        "is not host:port",
    ),
    (
        "port listed twice",
        {
            "parties": {
                "alice": {"address": "127.0.0.1:9000", "spu_address": "127.0.0.1:9001"},
                "bob": {"address": "localhost:9001", "spu_address": "127.0.0.1:9002"},
            }
        },
        "port localhost:9001 is listed twice (alice.spu_address and bob.address)",
    ),
    (
        "party listed twice",
        '{"parties": {"alice": {"address": "127.0.0.1:1", "spu_address": "127.0.0.1:2"}, '
        '"alice": {"address": "127.0.0.1:3", "spu_address": "127.0.0.1:4"}}}',
        "key 'alice' is listed twice",
    ),
    ("protocol vs party count", _two(protocol="ABY3"), "protocol ABY3 needs 3 parties"),
    ("unknown protocol", _two(protocol="SPDZ"), "unknown protocol 'SPDZ'"),
    ("bad timeout", _two(timeout_s=0), "timeout_s must be a number of seconds"),
    ("tls without files", _two(tls={"ca_cert": "nope.pem", "parties": {}}), "ca_cert"),
]


@pytest.mark.parametrize("what,content,message", BAD_CLUSTERS, ids=[b[0] for b in BAD_CLUSTERS])
def test_bad_cluster_file_is_one_line(tmp_path, what, content, message):
    path = tmp_path / "cluster.json"
    if content is not None:
        path.write_text(content if isinstance(content, str) else json.dumps(content))
    with pytest.raises(ClusterError) as e:
        load_cluster(path)
    text = str(e.value)
    assert "\n" not in text
    assert message in text, text


def test_party_not_in_file_and_port_in_use(tmp_path):
    import socket

    path = tmp_path / "cluster.json"
    path.write_text(json.dumps(loopback_cluster(["alice", "bob"])))
    cluster = load_cluster(path)
    with pytest.raises(ClusterError, match="party 'carol' is not in cluster file .* pass --party"):
        check_party(cluster, "carol")
    busy = socket.socket()
    busy.bind(("127.0.0.1", int(cluster.party("bob").spu_address.split(":")[1])))
    busy.listen()
    try:
        with pytest.raises(
            ClusterError, match=r"party 'bob' cannot listen on 127.0.0.1:\d+ \(spu_address\)"
        ):
            check_party(cluster, "bob")
    finally:
        busy.close()
    assert check_party(cluster, "alice").name == "alice"


def test_free_ports_are_distinct():
    ports = free_ports(6)
    assert len(set(ports)) == 6


def test_homework_cluster_file_checked_before_any_work(tmp_path, capsys):
    from ppml_torch.cli import main

    dup = tmp_path / "dup.json"
    dup.write_text(json.dumps(BAD_CLUSTERS[6][1]))
    cases = [
        (["--cluster", str(tmp_path / "nope.json"), "--party", "alice"], "does not exist"),
        (["--cluster", str(dup), "--party", "alice"], "is listed twice"),
    ]
    for extra, message in cases:
        assert main(["homework-mlp", "--runs", "secretflow:SEMI2K", *extra]) == 2
        out = capsys.readouterr()
        assert out.out == "" and message in out.err and len(out.err.splitlines()) == 1


def test_homework_cluster_and_party_go_together(capsys):
    from ppml_torch.cli import main

    assert main(["homework-mlp", "--runs", "secretflow:SEMI2K", "--party", "bob"]) == 2
    assert "--cluster and --party go together" in capsys.readouterr().err
