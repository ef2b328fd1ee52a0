"""``ppml-torch gpt2`` in one process: every run and route side by side, ids compared."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from ...runners.roles import roles
from ...runners.runspec import RunSpec
from . import report
from .job import Job, build, candidates


def run_side_by_side(job: Job, runs: Sequence[RunSpec], out: Callable[[str], None]) -> bool:
    """Generate on every run (``torch``: torch eager) and route; ``out`` gets the lines.

    The weights and the prompt are the default parties' (alice's and bob's: every session
    opened here has them).  Every input is checked before the first run.  Returns whether
    every run gave the same ids."""
    import numpy as np

    from ...generation import GenerationError, generate, torch_greedy
    from ...generation.checkpoint import positions_of
    from ...generation.checks import check_lengths

    job.check_tokens()
    job.check_prompt()
    spec = job.model.resolved()
    built = build(spec)
    ids = built.tokenizer.encode(job.prompt)
    if not ids:
        raise GenerationError(f"--prompt {job.prompt!r} encodes to no tokens")
    check_lengths(len(ids), job.tokens, positions_of(built.model), None)
    prompt = np.asarray([ids], dtype=np.int32)
    r = roles()

    out(f"model: {built.what}")
    out(report.prompt_line(job.prompt, ids, job.tokens))
    out(report.privacy_line(r))
    cand = candidates(spec, job.approx)
    if job.approx:
        out(report.approx_line(None if cand is None else len(cand), side_by_side=True))
    table = report.Table(agree=True)
    out(table.header)
    out("-" * len(table.header))
    results: list[tuple[str, np.ndarray]] = []
    for run in runs:
        if run.is_torch:
            t0 = time.perf_counter()
            got, _ = torch_greedy(built.model, prompt, job.tokens)
            per = (time.perf_counter() - t0) / job.tokens
            out(table.torch_row(got, per))
            results.append(("torch", got))
            continue
        with run.open() as s:
            for route in job.routes:
                g = generate(
                    built.model, prompt, job.tokens, session=s, route=route, approx=job.approx,
                    candidates=cand,
                )  # fmt: skip
                out(table.row(str(run), route, g))
                results.append((f"{run} {route}", g.ids))
    out(report.table_note(r))
    for label, got in results:
        out(report.ids_line(label, got, built.tokenizer))
    same = all(np.array_equal(got, results[0][1]) for _, got in results)
    out(f"all runs agree: {'yes' if same else 'NO'}")
    return same
