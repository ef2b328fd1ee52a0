"""HF GPT-2 as it comes vs the project's nanoGPT of the same shape: one fine-tune step under MPC.

    .venv/bin/python bench/bench_finetune.py [--run spu:SEMI2K] [--layers 2 --width 64
        --heads 2 --vocab 256 --batch 4 --tokens 32 --steps 3 --dropout 0.1] [--profile]

Both models are trained by ``ppml_torch.fit`` in one session, side by side, on the same token
ids (bob's), weights alice's, SGD, one batch per epoch (so an epoch is one step):

* ``hf``: ``transformers.GPT2LMHeadModel`` as it comes, in training mode: ``fit(model, None,
  ...)`` with its own loss (``labels=`` the ids), its dropout (``resid/embd/attn_pdrop``),
  ``use_cache=False`` set by ``fit``;
* ``nanogpt``: ``ppml_torch.models.nanogpt.GPT`` with the same widths and dropout, trained on
  the next-token cross entropy (a user loss: ``F.cross_entropy`` of the flattened logits).

Per model: the step's run time (compilation excluded), its bytes and sends (all parties), the
compile time of the epoch program; then the ratios hf / nanogpt.  The two models' fits
alternate (``--repeats`` rounds of nanogpt then hf, each ``--steps`` epochs): a step's time is
the median of every epoch after the first of each fit, so a change of the machine's load
falls on both.  ``--dropout 0`` compares the two without dropout.

The masks: the same dropout sites drawn from the seed's stream (public Threefry, what ``fit``
runs) against SPU's own ``lax.rng_uniform`` (a public mask from SPU's PRG), each applied to a
secret of the sites' shapes: run time and bytes of the masking alone.

``--profile``: ``ppml_torch.profile_call`` of one training step of each model (forward, loss,
backward, SGD update) on the same session: bytes and time per kind of work, side by side.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time


def _hf(a):
    import torch
    import transformers

    torch.manual_seed(0)
    config = transformers.GPT2Config(
        vocab_size=a.vocab, n_positions=max(64, a.tokens), n_embd=a.width, n_layer=a.layers,
        n_head=a.heads, resid_pdrop=a.dropout, embd_pdrop=a.dropout, attn_pdrop=a.dropout,
    )  # fmt: skip
    return transformers.GPT2LMHeadModel(config)


def _nanogpt(a):
    import torch

    from ppml_torch.models.nanogpt import GPT, GPTConfig

    torch.manual_seed(0)
    config = GPTConfig(
        block_size=max(64, a.tokens), vocab_size=a.vocab, n_layer=a.layers, n_head=a.heads,
        n_embd=a.width, dropout=a.dropout,
    )  # fmt: skip
    return GPT(config)


def next_token_loss(logits, targets):
    """Cross entropy over every position: logits (B, T, V), targets (B, T)."""
    import torch.nn.functional as F

    return F.cross_entropy(logits.flatten(0, 1), targets.flatten())


def _fit(name, a, ids, session):
    import torch

    import ppml_torch
    from ppml_torch.train import horizontal

    x = ids[:, : a.tokens]
    if name == "hf":
        model, loss = _hf(a), None
        data = horizontal({"bob": ({"input_ids": x}, x)}, weights_owner="alice")
    else:
        model, loss = _nanogpt(a), next_token_loss
        data = horizontal({"bob": (x, ids[:, 1 : a.tokens + 1])}, weights_owner="alice")
    opt = torch.optim.SGD(model.parameters(), lr=0.02)
    t0 = time.perf_counter()
    _, history = ppml_torch.fit(
        model, loss, opt, data, session=session, epochs=a.steps, batch_size=a.batch,
        progress=False,
    )  # fmt: skip
    wall = time.perf_counter() - t0
    steps = history.epochs
    comm = steps[-1].comm
    return {
        "runs": [e.run_s for e in steps[1:] or steps],
        "compile_s": steps[0].compile_s or 0.0,
        "mib": comm.send_bytes / 2**20 if comm else 0.0,
        "sends": comm.send_actions if comm else 0,
        "wall_s": wall,
        "call": history.model_call,
    }


def _masks(a, session):
    """The masking alone: the seed's stream vs SPU's rng_uniform, on the step's dropout sites."""
    import jax.numpy as jnp
    import numpy as np
    from jax import lax

    import ppml_torch.dropout as dropout

    b, t, c, h, n = a.batch, a.tokens, a.width, a.heads, a.layers
    shapes = [(b, t, c)] + [(b, h, t, t), (b, t, c), (b, t, c)] * n  # embd, then per block
    xs = [np.ones(s, np.float32) for s in shapes]
    p = a.dropout or 0.1

    def stream(key, *xs):
        with dropout.drawn_from(dropout.step_key(key, 0)):
            return [dropout.apply(x, p) for x in xs]

    def spu_rng(*xs):
        scale = np.float32(1 / (1 - p))  # the same product as the stream's: x times a mask
        masks = [jnp.where(lax.rng_uniform(0.0, 1.0, x.shape) >= p, scale, 0.0) for x in xs]
        return [x * m for x, m in zip(xs, masks, strict=True)]

    out = {}
    key = session.put(dropout.epoch_key(0, 1), owner="public")
    handles = [session.put(x, owner="bob") for x in xs]
    for name, fn, args in (("stream", stream, [key, *handles]), ("spu rng", spu_rng, handles)):
        runs = []
        for _ in range(3):
            r = session.call(fn, *args, name=name)
            runs.append(session.last_report)
            session.free(r)
        comm = runs[-1].comm
        out[name] = (
            statistics.median(r.run_s for r in runs[1:]),
            comm.send_bytes / 2**20,
            comm.send_actions,
        )
    for hd in (key, *handles):
        session.free(hd)
    return out, sum(int(np.prod(s)) for s in shapes)


def main(argv: list[str] | None = None) -> int:
    import numpy as np

    from ppml_torch.runners.runspec import parse_run

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", default="spu:SEMI2K")
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--heads", type=int, default=2)
    p.add_argument("--vocab", type=int, default=256)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--tokens", type=int, default=32)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--repeats", type=int, default=2, help="alternating rounds of both fits")
    p.add_argument("--dropout", type=float, default=0.1)
    p.add_argument("--profile", action="store_true", help="profile one step of each model")
    a = p.parse_args(argv)

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}")
    print(
        f"{a.run}: {a.layers} layers, width {a.width}, {a.heads} heads, vocabulary {a.vocab}, "
        f"{a.batch} x {a.tokens} tokens per step, dropout {a.dropout}, {a.steps} steps"
    )
    ids = np.random.default_rng(0).integers(0, a.vocab, (a.batch, a.tokens + 1)).astype(np.int32)
    with parse_run(a.run).open() as s:
        rows: dict = {}
        for _ in range(a.repeats):  # alternating: the load's changes fall on both models
            for name in ("nanogpt", "hf"):
                r = _fit(name, a, ids, s)
                runs = rows.get(name, {}).get("runs", []) + r["runs"]
                rows[name] = {**r, "runs": runs, "run_s": statistics.median(runs)}
        masks, n_mask = _masks(a, s)
        if a.profile:
            _profile(a, ids, s)
    print(
        f"\n{'model':<8} {'step':>8} {'MiB/step':>9} {'sends':>6} {'compile':>8}  what a step computes"
    )
    for name, r in rows.items():
        print(
            f"{name:<8} {r['run_s']:>7.2f}s {r['mib']:>9.2f} {r['sends']:>6} "
            f"{r['compile_s']:>7.2f}s  {r['call']}"
        )
    for name, r in rows.items():
        print(f"{name} step times: {', '.join(f'{t:.2f}' for t in r['runs'])} s")
    hf, nano = rows["hf"], rows["nanogpt"]
    print(
        f"hf / nanogpt: time {hf['run_s'] / nano['run_s']:.2f}x, bytes "
        f"{hf['mib'] / nano['mib']:.3f}x, sends {hf['sends'] / nano['sends']:.3f}x (target 1.3x)"
    )
    print(f"\nmasking {n_mask} values at {len(masks)} kinds of masks (dropout {a.dropout or 0.1}):")
    for name, (run_s, mib, sends) in masks.items():
        print(f"  {name:<8} {run_s:.3f}s, {mib:.2f} MiB in {sends} sends")
    return 0


def _profile(a, ids, session):
    """One training step of each model, profiled by kind of work (same session)."""
    print("\n(--profile: see ppml_torch.profile_call; one step each)")
    from ppml_torch.profiling import profile_call

    for name in ("nanogpt", "hf"):
        step, args = _one_step(name, a, ids)
        handles = [session.put(v, owner=o) for v, o in args]
        out, report = profile_call(session, step, *handles, name=f"{name} step", weights=0)
        print(f"\n{name}:\n{report.describe()}")
        for h in (*handles, out):
            session.free(h)


def _one_step(name, a, ids):
    """A training step as fit runs it (forward, loss, backward, SGD), and its inputs."""
    import numpy as np
    import torch

    import ppml_torch.dropout as dropout
    from ppml_torch.converters.fx import convert
    from ppml_torch.train.calls import ModelCall
    from ppml_torch.train.layout import Inputs
    from ppml_torch.train.losses import lazy_from_torch

    x = ids[:, : a.tokens]
    module = _hf(a) if name == "hf" else _nanogpt(a)
    if name == "hf":
        tx = torch.as_tensor(x)
        cm = convert(module, (), {"input_ids": tx, "labels": tx, "use_cache": False})
        mc, loss, y = ModelCall(own_loss=True), None, x
        xin = Inputs((), {"input_ids": x})
    else:
        cm = convert(module, (torch.as_tensor(x),))
        mc, loss, y = ModelCall(), lazy_from_torch(next_token_loss), ids[:, 1 : a.tokens + 1]
        xin = x

    def step(params, key, xb, yb):
        import jax

        with dropout.drawn_from(dropout.step_key(key, 0)):
            grads = jax.grad(lambda p: mc.loss(cm.apply, p, xb, yb, loss))(params)
        return jax.tree_util.tree_map(lambda w, g: w - 0.02 * g, params, grads)

    key = dropout.epoch_key(0, 1)
    return step, [(cm.params, "alice"), (key, "public"), (xin, "bob"), (np.asarray(y), "bob")]


if __name__ == "__main__":
    raise SystemExit(main())
