"""What ``fit``'s range check sees, what it decides and what it costs (issue 19 item 1a).

Before any MPC work ``fit`` checks one training step (forward, loss, backward, optimizer
update) in plaintext at the session's fixed point (``ppml_torch/train/preflight.py``).  Two
policies for the data it may use:

* ``rows``: the owners' rows (one process holds every block): the first batch of epoch 1 and
  the batch of the rows with the largest magnitudes;
* ``bounds``: what one process per party uses: each owner discloses, per column, only the
  power of two above the column's largest magnitude and whether it has negative values; a
  batch drawn inside those bounds is checked.

For each case both policies run side by side (``range_check="auto"`` in one process is
``rows``; ``range_check="bounds"``), only the check timed (``fit`` is stopped where it would
open the session: the check is its last step before the shares).  Each case is then trained
under MPC anyway (no check, no sentinel) and on cpu: the weights' relative difference says
whether a refusal was right.

    python bench/bench_range_check.py        # about 4 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import os
import platform
import time
import warnings

import numpy as np


class _Stop(Exception):
    pass


def _cases():
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    from ppml_torch.train import horizontal
    from tests.train.toy import diabetes, diabetes_mlp, diabetes_split

    def diab(targets, scale, opt):
        def make():
            x, y, *_ = diabetes(targets, scale)
            m = diabetes_mlp()
            o = (torch.optim.Adam if opt == "Adam" else torch.optim.SGD)(m.parameters(), lr=0.01)
            return m, nn.MSELoss(), o, diabetes_split(x, y), dict(batch_size=32, epochs=3)

        return make

    def homework():
        from ppml_torch.apps.homework.data import load_data
        from ppml_torch.apps.homework.train import BATCH_SIZE, LR, torch_mlp, train_data

        m = torch_mlp()
        opt = torch.optim.SGD(m.parameters(), lr=LR)
        return m, nn.MSELoss(), opt, train_data(load_data()), dict(batch_size=BATCH_SIZE, epochs=2)

    def nanogpt():
        from ppml_torch.models.nanogpt import GPT, GPTConfig

        ids = np.random.default_rng(0).integers(0, 256, (8, 17)).astype(np.int32)
        torch.manual_seed(0)
        m = GPT(GPTConfig(block_size=16, vocab_size=256, n_layer=2, n_head=2, n_embd=32))

        def loss(logits, targets):
            return F.cross_entropy(logits.flatten(0, 1), targets.flatten())

        data = horizontal({"bob": (ids[:, :-1], ids[:, 1:])}, weights_owner="alice")
        opt = torch.optim.SGD(m.parameters(), lr=0.02)
        return m, loss, opt, data, dict(batch_size=4, epochs=1, route="graph")

    return {
        "diabetes, raw targets, Adam": diab("raw", 1.0, "Adam"),
        "diabetes, standardised, Adam": diab("standard", 1.0, "Adam"),
        "diabetes, features x1e6, SGD": diab("standard", 1e6, "SGD"),
        "diabetes, raw targets, SGD": diab("raw", 1.0, "SGD"),
        "homework MLP, SGD": homework,
        "nanoGPT fine-tune, SGD": nanogpt,
    }


def _check(make, session, mode):
    """The range check's verdict and time (only the check: ``preflight.run`` timed); the
    session is borrowed after the check, so a borrow that raises stops the fit there."""
    import ppml_torch
    from ppml_torch.train import TrainingRangeError, preflight

    module, loss, opt, data, kw = make()
    route = kw.pop("route", "flax")
    real_run, spent = preflight.run, []

    def timed(*a, **k):
        t0 = time.perf_counter()
        try:
            return real_run(*a, **k)
        finally:
            spent.append(time.perf_counter() - t0)

    preflight.run = timed
    try:
        ppml_torch.fit(
            module, loss, opt, data, session=session, route=route, progress=False,
            range_check=mode, sentinel=False, **kw,
        )  # fmt: skip
    except TrainingRangeError as e:
        return "refused", spent[0], str(e)
    except _Stop:
        pass
    finally:
        preflight.run = real_run
    return "passed", spent[0], ""


def _mpc_error(make, session):
    """max |w_mpc - w_cpu| / max |w_cpu| of the same fit without the check or the sentinel."""
    import ppml_torch

    out = []
    for where in ("cpu", session):
        module, loss, opt, data, kw = make()
        route = kw.pop("route", "flax")
        ppml_torch.fit(
            module, loss, opt, data, session=where, route=route, progress=False,
            range_check="off", sentinel=False, **kw,
        )  # fmt: skip
        out.append({k: v.detach().numpy() for k, v in module.state_dict().items()})
    top = max(float(np.abs(v).max()) for v in out[0].values())
    return max(float(np.abs(out[1][k] - out[0][k]).max()) for k in out[0]) / top


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--protocol", default="SEMI2K")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    from ppml_torch.runners import open_session
    from ppml_torch.runners.plan import SessionPlan

    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, load "
          f"{os.getloadavg()[0]:.1f}; spu {args.protocol} FM64")  # fmt: skip
    real_borrow = SessionPlan.borrow

    def stop(self):  # the check is done when fit borrows the session
        raise _Stop

    rows = []
    with open_session("spu", args.protocol, "FM64") as s:
        for name, make in _cases().items():
            got = {}
            for mode in ("auto", "bounds"):
                SessionPlan.borrow = stop
                try:
                    got[mode] = _check(make, s, mode)
                finally:
                    SessionPlan.borrow = real_borrow
            rows.append((name, got, _mpc_error(make, s)))
    print(
        f"{'case':30} {'rows':8} {'time':>6}  {'bounds':8} {'time':>6}  {'MPC rel err':>11}  "
        "what the refusal named"
    )
    for name, got, err in rows:
        (a, ta, ma), (b, tb, mb) = got["auto"], got["bounds"]
        named = (ma or mb).split("): ", 1)[1].split(";")[0] if (ma or mb) else ""
        print(f"{name:30} {a:8} {ta:5.2f}s  {b:8} {tb:5.2f}s  {err:11.2e}  {named[:80]}")
    print(
        "MPC rel err: max |w_mpc - w_cpu| / max |w_cpu| after the same fit run anyway (no "
        "check, no sentinel); about 1e-4 is fixed-point noise, ~1 and above a wrong result"
    )


if __name__ == "__main__":
    main()
