"""What one ``generate`` returns: :class:`Generation` (the ids and what they cost)."""

from __future__ import annotations

import dataclasses
import statistics
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from ppml_torch.runners import RunReport
    from ppml_torch.runners.comm import CommStats


@dataclasses.dataclass(frozen=True)
class Generation:
    """What one generation produced and cost.

    ``ids``: the new token ids ``(B, N)`` (revealed to the prompt's owner; ``None`` in every
    other party's process when each party runs in its own process).  ``reports``: the
    session's records of this generation, in order (puts, prefill, steps).  ``puts``: the
    ``(report what, owner)`` of every value put in (``"public"`` for cache positions).
    """

    ids: np.ndarray | None
    route: str
    session: str
    reports: tuple[RunReport, ...]
    puts: tuple[tuple[str, str], ...]
    weights_put: RunReport | None  # None when the weights were put before (a reused Decoder)
    prepare_s: float  # conversion / tracing set-up before anything is shared
    wall_s: float  # from the weights' put to the revealed ids

    def _calls(self, name: str) -> list[RunReport]:
        return [r for r in self.reports if r.what == name]

    @property
    def prefill(self) -> RunReport:
        return self._calls("prefill")[0]

    @property
    def steps(self) -> list[RunReport]:
        return self._calls("decode_step")

    @property
    def compile_s(self) -> float | None:
        c = [r.compile_s for r in self.reports]
        return None if any(x is None for x in c) else sum(c)

    @property
    def step_s(self) -> float | None:
        """Median run time of one decode step (one generated token after the first)."""
        return statistics.median(r.run_s for r in self.steps) if self.steps else None

    @property
    def comm(self) -> CommStats | None:
        comms = [r.comm for r in self.reports if r.comm is not None]
        if not comms:
            return None
        out = comms[0]
        for c in comms[1:]:
            out = out + c
        return out

    def describe(self) -> str:
        """One row of what the generation cost, then the ids (``print(generation)``)."""
        header = ("route", "session", "share", "prompt", "token", "compile", "communication")
        step, comp, comm = self.step_s, self.compile_s, self.comm
        row = (
            self.route,
            self.session,
            "-" if self.weights_put is None else f"{self.weights_put.run_s:.2f}s",
            f"{self.prefill.run_s:.2f}s",
            "-" if step is None else f"{step:.3f}s",
            "n/a" if comp is None else f"{comp:.1f}s",
            "-" if comm is None else comm.describe(),
        )
        widths = [max(len(h), len(c)) for h, c in zip(header, row, strict=True)]
        lines = [
            "  ".join(x.ljust(w) for x, w in zip(line, widths, strict=True)).rstrip()
            for line in (header, row)
        ]
        ids = "not received here" if self.ids is None else str(np.asarray(self.ids).tolist())
        return "\n".join([*lines, f"ids: {ids}"])

    def __str__(self) -> str:
        return self.describe()
