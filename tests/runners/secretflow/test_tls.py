"""TLS of a production session (runners/secretflow/tls.py): this party's files checked with
Python's ssl before anything starts, and brpc's handshake failures put in one line."""

from __future__ import annotations

import json
import time

import pytest

from ppml_torch.runners.secretflow import tls
from ppml_torch.runners.secretflow.cluster import (
    ClusterError,
    check_party,
    load_cluster,
    loopback_cluster,
)
from tests.runners.secretflow.certs import make_certs


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    d = tmp_path_factory.mktemp("certs")
    make_certs(d, "ca", ["alice", "bob"])
    make_certs(d, "ca", ["bob"], days=-1, suffix="-expired")
    make_certs(d, "rogue", ["bob"], suffix="-rogue")
    (d / "garbage.pem").write_text("not a certificate\n")
    return d


# (what, ca_cert, cert, key, the line says)
FILES = [
    ("expired certificate", "ca", "bob-expired", "bob-expired", "certificate has expired"),
    ("certificate of another CA", "ca", "bob-rogue", "bob-rogue", "unable to get local issuer"),
    ("a CA file that is no certificate", "garbage", "bob", "bob", "ca_cert"),
    ("a key of another certificate", "ca", "bob", "alice", "does not belong to its cert"),
    ("a certificate file that is garbage", "ca", "garbage", "bob", "is not a certificate"),
    ("a key file that is garbage", "ca", "bob", "garbage", "is not a private key"),
]


@pytest.mark.parametrize("what,ca,cert,key,says", FILES, ids=[f[0] for f in FILES])
def test_bad_files_are_one_line_naming_the_file(certs, what, ca, cert, key, says):
    """Catches a certificate problem that would surface only in brpc's handshake (an expired
    certificate or one of another CA: a start-up that waits for its bound), a garbage CA
    (a vague 'no reply'), a key of another certificate ('Failed to listen')."""
    pem = {"garbage": certs / "garbage.pem"}
    ca_file = pem.get(ca, certs / f"{ca}.pem")
    cert_file = pem.get(cert, certs / f"{cert}.pem")
    key_file = pem.get(key, certs / f"{key}.key")
    t0 = time.monotonic()
    with pytest.raises(tls.TlsError) as e:
        tls.check_files("bob", str(ca_file), str(cert_file), str(key_file))
    assert time.monotonic() - t0 < 2
    text = str(e.value)
    assert says in text and "\n" not in text, text
    named = {"ca_cert": ca_file, "cert": cert_file, "key": key_file}
    assert any(str(f) in text for f in named.values()), text


def test_good_files_pass(certs):
    tls.check_files("bob", str(certs / "ca.pem"), str(certs / "bob.pem"), str(certs / "bob.key"))


def test_check_party_checks_this_partys_files_only(certs, tmp_path):
    """Catches a party refused for another party's certificate (each checks its own: on real
    machines a party has only its own key), or the check not run before start-up."""
    c = loopback_cluster(["alice", "bob"])
    c["tls"] = {
        "ca_cert": str(certs / "ca.pem"),
        "parties": {
            "alice": {"cert": str(certs / "alice.pem"), "key": str(certs / "alice.key")},
            "bob": {"cert": str(certs / "bob-expired.pem"), "key": str(certs / "bob-expired.key")},
        },
    }
    path = tmp_path / "cluster.json"
    path.write_text(json.dumps(c))
    cluster = load_cluster(path)
    check_party(cluster, "alice")
    with pytest.raises(ClusterError, match=f"cluster file {path}: tls: bob's cert .* expired"):
        check_party(cluster, "bob")


BRPC = (
    "W1207 11:37:16.1 17356 1 external/com_github_brpc_brpc/src/brpc/socket.cpp:1] "
    "Fail to SSL_do_handshake: unexpected eof while reading\n"  # a peer going away: no cause
    "E1207 11:37:19.6 17356 3 external/com_github_brpc_brpc/src/brpc/socket.cpp:2082] "
    "Fail to SSL_do_handshake: error:0A000415:SSL routines::ssl/tls alert certificate expired\n"
)


def test_brpc_handshake_failures_in_its_own_words():
    """Catches a failure named in other words than brpc's, one that is not about a
    certificate taken for one, or the two sides' causes mixed up (the side whose certificate
    was refused hears an alert; the side that refused it says 'certificate verify failed')."""
    assert tls.handshake_failure("nothing\n" + BRPC.splitlines()[0]) is None
    words = tls.handshake_failure(BRPC)
    assert words == "ssl/tls alert certificate expired"
    refused = tls.explain(words, "bob", ["alice"], "/c/ca.pem", "/c/bob.pem")
    assert refused == (
        "party bob: party alice refused this party's certificate /c/bob.pem in the TLS "
        "handshake: brpc says 'ssl/tls alert certificate expired'; check it against the ca_cert "
        "of party alice's cluster file"
    )
    verify = tls.explain("certificate verify failed", "alice", ["bob", "carol"], "/ca", "/a")
    assert verify.startswith(
        "party alice: the certificate of another party failed this party's check in the TLS "
        "handshake: brpc says 'certificate verify failed'; it must be signed by ca_cert /ca"
    )
