"""Mutual TLS of a production session: this party's files checked before anything starts, and
brpc's handshake failures named while the parties connect.

Both links (the cross-silo channel and SPU's) are brpc with OpenSSL.  A certificate problem
there does not fail anything: brpc logs ``Fail to SSL_do_handshake: ...`` and retries, every
port stays open, and start-up would wait for its bound.  So:

* :func:`check_files` (before anything connects): this party's CA file, certificate and key
  read by Python's ``ssl`` (OpenSSL too), the key must belong to the certificate, and the
  certificate must pass the check the other parties will make (signed by the ``ca_cert``, not
  expired, not yet valid): an in-memory handshake between two ``ssl`` objects;
* :func:`handshake_failure` / :func:`explain` (while starting): what the other parties think of
  the certificates, which only a real handshake shows (their ``ca_cert`` may differ from this
  party's), found in brpc's log lines by :class:`~.supervision.Watchdog`.
"""

from __future__ import annotations

import re
import ssl

from ..config import ConfigError


class TlsError(ConfigError):
    """A TLS file that the other parties' OpenSSL would refuse (cluster.py names the cluster
    file around it)."""


# brpc: "socket.cpp:2082] Fail to SSL_do_handshake: error:0A000086:SSL routines::certificate
# verify failed"; only certificate problems (not e.g. a peer that closed the connection)
_HANDSHAKE = re.compile(r"Fail to SSL_do_handshake: (?:error:[0-9A-F]+:)?(?:SSL routines::)?(.*)")
_CERTIFICATE = ("certificate", "unknown ca", "unsupported", "no shared cipher", "handshake failure")


def check_files(party: str, ca_cert: str, cert: str, key: str) -> None:
    """This party's TLS files as the other parties' OpenSSL will see them (one line if not)."""
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.check_hostname = False  # certificates name parties, not the hosts they run on
    try:
        client.load_verify_locations(ca_cert)
    except (ssl.SSLError, ValueError) as e:
        raise TlsError(
            f"tls: ca_cert {ca_cert} holds no certificate OpenSSL can read ({_reason(e)}); "
            "give the CA's certificate in PEM"
        ) from None
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cert)
    except (ssl.SSLError, ValueError) as e:
        raise TlsError(
            f"tls: {party}'s cert {cert} is not a certificate OpenSSL can read ({_reason(e)}); "
            "give its certificate in PEM"
        ) from None
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        server.load_cert_chain(cert, key)
    except ssl.SSLError as e:
        why = _reason(e)
        if "KEY_VALUES_MISMATCH" in str(e) or "mismatch" in why:
            raise TlsError(
                f"tls: {party}'s key {key} does not belong to its cert {cert} (OpenSSL: "
                f"{why}); give the key the certificate was made for"
            ) from None
        raise TlsError(
            f"tls: {party}'s key {key} is not a private key OpenSSL can read ({why}); "
            "give the certificate's key in PEM, without a passphrase"
        ) from None
    problem = _handshake(server, client)
    if problem is not None:
        code, words = problem
        hint = {
            10: "renew it",
            9: "check this machine's clock and the certificate's dates",
        }.get(code, "sign it with the CA of ca_cert, or give that CA's certificate as ca_cert")
        raise TlsError(
            f"tls: {party}'s cert {cert} fails the other parties' check: {words} (OpenSSL, "
            f"against ca_cert {ca_cert}); {hint}"
        )


def _handshake(server: ssl.SSLContext, client: ssl.SSLContext) -> tuple[int, str] | None:
    """A TLS handshake in memory: (OpenSSL's verify code, its words) if the client refuses
    the server's certificate, else ``None``."""
    to_server, to_client = ssl.MemoryBIO(), ssl.MemoryBIO()
    s = server.wrap_bio(to_server, to_client, server_side=True)
    c_in, c_out = ssl.MemoryBIO(), ssl.MemoryBIO()
    c = client.wrap_bio(c_in, c_out, server_side=False)
    for _ in range(8):
        for end in (c, s):
            try:
                end.do_handshake()
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLCertVerificationError as e:
                return e.verify_code, e.verify_message
            except ssl.SSLError:
                return None  # not a certificate problem (brpc will say, if anything)
        to_server.write(c_out.read())
        c_in.write(to_client.read())
    return None


def _reason(e: Exception) -> str:
    reason = getattr(e, "reason", None)
    text = str(e)
    return (reason.lower().replace("_", " ") if isinstance(reason, str) else text)[:120]


def handshake_failure(log_text: str) -> str | None:
    """brpc's own words for the first failed handshake over a certificate in ``log_text``."""
    for m in _HANDSHAKE.finditer(log_text):
        words = m.group(1).strip()
        if any(k in words.lower() for k in _CERTIFICATE):
            return words
    return None


def explain(words: str, party: str, others: list[str], ca_cert: str, cert: str) -> str:
    """The one line for brpc's ``words``, from party ``party``'s side."""
    who = f"party {others[0]}" if len(others) == 1 else "another party"
    low = words.lower()
    if "alert" in low:  # the other side refused this party's certificate and said why
        return (
            f"party {party}: {who} refused this party's certificate {cert} in the TLS handshake: "
            f"brpc says '{words}'; check it against the ca_cert of {who}'s cluster file"
        )
    return (
        f"party {party}: the certificate of {who} failed this party's check in the TLS "
        f"handshake: brpc says '{words}'; it must be signed by ca_cert {ca_cert} and be valid "
        "now (every party's cluster file must name the same CA)"
    )
