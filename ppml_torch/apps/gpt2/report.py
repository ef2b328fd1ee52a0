"""The GPT-2 table and its lines, written once for both modes (runs side by side in one
process; one process per party)."""

from __future__ import annotations

from typing import Any

from ...runners.roles import Roles

TIMES = "prompt: the prompt step (first new token); token: median time per further token"


def prompt_line(prompt: str, ids: list[int], tokens: int) -> str:
    return f"prompt: {prompt!r} = {len(ids)} ids {ids}; {tokens} new tokens, greedy"


def privacy_line(r: Roles) -> str:
    return (
        f"weights: {r.weights}'s secret, shared once; prompt: {r.data}'s secret; KV cache "
        f"secret, its position public; argmax under MPC; ids revealed to {r.data} only, at "
        "the end"
    )


def approx_line(n_candidates: int | None, *, side_by_side: bool) -> str:
    """``--approx``: what changes (side by side: also that torch runs stay exact)."""
    if n_candidates is None:
        among = "the whole vocabulary"
    elif side_by_side:
        among = f"the checkpoint's {n_candidates} candidate tokens (candidates.json)"
    else:
        among = f"{n_candidates} candidate tokens"
    line = f"approx: PUMA's piecewise GeLU, argmax over {among}"
    return line + ", in every session run (torch runs are exact)" if side_by_side else line


class Table:
    """One row per run and route: the share, prompt-step and per-token times, compilation
    and communication; ``agree`` adds a column comparing the ids with the first row's;
    ``sent_by`` names the party whose bytes are counted (one process per party)."""

    def __init__(self, *, agree: bool, sent_by: str | None = None) -> None:
        self.agree = agree
        self.sent_by = sent_by
        self._ref: Any = None

    @property
    def header(self) -> str:
        comm = "communication" + (f" (sent by {self.sent_by})" if self.sent_by else "")
        agree = f"{'agree':<6} " if self.agree else ""
        return (
            f"{'run':<24} {'route':<6} {agree}{'share':>6} {'prompt':>7} {'token':>7} "
            f"{'compile':>8}  {comm}"
        )

    def _agreement(self, ids: Any) -> str:
        """``ref`` for the first row, then ``yes`` or ``no@k`` (the first differing token)."""
        import numpy as np

        if self._ref is None:
            self._ref = ids
            return "ref"
        diff = np.nonzero((ids != self._ref).any(axis=0))[0]
        return "yes" if not diff.size else f"no@{int(diff[0])}"

    def row(self, run: str, route: str, g: Any) -> str:
        """The row of one :class:`~ppml_torch.generation.Generation`."""
        comp = "n/a" if g.compile_s is None else f"{g.compile_s:.1f}s"
        step = "-" if g.step_s is None else f"{g.step_s:.3f}s"
        comm = g.comm.describe() if g.comm else "-"
        share = g.weights_put.run_s if g.weights_put else 0.0
        agree = f"{self._agreement(g.ids):<6} " if self.agree else ""
        return (
            f"{run:<24} {route:<6} {agree}{share:>5.2f}s {g.prefill.run_s:>6.2f}s {step:>7} "
            f"{comp:>8}  {comm}"
        )

    def torch_row(self, ids: Any, per_token_s: float) -> str:
        """The row of torch eager (no session: no share, prompt step or communication)."""
        return (
            f"{'torch':<24} {'-':<6} {self._agreement(ids):<6} {'-':>6} {'-':>7} "
            f"{per_token_s:>6.3f}s {'-':>8}  -"
        )


def table_note(r: Roles, *, party: str | None = None) -> str:
    """What the columns mean (``party``: one process per party, this party's figures)."""
    if party is None:
        return (
            f"share: {r.weights}'s weights secret-shared (once); {TIMES}; communication: all "
            "steps, all parties"
        )
    return (
        f"share: {r.weights}'s weights secret-shared; {TIMES}; all three are wall times in "
        f"{party}'s process (a transfer still arriving counts in the step that waits for it); "
        f"communication: what {party} sent, all steps"
    )


def ids_line(label: str, ids: Any, tokenizer: Any) -> str:
    """The ids of one run and their text."""
    row = ids[0].tolist()
    return f"{label:<31} ids {row}  text {tokenizer.decode(row)!r}"
