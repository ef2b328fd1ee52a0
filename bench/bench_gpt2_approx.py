"""Fidelity and cost of the approximations in cached GPT-2 decoding, next to exact.

    .venv/bin/python bench/bench_gpt2_approx.py [--checkpoint models/tiny-gpt2] [--prompts 8]
        [--tokens 6] [--run spu:ABY3:FM64] [--route flax] [--repeats 2]

Model: ``--checkpoint`` (default ``models/tiny-gpt2`` when ``make tiny-gpt2`` built it), else
a seeded random GPT-2 (2 layers, 128 wide, GPT-2's vocabulary; says so).  Prompts: ``--prompts``
7-token windows of ``pydoc_data.topics`` at seeded offsets (the trained model's own domain).

Modes: ``exact`` (the default of ``generate``: exact argmax ``"tree"``), ``approx``
(``approx=True``: PUMA's piecewise GeLU), ``cand`` (``candidates=`` the checkpoint's
``candidates.json``: the argmax over the tokens it was trained to emit, the network exact;
only when the checkpoint has the file), ``approx+cand`` (both), and for reference ``exact/spu`` (``argmax="spu"``, SPU's
own argmax, the default before ``tree_argmax``; same numbers as ``exact``).

* Fidelity, per mode: teacher-forced decoding (``Decoder.forced``: every step is fed torch's
  greedy token, the logits are revealed, the mode's argmax applied to them) over all prompts
  as one batch; top-1 agreement with torch's plaintext argmax over the WHOLE vocabulary for
  every (prompt, step), the largest and mean absolute logits error, and how many
  disagreements are near-ties (torch's top-1 margin below twice the largest error seen).
* Cost, per mode, one prompt, alternating over ``--repeats``: median decode-step time and
  bytes sent per step (``generate``, the private path, argmax included).
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

DEFAULT_CKPT = Path(__file__).resolve().parents[1] / "models" / "tiny-gpt2"


def _prompts(tok, n: int, T: int, seed: int):
    from pydoc_data.topics import topics

    import numpy as np

    text = "\n\n".join(topics[k] for k in sorted(topics))
    rng = np.random.default_rng(seed)
    out = []
    while len(out) < n:
        i = int(rng.integers(0, len(text) - 400))
        ids = tok.encode(text[i : i + 400])[1 : T + 1]  # skip a cut first token
        if len(ids) == T:
            out.append(ids)
    return np.asarray(out, np.int32)


def main(argv: list[str] | None = None) -> int:
    import numpy as np

    from ppml_torch.generation import (
        Decoder,
        gpt2_tokenizer,
        load_candidates,
        load_checkpoint,
        random_gpt2,
        torch_greedy,
    )
    from ppml_torch.runners.runspec import parse_run

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default=str(DEFAULT_CKPT))
    p.add_argument("--prompts", type=int, default=8)
    p.add_argument("--prompt-len", type=int, default=7)
    p.add_argument("--tokens", type=int, default=6)
    p.add_argument("--run", default="spu:ABY3:FM64")
    p.add_argument("--route", choices=("graph", "flax"), default="flax")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)

    if (Path(a.checkpoint) / "config.json").is_file():
        model, tok = load_checkpoint(a.checkpoint), gpt2_tokenizer(a.checkpoint)
        what = f"checkpoint {a.checkpoint}"
    else:
        model, tok = random_gpt2(2, 128, 4, seed=0, init_std=0.1), gpt2_tokenizer()
        what = "seeded random GPT-2 2x128 (no checkpoint found: margins are not a trained model's)"
    c = model.config
    print(f"model: {what} ({c.n_layer} layers, {c.n_embd} wide, vocabulary {c.vocab_size})")
    prompts = _prompts(tok, a.prompts, a.prompt_len, a.seed)
    B, N = prompts.shape[0], a.tokens
    ids_t, logits_t = torch_greedy(model, prompts, N)  # (B, N), (N, B, V)
    top2 = np.sort(logits_t, axis=-1)[..., -2:]
    margin = top2[..., 1] - top2[..., 0]  # (N, B)
    print(
        f"{B} prompts x {N} steps = {B * N} greedy decisions; torch top-1 margin: median "
        f"{np.median(margin):.3f}, min {margin.min():.4f}; {a.run}, route {a.route}"
    )

    import os

    cand = load_candidates(a.checkpoint) if (Path(a.checkpoint) / "config.json").is_file() else None
    modes: dict[str, dict] = {
        "exact": {},
        "approx": {"approx": True},
    }
    if cand is not None:
        modes["cand"] = {"candidates": cand}
        modes["approx+cand"] = {"approx": True, "candidates": cand}
        print(f"candidates.json: {len(cand)} of {c.vocab_size} tokens")
    cost_modes = {"exact/spu": {"argmax": "spu"}, **modes}
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")

    spec = parse_run(a.run)
    with spec.open() as s:
        print(
            f"\n{'mode':<12} {'top-1 agree':>12} {'max |err|':>10} {'mean |err|':>11}  disagreements"
        )
        for mode, kw in modes.items():
            d = Decoder(model, s, prompt_len=a.prompt_len, max_new_tokens=N, batch=B,
                        route=a.route, **kw)  # fmt: skip
            logits, am = d.forced(prompts, ids_t[:, :-1])
            d.close()
            err = np.abs(logits - logits_t)
            ok = am == logits_t.argmax(-1)  # (N, B)
            bad = np.argwhere(~ok)
            near = sum(margin[i, j] < 2 * err.max() for i, j in bad)
            print(
                f"{mode:<12} {ok.mean():>11.1%} {err.max():>10.2e} {err.mean():>11.2e}  "
                f"{len(bad)} of {ok.size} ({near} near-ties)"
            )

        print(f"\ncost of one decode step (batch 1, median of {a.repeats} generations, "
              f"argmax included)")  # fmt: skip
        seen: dict[str, list] = {k: [] for k in cost_modes}
        for _ in range(a.repeats):
            for name, kw in cost_modes.items():
                d = Decoder(model, s, prompt_len=a.prompt_len, max_new_tokens=N, route=a.route,
                            **kw)  # fmt: skip
                g = d.generate(prompts[:1])
                d.close()
                per = [r.comm.send_bytes for r in g.steps if r.comm]
                seen[name].append((g.step_s, statistics.median(per) if per else None))
        print(f"{'mode':<12} {'step':>8} {'sent/step':>11} {'speed-up':>9} {'bytes saved':>12}")
        base_t = statistics.median(t for t, _ in seen["exact"])
        base_b = (
            statistics.median(b for _, b in seen["exact"] if b) if seen["exact"][0][1] else None
        )
        for name, runs in seen.items():
            t = statistics.median(x for x, _ in runs)
            b = statistics.median(y for _, y in runs if y) if runs[0][1] else None
            sp = base_t / t
            saved = "-" if b is None or base_b is None else f"{1 - b / base_b:.0%}"
            sent = "-" if b is None else f"{b / 2**20:.2f} MiB"
            print(f"{name:<12} {t:>7.3f}s {sent:>11} {sp:>8.2f}x {saved:>12}")
        print("speed-up and bytes saved are relative to exact (the default, argmax 'tree')")
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
