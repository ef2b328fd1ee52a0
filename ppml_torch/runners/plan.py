"""One way for a feature to take "an open session or a run spec": :func:`session_plan`.

``fit``, ``predict``, ``generate`` and ``check_equivalence`` accept either an open
:class:`~ppml_torch.runners.base.Session` (borrowed: the caller keeps it open) or a run-spec
string like ``"spu:ABY3"`` (opened for the call and closed after it).  Before any work they
need the same facts: the parties, whether the run is under MPC and at which fixed point, and
a calibration's verdict.  A :class:`SessionPlan` answers them without starting anything;
:meth:`SessionPlan.borrow` then gives the session, closing only what it opened.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from typing import Any

from .base import Session
from .config import ConfigError, SessionConfig, resolve, session_fraction_bits
from .runspec import RunSpec, parse_run


@dataclasses.dataclass(frozen=True)
class SessionPlan:
    """The session a feature will run in, known before anything starts.

    ``session`` is the caller's open session (borrowed), or ``None`` when ``spec`` is opened
    by :meth:`borrow` and closed after it.
    """

    config: SessionConfig
    session: Session | None
    spec: RunSpec | None
    error: type[Exception] = ConfigError  # the feature's own error type for bad arguments

    @property
    def parties(self) -> tuple[str, ...]:
        return self.config.parties

    @property
    def local_parties(self) -> tuple[str, ...]:
        """The parties whose data this process holds (every party, except one process per
        party in production mode)."""
        return self.session.local_parties if self.session is not None else self.config.parties

    @property
    def one_process_per_party(self) -> bool:
        return not set(self.local_parties) >= set(self.parties)

    @property
    def is_mpc(self) -> bool:
        return self.config.backend != "cpu"

    @property
    def fixed_point(self) -> tuple[str, int] | None:
        """``(field, fraction bits)`` under MPC, ``None`` in plaintext."""
        if not self.is_mpc:
            return None
        return self.config.field, session_fraction_bits(self.config)

    def gate(self, calibration: Any) -> None:
        """Refuse, before any session work, a run a calibration report predicts will overflow
        (judged at this session's field and fraction bits; plaintext runs are not judged)."""
        if calibration is None:
            return
        if not callable(getattr(calibration, "check", None)):
            raise self.error(
                f"calibration must be a report of ppml_torch.calibrate (or calibrate_function), "
                f"got {type(calibration).__name__} {calibration!r:.60}"
            )
        fp = self.fixed_point
        if fp is not None:
            calibration.check(field=fp[0], fraction_bits=fp[1])

    @contextlib.contextmanager
    def borrow(self) -> Iterator[Session]:
        """The session: the caller's (left open), or the spec's (opened here, closed after)."""
        if self.session is not None:
            yield self.session
            return
        assert self.spec is not None
        s = self.spec.open()
        try:
            yield s
        finally:
            s.close()


def session_plan(
    session: Session | str,
    *,
    error: type[Exception] = ConfigError,
    example: str = "spu:SEMI2K",
    torch_error: str = "session 'torch' is torch eager and has no session; use cpu, spu or secretflow",
) -> SessionPlan:
    """The :class:`SessionPlan` of ``session`` (an open session or a run spec), checked.

    ``error`` is the feature's own error type for a value that is neither; ``example`` the run
    spec its message suggests; ``torch_error`` the message for the run spec ``torch`` (torch
    eager has no session).
    """
    if isinstance(session, Session):
        return SessionPlan(session.config, session, None, error)
    if not isinstance(session, str):
        raise error(
            f"session must be an open session or a run spec like {example!r}, got "
            f"{type(session).__name__}"
        )
    spec = parse_run(session)
    if spec.is_torch:
        raise error(torch_error)
    return SessionPlan(resolve(spec.backend, spec.protocol, spec.field), None, spec, error)
