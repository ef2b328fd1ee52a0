"""``ppml-torch gpt2`` with each party in its own process (SecretFlow production mode).

The roles come from the cluster file's parties, in order (:func:`ppml_torch.runners.roles`):
the first reads the weights, the second the prompt and receives the ids, a third holds
shares only.  Every process builds the same architecture (a checkpoint's ``config.json``, or
the seeded random model) and prints its own figures (timings, the bytes it sent).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ...runners.roles import Roles, roles
from ...runners.runspec import RunSpec
from . import report
from .job import Job, build, candidates, public_settings

EXAMPLE_RUN = "secretflow:ABY3"


def party_run(job: Job, runs: Sequence[RunSpec]) -> RunSpec:
    """The one run of a one-process-per-party generation, checked with the public arguments
    every party checks (cheap, before any process starts or any file is read)."""
    from ...runners.config import ConfigError
    from ...runners.runspec import one_party_run

    if any(run.is_torch for run in runs):
        r = roles()
        raise ConfigError(
            f"run 'torch' needs {r.weights}'s weights and {r.data}'s prompt in one process; "
            f"with one process per party use secretflow runs only, e.g. --runs {EXAMPLE_RUN}"
        )
    run = one_party_run(list(runs), EXAMPLE_RUN)
    job.check_tokens()
    return run


def check_launch(job: Job, runs: Sequence[RunSpec]) -> None:
    """Checks of a one-process-per-party run before any process starts.  Under ``launch``
    every party gets the same arguments, so the prompt owner's prompt is checked here too."""
    party_run(job, runs)
    job.check_prompt()


def role_of(r: Roles, party: str) -> str:
    """What ``party``'s process does, for its first lines."""
    if party == r.weights:
        return f"gives the weights (secret-shared once per route); the ids go to {r.data}"
    if party == r.data:
        return f"gives the prompt and receives the ids; the weights are {r.weights}'s"
    return f"holds shares only: the weights are {r.weights}'s, the prompt {r.data}'s"


def run_party(
    job: Job, runs: Sequence[RunSpec], cluster_file: str, me: str, out: Callable[[str], None]
) -> None:
    """Generate as party ``me`` of ``cluster_file``; ``out`` gets this process's lines."""
    import numpy as np

    from ...generation import GenerationError, generate
    from ...runners.secretflow.cluster import check_party, load_cluster

    run = party_run(job, runs)
    cluster = load_cluster(cluster_file)
    check_party(cluster, me)  # before any model, data or runtime
    r = roles(cluster.names)
    spec = job.model.resolved()
    built = build(spec, weights=me == r.weights, tokenizer=me == r.data, weights_owner=r.weights)
    what = built.what
    if me != r.weights and not spec.checkpoint:  # a seeded random model is built alike
        what += f"; its weights are read in {r.weights}'s process only"
    cand = candidates(spec, job.approx)  # public: declared by the weights' owner
    tok = built.tokenizer
    ids = tok.encode(job.prompt) if tok is not None and job.prompt else []

    def prompt() -> np.ndarray:  # called by generate in the prompt owner's process only
        # raised inside generate: it announces the error, so every party ends with this line
        if not job.prompt:
            raise GenerationError(f"--prompt ({r.data}'s) is empty; give some text")
        if not ids:
            raise GenerationError(f"--prompt ({r.data}'s) encodes to no tokens")
        return np.asarray([ids], dtype=np.int32)

    out(f"model: {what}")
    out(
        f"this process is party {me} ({cluster_file}): it {role_of(r, me)}; timings and bytes "
        "sent are this party's"
    )
    if me == r.data and ids:
        out(report.prompt_line(job.prompt, ids, job.tokens))
    elif me != r.data:
        out(
            f"prompt: {r.data}'s secret, --prompt is not read here ({r.data} announces its "
            f"length, public); {job.tokens} new tokens, greedy"
        )
    if job.approx:
        out(report.approx_line(None if cand is None else len(cand), side_by_side=False))
    table = report.Table(agree=False, sent_by=me)
    results = []
    with run.open(cluster=cluster_file, party=me) as s:
        out(
            f"start-up: {s.startup_s:.1f}s (SecretFlow production mode, {len(s.parties)} processes)"
        )
        s.check_same(public_settings(job, built.model, cand), "gpt2")
        for route in job.routes:
            g = generate(
                built.model, prompt if me == r.data else None, job.tokens, session=s,
                route=route, approx=job.approx, candidates=cand,
            )  # fmt: skip
            if not results:  # after generate's checks: a bad prompt ends every party before it
                out(table.header)
                out("-" * len(table.header))
            out(table.row(str(run), route, g))
            results.append((route, g.ids))
    out(report.table_note(r, party=me))
    got = [(route, ids_) for route, ids_ in results if ids_ is not None]
    if not got:
        out(f"{me} received: nothing revealed; the ids were revealed to {r.data} only")
        return
    for route, ids_ in got:
        out(report.ids_line(f"{run} {route}", ids_, tok))
    if len(got) > 1:
        same = all(np.array_equal(x, got[0][1]) for _, x in got)
        out(f"routes agree: {'yes' if same else 'NO'}")
    out(f"{me} received: the ids ({job.tokens} per route), revealed to {me} only")
