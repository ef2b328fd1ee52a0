"""What a production session says when the multi-party runtime fails: one line naming the party.

SecretFlow, SPU and brpc fail with long native messages (timeouts, closed connections, a
peer's exception); :meth:`Failures.guard` turns each into :class:`PartyLostError`, naming the
party whose ports are closed, or the party whose exception arrived, or the wait that ran out.
Settings that disagree (:class:`~ppml_torch.runners.config.ConfigError`) pass through as they
are.  When the cause may be in this party's own log (a wait that ran out with every port open,
an error of the runtime itself), the logs are kept and the line names their folder.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from ..config import ConfigError
from .cluster import Cluster
from .supervision import missing_parties


class PartyLostError(ConfigError):
    """Another party stopped answering (died, was killed, or its network is gone).

    After this error the SecretFlow runtime of this process cannot be used any more; the
    process ends with exit code 3 as soon as its main program is done, even though SecretFlow's
    waiting threads would keep the interpreter from ending
    (:func:`~.supervision.exit_at_shutdown`).
    """


class Failures:
    """Failure translation for one party of ``cluster``; ``on_lost`` runs before each error
    is built (the supervisor stops watching: the runtime is unusable now); ``keep_logs()``
    keeps this party's logs and returns their folder."""

    def __init__(
        self,
        cluster: Cluster,
        party: str,
        on_lost: Callable[[], None],
        keep_logs: Callable[[], str] | None = None,
    ):
        self.cluster = cluster
        self.party = party
        self.lost = False
        self._on_lost = on_lost
        self._keep_logs = keep_logs

    @contextlib.contextmanager
    def guard(self, what: str, start: bool = False) -> Iterator[None]:
        """Run a step of the multi-party runtime; its failure is one :class:`PartyLostError`
        line about ``what`` (``start``: a start-up step, bound by ``start_timeout_s``)."""
        if self.lost:
            raise PartyLostError("this session lost a party earlier; open a new one")
        try:
            yield
        except (ConfigError, KeyboardInterrupt):
            raise
        except Exception as e:  # SecretFlow/SPU/brpc errors: translate into one line
            raise self.error(what, e, start) from e

    def error(self, what: str, cause: BaseException | None, start: bool = False) -> PartyLostError:
        """One line for a failure of the multi-party runtime: who is gone, or what failed."""
        self._on_lost()
        self.lost = True
        missing = missing_parties(self.cluster, self.party)
        limit = self.cluster.start_timeout_s if start else self.cluster.timeout_s
        wait = f"within {limit:g} s ({'start_timeout_s' if start else 'timeout_s'})"
        if missing:
            who = ", ".join(missing)
            verb = "did not start" if start else "stopped answering"
            return PartyLostError(
                f"party {who} {verb} during {what}: no reply {wait} and nothing listens on its "
                "ports; check that it runs (its own output says why it stopped)"
            )
        inner = getattr(cause, "_cause", None) or cause
        text = " ".join(str(inner).split()) if inner is not None else "no reply"
        text = text.removeprefix("what:").strip()
        src = getattr(cause, "_src_party", None)
        if src is not None:
            return PartyLostError(f"party {src} failed during {what}: {text[:200]}")
        low = text.lower()
        if any(k in low for k in ("timeout", "timed out", "connect", "closed", "eof")):
            others = [p for p in self.cluster.names if p != self.party]
            who = f"party {others[0]}" if len(others) == 1 else "another party"
            at = max(0, low.find("timeout") - 10)  # from just before "timeout", if it is there
            detail = text[at:][:120] if "timeout" in low else text[:120]
            return PartyLostError(
                f"no reply from {who} during {what} {wait}, though its ports are open (stalled, "
                f"or a different program/cluster file?): {detail.strip()}{self._kept()}"
            )
        return PartyLostError(
            f"{what} failed in party {self.party}: {type(inner).__name__}: {text[:200]}"
            + self._kept()
        )

    def _kept(self) -> str:
        if self._keep_logs is None:
            return ""
        return f" (this party's logs kept in {self._keep_logs()})"
