"""What the overflow sentinel costs inside ``fit`` (issue 19 item 1b), side by side in one run.

Each training is fitted three times in one SPU session (SEMI2K, FM64), with the range check
off and the loss not revealed, so that only the epoch programs differ:

* ``off``: ``fit(..., sentinel=False)``;
* ``epoch``: ``sentinel="epoch"``: per epoch, the loss of one batch at the weights the epoch
  ends with (one more forward pass), the gradients' and weights' public-sign projections
  (local sums), one comparison and the one revealed bit;
* ``steps``: ``sentinel="steps"``: the same, and every step's loss (which MPC otherwise
  skips computing: only its gradient is needed).

``sentinel=True`` (the default) is ``steps`` for ``MSELoss``/``BCEWithLogitsLoss`` and
``epoch`` for other losses.  Cases: the homework (breast-cancer MLP [30, 15, 8, 1], 10 epochs
of 45 batches of 10 and a partial 5, SGD, MSE) and a nanoGPT fine-tune (2 layers, width 32,
vocabulary 256, 32 sequences of 16 tokens, batch 4: 8 steps per epoch, 2 epochs, SGD, the
next-token cross entropy as a user function).  Bytes and sends are SPU's own counts, summed
over the parties, over the whole fit (puts, epochs, reveals); time: the epochs' run time and
the whole fit, one run each (the order alternates per case; the machine is shared).

    python bench/bench_sentinel.py          # about 6 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import os
import platform
import time
import warnings

import numpy as np


def _homework():
    import torch.nn as nn

    from ppml_torch.apps.homework.data import load_data
    from ppml_torch.apps.homework.train import BATCH_SIZE, LR, torch_mlp, train_data

    d = load_data()

    def run(session, sentinel):
        import torch

        module = torch_mlp()
        return module, dict(
            module=module, loss_fn=nn.MSELoss(),
            optimizer=torch.optim.SGD(module.parameters(), lr=LR), data=train_data(d),
            route="flax", session=session, epochs=10, batch_size=BATCH_SIZE,
            sentinel=sentinel,
        )  # fmt: skip

    return "homework MLP, 10 epochs", run


def _nanogpt():
    import torch
    import torch.nn.functional as F

    from ppml_torch.models.nanogpt import GPT, GPTConfig
    from ppml_torch.train import horizontal

    rng = np.random.default_rng(0)
    ids = rng.integers(0, 256, (32, 17)).astype(np.int32)
    data = horizontal({"bob": (ids[:, :-1], ids[:, 1:])}, weights_owner="alice")

    def loss(logits, targets):
        return F.cross_entropy(logits.flatten(0, 1), targets.flatten())

    def run(session, sentinel):
        torch.manual_seed(0)
        module = GPT(GPTConfig(block_size=16, vocab_size=256, n_layer=2, n_head=2, n_embd=32))
        return module, dict(
            module=module, loss_fn=loss,
            optimizer=torch.optim.SGD(module.parameters(), lr=0.02), data=data,
            route="graph", session=session, epochs=2, batch_size=4, sentinel=sentinel,
        )  # fmt: skip

    return "nanoGPT fine-tune (2 layers, width 32, vocabulary 256), 2 epochs of 8 steps", run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", default=["homework", "nanogpt"])
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    import ppml_torch
    from ppml_torch.runners import open_session
    from ppml_torch.runners.base import total

    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, load "
          f"{os.getloadavg()[0]:.1f}; spu SEMI2K FM64")  # fmt: skip
    for i, name in enumerate(args.cases):
        title, make = {"homework": _homework, "nanogpt": _nanogpt}[name]()
        rows = {}
        variants = ["off", "epoch", "steps"]
        if i % 2:
            variants.reverse()
        with open_session("spu", "SEMI2K", "FM64") as s:
            for variant in variants:
                _, kw = make(s, False if variant == "off" else variant)
                t0 = time.perf_counter()
                _, history = ppml_torch.fit(
                    **kw, progress=False, range_check="off",
                    reveal_loss=False,
                )  # fmt: skip
                wall = time.perf_counter() - t0
                rep = total(history.reports)
                run_s = sum(e.run_s for e in history.epochs)
                rows[variant] = (rep.comm.send_bytes, rep.comm.send_actions, run_s, wall)
        print(f"\n{title}")
        print(
            f"{'sentinel':10} {'MiB sent':>10} {'sends':>8} {'epochs run':>11} {'fit wall':>9}  vs off"
        )
        base = rows["off"]
        for variant in ("off", "epoch", "steps"):
            b, n, r, w = rows[variant]
            print(
                f"{variant:10} {b / 2**20:10.2f} {n:8d} {r:10.2f}s {w:8.2f}s  "
                f"bytes x{b / base[0]:.4f}, sends x{n / base[1]:.4f}, run x{r / base[2]:.2f}"
            )


if __name__ == "__main__":
    main()
