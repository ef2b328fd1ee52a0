"""Flax-transferred models under MPC: GPT-2 greedy tokens on ABY3, the homework MLP trained
on SEMI2K and brought back to torch."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax_cases import homework_mlp, tiny_hf_gpt2, tiny_nanogpt, token_ids

from bench import flax_loop as homework
from ppml_torch.apps.homework.data import load_data
from ppml_torch.apps.homework.evaluate import auc, evaluate_auc
from ppml_torch.converters.flax import from_flax, to_flax
from ppml_torch.runners import open_session, wrap

N_NEW = 3  # new tokens per prompt

# HF's Flax GPT-2 masks attention scores with finfo.min before softmax; under SPU's default
# (Taylor) exp that gives wrong probabilities (logits off by ~0.5 here).  SPU's Pade exp clamps
# its input and gets it right.  The Flax nanoGPT zeroes masked scores after exp and needs nothing.
RUNTIME = {"hf_gpt2": {"fxp_exp_mode": "EXP_PADE"}, "nanogpt": {}}
MODELS = {"hf_gpt2": tiny_hf_gpt2, "nanogpt": tiny_nanogpt}


def _logits(out):
    return out["logits"] if isinstance(out, dict) else out


def greedy_fn(apply_fn):
    """Greedy decoding of N_NEW tokens, the whole sequence re-run per token, in one program."""

    def greedy(params, ids):
        steps = []
        for _ in range(N_NEW):
            last = _logits(apply_fn(params, ids))[:, -1]  # (B, vocab)
            nxt = jnp.argmax(last, axis=-1).astype(jnp.int32)  # (B,)
            ids = jnp.concatenate([ids, nxt[:, None]], axis=1)  # (B, T + 1)
            steps.append(last)
        return ids, jnp.stack(steps, axis=1)  # (B, T0 + N_NEW), (B, N_NEW, vocab)

    return greedy


def torch_greedy(module, ids: np.ndarray):
    ids_t, steps = torch.from_numpy(ids).long(), []
    with torch.no_grad():
        for _ in range(N_NEW):
            out = module(ids_t)
            last = (out.logits if hasattr(out, "logits") else out)[:, -1]  # (B, vocab)
            steps.append(last)
            ids_t = torch.cat([ids_t, last.argmax(-1, keepdim=True)], dim=1)
    return ids_t.numpy(), torch.stack(steps, dim=1).numpy()


@pytest.mark.slow
@pytest.mark.parametrize("family", sorted(MODELS))
def test_greedy_tokens_match_torch_on_aby3(family):
    module = MODELS[family]()
    cm = to_flax(module)
    prompts = token_ids(seed=2, B=6, T=5)
    want_ids, want_logits = torch_greedy(module, prompts)

    with open_session("spu", "ABY3", "FM64", runtime=RUNTIME[family]) as s:
        f = wrap(s, greedy_fn(cm.apply), owners=("alice", "bob"))  # weights alice, prompt bob
        got_ids, got_logits = (np.asarray(a) for a in f(cm.params, prompts))

    T0, checked, mismatches = prompts.shape[1], 0, []
    errors = []
    for b in range(len(prompts)):
        for t in range(N_NEW):  # compare while the prefixes are the same
            err = float(np.abs(got_logits[b, t] - want_logits[b, t]).max())
            errors.append(err)
            top2 = np.sort(want_logits[b, t])[-2:]
            if top2[1] - top2[0] <= 2 * err:
                break  # too close to call at this precision: stop following this prompt
            checked += 1
            if got_ids[b, T0 + t] != want_ids[b, T0 + t]:
                mismatches.append((b, t, int(got_ids[b, T0 + t]), int(want_ids[b, T0 + t])))
                break
    print(f"{family} ABY3/FM64: max logits error {max(errors):.2e}, {checked} tokens checked")
    assert not mismatches, f"(prompt, step, spu, torch): {mismatches}"
    assert checked >= len(prompts), f"only {checked} tokens had a clear top-1 margin"
    assert max(errors) < 5e-3


def torch_train(
    module: torch.nn.Module, data, epochs: int = 10, batch_size: int = 10, lr: float = 0.01
):
    """The homework loop in torch eager: same batches, SGD, loss mean((y - pred)**2 / 2)."""
    x, y = torch.from_numpy(data.x_train), torch.from_numpy(data.y_train)
    opt = torch.optim.SGD(module.parameters(), lr=lr)
    spans = homework.batches(len(y), batch_size)
    for _ in range(epochs):
        for a, b in spans:
            opt.zero_grad()
            loss = torch.mean((y[a:b] - module(x[a:b])) ** 2 / 2)
            loss.backward()
            opt.step()
    return module


def torch_auc(module: torch.nn.Module, data) -> float:
    with torch.no_grad():
        scores = module(torch.from_numpy(data.x_test)).numpy()
    return auc(scores, data)


@pytest.mark.slow
def test_homework_mlp_trained_on_semi2k_comes_back_to_torch():
    data = load_data()
    cm = to_flax(homework_mlp(seed=0))
    init = jax.tree_util.tree_map(np.asarray, cm.params)

    with open_session("spu", "SEMI2K", "FM64") as s:
        trained = homework.reveal_params(s, homework.fit(s, cm.apply, init, data))
    back = from_flax(trained, homework_mlp(seed=99))
    mpc_auc = torch_auc(back, data)
    assert abs(mpc_auc - evaluate_auc(cm.apply, trained, data)) < 1e-6  # same weights

    eager_auc = torch_auc(torch_train(homework_mlp(seed=0), data), data)
    print(
        f"homework MLP test AUC: torch eager {eager_auc:.5f}, Flax on SEMI2K -> torch {mpc_auc:.5f}"
    )
    assert mpc_auc > 0.9
    assert abs(mpc_auc - eager_auc) < 0.01
