"""Throwaway certificates for the TLS tests (imported by them, not collected): a CA and
certificates signed by it, made with the ``openssl`` command line."""

from __future__ import annotations

import subprocess


def _sh(d, *args):
    subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=d)


def make_certs(d, ca_name: str, parties, days: int = 1, suffix: str = "") -> None:
    """A CA ``d/ca_name.pem`` (made if missing) and ``d/<party><suffix>.pem`` + ``.key`` per
    party, signed by it, valid for ``days`` (``-1``: already expired)."""
    if not (d / f"{ca_name}.pem").exists():
        _sh(
            d,
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            f"{ca_name}.key",
            "-out",
            f"{ca_name}.pem",
            "-days",
            "1",
            "-subj",
            f"/CN={ca_name}",
        )
    for p in parties:
        name = f"{p}{suffix}"
        _sh(
            d,
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            f"{name}.key",
            "-out",
            f"{name}.csr",
            "-subj",
            f"/CN={p}",
        )
        _sh(
            d,
            "x509",
            "-req",
            "-in",
            f"{name}.csr",
            "-CA",
            f"{ca_name}.pem",
            "-CAkey",
            f"{ca_name}.key",
            "-CAcreateserial",
            "-out",
            f"{name}.pem",
            "-days",
            str(days),
        )
