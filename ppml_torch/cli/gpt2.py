"""``ppml-torch gpt2``: greedy GPT-2 generation on several runtimes, side by side."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

HELP = "greedy GPT-2 generation (KV cache, weights shared once) on torch, cpu, spu, secretflow"
DEFAULT_RUNS = ("torch", "cpu", "spu:ABY3")
DEFAULT_PROMPT = "I enjoy walking with my cute dog"
RANDOM_SHAPE = {"layers": 2, "width": 64, "heads": 4}
# built by `make tiny-gpt2` (examples/train_tiny_gpt2.py); used when present and no shape given
TRAINED = Path(__file__).resolve().parents[2] / "models" / "tiny-gpt2"
# one process per party (--cluster/--party): generate's owners
WEIGHTS_OWNER, PROMPT_OWNER = "alice", "bob"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--prompt", default=DEFAULT_PROMPT, help="text (default: %(default)r)")
    p.add_argument("--tokens", type=int, default=10, help="new tokens (default: %(default)s)")
    p.add_argument(
        "--runs",
        nargs="+",
        default=list(DEFAULT_RUNS),
        help="torch and backend[:protocol[:field]] list (default: %(default)s)",
    )
    p.add_argument("--field", default="FM64", help="field of MPC runs that name none")
    p.add_argument(
        "--route",
        nargs="+",
        choices=("graph", "flax"),
        default=["graph"],
        help="graph (ppml_torch.convert) and/or flax (Flax twin); default: graph",
    )
    p.add_argument(
        "--checkpoint",
        metavar="DIR",
        help="a local GPT-2 save_pretrained directory (default: models/tiny-gpt2 when `make "
        "tiny-gpt2` has built it and no --layers/--width/--heads/--init-std is given)",
    )
    p.add_argument(
        "--approx",
        action="store_true",
        help="MPC-friendly approximations that change the numbers (PUMA's piecewise GeLU; the "
        "argmax over the checkpoint's candidates.json tokens when it has one); ids may differ "
        "from torch where its top-1 margin is small",
    )
    for name, v in RANDOM_SHAPE.items():
        p.add_argument(f"--{name}", type=int, help=f"random model's {name} (default {v})")
    p.add_argument("--seed", type=int, default=0, help="seed of the random model")
    p.add_argument(
        "--init-std",
        type=float,
        help="random model's initializer_range (default 0.02, GPT-2's; it tends to repeat one "
        "token, 0.1 gives varied ids)",
    )
    p.add_argument(
        "--cluster",
        metavar="FILE",
        help="run this process as one party of a multi-process secretflow run (cluster file; "
        "see `ppml-torch launch` for one machine): alice's process reads the weights, bob's "
        "the prompt, and only bob's gets the ids",
    )
    p.add_argument("--party", help="this process's party in --cluster (alice, bob, carol)")


def _model(args: argparse.Namespace, *, weights: bool = True, tokenizer: bool = True):
    """``(model, tokenizer, description)``.  ``weights=False``: a checkpoint's architecture only
    (its weights are not read); ``tokenizer=False``: no tokenizer (``None``)."""
    from ..generation import (
        GenerationError,
        check_tokenizer,
        gpt2_tokenizer,
        load_checkpoint,
        random_gpt2,
    )

    given = [f"--{k}" for k in RANDOM_SHAPE if getattr(args, k) is not None]
    if args.init_std is not None:
        given.append("--init-std")
    if not args.checkpoint and not given and (TRAINED / "config.json").is_file():
        args.checkpoint = str(TRAINED)
    if args.checkpoint:
        if given:
            raise GenerationError(
                f"{', '.join(given)} set the random model's shape; a --checkpoint has its own"
            )
        model = load_checkpoint(args.checkpoint, weights=weights)
        tok = gpt2_tokenizer(args.checkpoint) if tokenizer else None
        c = model.config
        what = (
            f"checkpoint {args.checkpoint} ({c.n_layer} layers, {c.n_embd} wide, "
            f"{c.n_head} heads, vocabulary {c.vocab_size})"
        )
        if not weights:
            what += f": its architecture only (config.json), the weights are {WEIGHTS_OWNER}'s"
    else:
        shape = {k: getattr(args, k) or v for k, v in RANDOM_SHAPE.items()}
        std = 0.02 if args.init_std is None else args.init_std
        model = random_gpt2(**shape, seed=args.seed, init_std=std)
        tok = gpt2_tokenizer() if tokenizer else None
        what = (
            f"seeded random GPT-2 (seed {args.seed}, init std {std}; {shape['layers']} layers, "
            f"{shape['width']} wide, {shape['heads']} heads, GPT-2's vocabulary of "
            f"{model.config.vocab_size}): random weights, so the text is not meant to read"
        )
    if tok is not None:
        check_tokenizer(tok, model.config.vocab_size)
    return model, tok, what


def _candidates(args: argparse.Namespace):
    """``--approx`` with a checkpoint that declares its tokens: their ids, else None."""
    from ..generation import load_candidates

    return load_candidates(args.checkpoint) if args.approx and args.checkpoint else None


def _party_run(args: argparse.Namespace):
    """The run of a one-process-per-party run and the public arguments every party checks."""
    from ..generation import GenerationError
    from ..runners.config import ConfigError
    from ..runners.runspec import one_party_run, parse_runs

    runs = parse_runs(args.runs, args.field)
    if any(r.is_torch for r in runs):
        raise ConfigError(
            f"run 'torch' needs {WEIGHTS_OWNER}'s weights and {PROMPT_OWNER}'s prompt in one "
            "process; with one process per party use secretflow runs only, e.g. --runs "
            "secretflow:ABY3"
        )
    run = one_party_run(runs, "secretflow:ABY3")
    if args.tokens < 1:
        raise GenerationError(f"--tokens must be at least 1, got {args.tokens}")
    return run


def check_launch(args: argparse.Namespace) -> None:
    """Checks of a one-process-per-party run, cheap, before any process starts.  Under
    ``launch`` every party gets the same arguments, so bob's prompt is checked here too."""
    from ..generation import GenerationError

    _party_run(args)
    if not args.prompt:
        raise GenerationError("--prompt is empty; give some text")


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from ..generation import GenerationError, generate, torch_greedy
    from ..generation.checkpoint import positions_of
    from ..generation.decode import check_lengths
    from ..runners.config import ConfigError
    from ..runners.runspec import parse_runs

    runs = parse_runs(args.runs, args.field)  # every input checked before any work
    if (args.cluster is None) != (args.party is None):
        raise ConfigError("--cluster and --party go together (or use `ppml-torch launch`)")
    if args.cluster is not None:
        return _run_party(args)
    if args.tokens < 1:
        raise GenerationError(f"--tokens must be at least 1, got {args.tokens}")
    if not args.prompt:
        raise GenerationError("--prompt is empty; give some text")
    model, tok, what = _model(args)
    ids = tok.encode(args.prompt)
    if not ids:
        raise GenerationError(f"--prompt {args.prompt!r} encodes to no tokens")
    check_lengths(len(ids), args.tokens, positions_of(model), None)
    prompt = np.asarray([ids], dtype=np.int32)

    print(f"model: {what}")
    print(f"prompt: {args.prompt!r} = {len(ids)} ids {ids}; {args.tokens} new tokens, greedy")
    print(
        "weights: alice's secret, shared once; prompt: bob's secret; KV cache secret, its "
        "position public; argmax under MPC; ids revealed to bob only, at the end"
    )
    cand = _candidates(args)
    if args.approx:
        among = (
            "the whole vocabulary"
            if cand is None
            else f"the checkpoint's {len(cand)} candidate tokens (candidates.json)"
        )
        print(
            f"approx: PUMA's piecewise GeLU, argmax over {among}, in every session run (torch "
            "runs are exact)"
        )
    head = (
        f"{'run':<24} {'route':<6} {'agree':<6} {'share':>6} {'prompt':>7} {'token':>7} "
        f"{'compile':>8}  communication"
    )
    print(head)
    print("-" * len(head))
    results: list[tuple[str, str, np.ndarray]] = []
    ref: list[np.ndarray] = []

    def agree(out: np.ndarray) -> str:
        if not ref:
            ref.append(out)
            return "ref"
        diff = np.nonzero((out != ref[0]).any(axis=0))[0]
        return "yes" if not diff.size else f"no@{int(diff[0])}"

    for spec in runs:
        if spec.is_torch:
            t0 = time.perf_counter()
            out, _ = torch_greedy(model, prompt, args.tokens)
            per = (time.perf_counter() - t0) / args.tokens
            print(
                f"{'torch':<24} {'-':<6} {agree(out):<6} {'-':>6} {'-':>7} {per:>6.3f}s {'-':>8}  -"
            )
            results.append(("torch", "-", out))
            continue
        with spec.open() as s:
            for route in args.route:
                g = generate(
                    model, prompt, args.tokens, session=s, route=route, approx=args.approx,
                    candidates=cand,
                )  # fmt: skip
                comp = "n/a" if g.compile_s is None else f"{g.compile_s:.1f}s"
                step = "-" if g.step_s is None else f"{g.step_s:.3f}s"
                comm = g.comm.describe() if g.comm else "-"
                print(
                    f"{str(spec):<24} {route:<6} {agree(g.ids):<6} {g.weights_put.run_s if g.weights_put else 0.0:>5.2f}s "
                    f"{g.prefill.run_s:>6.2f}s {step:>7} {comp:>8}  {comm}",
                    flush=True,
                )
                results.append((str(spec), route, g.ids))
    print(
        "share: alice's weights secret-shared (once); prompt: the prompt step (first new "
        "token); token: median time per further token; communication: all steps, all parties"
    )
    for name, route, out in results:
        label = name if route == "-" else f"{name} {route}"
        print(f"{label:<31} ids {out[0].tolist()}  text {tok.decode(out[0].tolist())!r}")
    same = all(np.array_equal(out, results[0][2]) for _, _, out in results)
    print(f"all runs agree: {'yes' if same else 'NO'}")
    return 0


def _public_settings(args: argparse.Namespace, model, cand) -> dict[str, str]:
    """What every party must run alike (the program's shapes and steps); all public."""
    import hashlib

    import numpy as np

    c = model.config
    arch = (
        f"{c.n_layer} layers, {c.n_embd} wide, {c.n_head} heads, vocabulary {c.vocab_size}, "
        f"{c.n_positions} positions"
    )
    among = "all"
    if cand is not None:
        digest = hashlib.sha256(np.asarray(cand, np.int32).tobytes()).hexdigest()[:12]
        among = f"{len(cand)} (sha256 {digest})"
    return {
        "model": arch,
        "--tokens": str(args.tokens),
        "--route": " ".join(args.route),
        "--approx": str(bool(args.approx)),
        "candidate tokens": among,
    }


def _run_party(args: argparse.Namespace) -> int:
    """One party's process of a multi-process run: alice reads the weights, bob the prompt
    (and gets the ids), every process builds the same architecture and prints its own
    figures (timings, bytes this party sent)."""
    import numpy as np

    from ..generation import GenerationError, generate
    from ..runners.config import ConfigError
    from ..runners.secretflow.cluster import check_party, load_cluster

    run = _party_run(args)
    cluster = load_cluster(args.cluster)
    check_party(cluster, args.party)  # before any model, data or runtime
    absent = [p for p in (WEIGHTS_OWNER, PROMPT_OWNER) if p not in cluster.names]
    if absent:
        raise ConfigError(
            f"cluster file {args.cluster} has no party {' or '.join(absent)}: gpt2 takes the "
            f"weights from {WEIGHTS_OWNER} and the prompt from {PROMPT_OWNER}; name the parties "
            f"{WEIGHTS_OWNER},{PROMPT_OWNER}[,carol]"
        )
    me = args.party
    model, tok, what = _model(args, weights=me == WEIGHTS_OWNER, tokenizer=me == PROMPT_OWNER)
    if me != WEIGHTS_OWNER and not args.checkpoint:  # a seeded random model is built alike
        what += f"; its weights are read in {WEIGHTS_OWNER}'s process only"
    cand = _candidates(args)  # public: declared by the weights' owner next to the checkpoint
    ids = tok.encode(args.prompt) if tok is not None and args.prompt else []

    def prompt() -> np.ndarray:  # called by generate in bob's process only
        # raised inside generate: it announces the error, so every party ends with this line
        if not args.prompt:
            raise GenerationError(f"--prompt ({PROMPT_OWNER}'s) is empty; give some text")
        if not ids:
            raise GenerationError(f"--prompt ({PROMPT_OWNER}'s) encodes to no tokens")
        return np.asarray([ids], dtype=np.int32)

    role = {
        WEIGHTS_OWNER: "gives the weights (secret-shared once per route); the ids go to "
        f"{PROMPT_OWNER}",
        PROMPT_OWNER: f"gives the prompt and receives the ids; the weights are {WEIGHTS_OWNER}'s",
    }.get(me, f"holds shares only: the weights are {WEIGHTS_OWNER}'s, the prompt {PROMPT_OWNER}'s")
    print(f"model: {what}")
    print(
        f"this process is party {me} ({args.cluster}): it {role}; timings and bytes sent are "
        "this party's"
    )
    if me == PROMPT_OWNER and ids:
        print(f"prompt: {args.prompt!r} = {len(ids)} ids {ids}; {args.tokens} new tokens, greedy")
    elif me != PROMPT_OWNER:
        print(
            f"prompt: {PROMPT_OWNER}'s secret, --prompt is not read here ({PROMPT_OWNER} "
            f"announces its length, public); {args.tokens} new tokens, greedy"
        )
    if args.approx:
        among = "the whole vocabulary" if cand is None else f"{len(cand)} candidate tokens"
        print(f"approx: PUMA's piecewise GeLU, argmax over {among}")
    head = (
        f"{'run':<24} {'route':<6} {'share':>6} {'prompt':>7} {'token':>7} {'compile':>8}  "
        f"communication (sent by {me})"
    )
    results = []
    with run.open(cluster=args.cluster, party=me) as s:
        print(
            f"start-up: {s.startup_s:.1f}s (SecretFlow production mode, {len(s.parties)} processes)"
        )
        s.check_same(_public_settings(args, model, cand), "gpt2")
        for route in args.route:
            g = generate(
                model, prompt if me == PROMPT_OWNER else None, args.tokens, session=s,
                route=route, approx=args.approx, candidates=cand,
            )  # fmt: skip
            comp = "n/a" if g.compile_s is None else f"{g.compile_s:.1f}s"
            step = "-" if g.step_s is None else f"{g.step_s:.3f}s"
            comm = g.comm.describe() if g.comm else "-"
            share = g.weights_put.run_s if g.weights_put else 0.0
            if not results:  # after generate's checks: a bad prompt ends every party before it
                print(head)
                print("-" * len(head))
            print(
                f"{str(run):<24} {route:<6} {share:>5.2f}s {g.prefill.run_s:>6.2f}s {step:>7} "
                f"{comp:>8}  {comm}",
                flush=True,
            )
            results.append((route, g.ids))
    print(
        "share: alice's weights secret-shared; prompt: the prompt step (first new token); "
        f"token: median time per further token; all three are wall times in {me}'s process "
        "(a transfer still arriving counts in the step that waits for it); communication: "
        f"what {me} sent, all steps"
    )
    got = [(route, out) for route, out in results if out is not None]
    if not got:
        print(f"{me} received: nothing revealed; the ids were revealed to {PROMPT_OWNER} only")
        return 0
    for route, out in got:
        assert tok is not None  # bob's process
        print(
            f"{str(run) + ' ' + route:<31} ids {out[0].tolist()}  text {tok.decode(out[0].tolist())!r}"
        )
    if len(got) > 1:
        same = all(np.array_equal(out, got[0][1]) for _, out in got)
        print(f"routes agree: {'yes' if same else 'NO'}")
    print(f"{me} received: the ids ({args.tokens} per route), revealed to {me} only")
    return 0
