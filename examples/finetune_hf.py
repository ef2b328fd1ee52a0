"""Fine-tune a Hugging Face ``GPT2LMHeadModel`` as it comes, under MPC, with ``ppml_torch.fit``.

    python examples/finetune_hf.py --session spu:SEMI2K
    python examples/finetune_hf.py --session cpu --dropout 0   # and compare with torch eager

bob holds the text (byte-level tokens of a page of the Python documentation that ships with
Python, ``pydoc_data.topics``), alice the model.  The model is a small GPT-2 built from a
``GPT2Config`` (2 layers, width 64, byte vocabulary of 256), in training mode, as
``transformers`` makes it: its own loss (``fit(model, None, ...)``: the ids go in as
``input_ids`` and as ``labels``), its dropout (``resid/embd/attn_pdrop``; masks from ``seed``),
its generation cache turned off by ``fit``.  Prints what one step computes, the history, and
the check: with ``--dropout 0`` against the same steps in torch eager; with dropout, against
the same fit on ``cpu`` (the same seed draws the same masks).
"""

from __future__ import annotations

import argparse


def corpus(n: int, t: int):
    """``n`` sequences of ``t`` byte tokens, consecutive pieces of one documentation page."""
    from pydoc_data.topics import topics

    import numpy as np

    text = topics["assert"].encode("utf-8")
    return np.frombuffer(text[: n * t], np.uint8).reshape(n, t).astype(np.int32)


def gpt2(p: float):
    import torch
    import transformers

    torch.manual_seed(0)
    config = transformers.GPT2Config(
        vocab_size=256, n_positions=64, n_embd=64, n_layer=2, n_head=2,
        resid_pdrop=p, embd_pdrop=p, attn_pdrop=p,
    )  # fmt: skip
    return transformers.GPT2LMHeadModel(config)


def train(session: str, a, ids):
    import torch

    import ppml_torch
    from ppml_torch.train import horizontal

    model = gpt2(a.dropout)
    data = horizontal({"bob": ({"input_ids": ids}, ids)}, weights_owner="alice")
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    return ppml_torch.fit(
        model, None, opt, data, session=session, epochs=a.epochs, batch_size=a.batch,
        seed=a.seed, reveal_loss="bob", progress=False,
    )  # fmt: skip


def torch_eager(a, ids):
    import torch

    model = gpt2(a.dropout)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x = torch.as_tensor(ids).long()
    for _ in range(a.epochs):
        for b in range(0, len(ids), a.batch):
            opt.zero_grad()
            model(input_ids=x[b : b + a.batch], labels=x[b : b + a.batch]).loss.backward()
            opt.step()
    return model


def largest_difference(a, b) -> float:
    sa, sb = a.state_dict(), b.state_dict()
    return max(float((sa[k] - sb[k]).abs().max()) for k in sa)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--session", default="spu:SEMI2K")
    p.add_argument("--dropout", type=float, default=0.1, help="GPT2Config's *_pdrop (HF: 0.1)")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--sequences", type=int, default=16)
    p.add_argument("--tokens", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)

    ids = corpus(a.sequences, a.tokens)
    model, history = train(a.session, a, ids)
    print(history.model_call)
    print(history.describe())
    if a.dropout == 0:
        ref, what = torch_eager(a, ids), "torch eager (the same steps)"
    else:
        ref, what = train("cpu", a, ids)[0], f"fit on cpu (seed {a.seed}: the same masks)"
    print(f"{a.session}: max |weight difference| vs {what} {largest_difference(model, ref):.2e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
