"""Greedy next token of a small GPT-2 on a 3-party SPU (ABY3), both conversion routes.

    .venv/bin/python examples/gpt2_next_token.py [--layers 2] [--width 64] [--vocab 512]

No model hub here: the GPT-2 is built from a config with a fixed seed, saved with
``save_pretrained`` and loaded back, the path a real checkpoint takes.  alice owns the weights,
bob the prompt; the logits are revealed to bob only.
"""

from __future__ import annotations

import argparse
import tempfile


def main(argv: list[str] | None = None) -> int:
    import numpy as np
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    import ppml_torch
    from ppml_torch.runners import open_session

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--vocab", type=int, default=512)
    p.add_argument("--prompt-len", type=int, default=8)
    args = p.parse_args(argv)

    torch.manual_seed(0)
    config = GPT2Config(
        n_layer=args.layers,
        n_embd=args.width,
        n_head=args.heads,
        vocab_size=args.vocab,
        n_positions=64,
    )
    with tempfile.TemporaryDirectory() as d:
        GPT2LMHeadModel(config).save_pretrained(d)
        model = GPT2LMHeadModel.from_pretrained(d, local_files_only=True).eval()
    ids = torch.randint(0, args.vocab, (1, args.prompt_len))
    with torch.no_grad():
        ref = model(ids, use_cache=False).logits[0, -1].numpy()
    top2 = np.sort(ref)[-2:]
    print(f"torch next token {int(ref.argmax())} (top-1 margin {top2[1] - top2[0]:.2e})")

    routes = {
        "graph (convert)": ppml_torch.convert(model, (ids,), {"use_cache": False}),
        "flax (to_flax)": ppml_torch.to_flax(model),
    }
    with open_session("spu", "ABY3", "FM64", runtime={"fxp_exp_mode": "EXP_PADE"}) as s:
        for name, m in routes.items():
            w = s.put(m.params, owner="alice")  # secret-shared once
            x = s.put(ids.numpy().astype(np.int32), owner="bob")
            out = s.call(m.apply, w, x, name=name)
            logits = np.asarray(s.reveal(out, to="bob")["logits"])[0, -1]
            err = float(np.abs(logits - ref).max())
            print(
                f"{name:<16} next token {int(logits.argmax())}, logits max abs error {err:.2e}; "
                f"{s.last_report.describe()}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
