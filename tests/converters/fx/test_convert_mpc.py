"""The converted tiny GPT-2 under SPU (ABY3, FM64): logits error and greedy next tokens."""

from __future__ import annotations

import numpy as np
import torch
from fx_models import prompts, tiny_gpt2

from ppml_torch.converters.fx import convert
from ppml_torch.runners import wrap
from ppml_torch.testing import max_abs_error
from tests.sessions import get_session

N_PROMPTS, LENGTH = 16, 8


def test_tiny_gpt2_under_aby3_fm64_gives_torch_greedy_tokens():
    model = tiny_gpt2()
    ids = prompts(N_PROMPTS, LENGTH, seed=3)
    with torch.no_grad():
        expected = model(ids, use_cache=False).logits.numpy()
    cm = convert(model, (ids,), {"use_cache": False})
    run = wrap(get_session("spu", "ABY3", "FM64"), cm.apply, owners=("alice", "bob"))
    logits = np.asarray(run(cm.params, ids.numpy().astype(np.int32))["logits"])
    err = max_abs_error(logits, expected)
    print(f"tiny GPT-2 ABY3/FM64 logits max abs error: {err:.3g} ({run.last_report.describe()})")
    assert err < 0.01  # fixed point with 18 fraction bits; ~1e-3 measured

    last, ref = logits[:, -1], expected[:, -1]
    top2 = np.sort(ref, axis=-1)[:, -2:]
    margin = top2[:, 1] - top2[:, 0]
    decided = margin > 2 * err  # the error cannot flip these argmaxes
    print(f"prompts whose torch top-1 margin exceeds 2 x error: {int(decided.sum())}/{N_PROMPTS}")
    assert decided.sum() >= N_PROMPTS // 2, (
        "too few prompts with a clear torch top-1; use other seeds"
    )
    np.testing.assert_array_equal(last.argmax(-1)[decided], ref.argmax(-1)[decided])


class _EmbedAndPick(torch.nn.Module):
    """Token ids through an embedding, then the log-probability of a label (a gather)."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = torch.nn.Embedding(20, 4)
        self.head = torch.nn.Linear(4, 3)

    def forward(self, ids, labels):
        logp = torch.log_softmax(self.head(self.emb(ids).mean(1)), -1)
        return torch.gather(logp, 1, labels.view(-1, 1))


def test_both_index_lowerings_give_the_same_result_under_mpc():
    """Valid ids (including 0 and the last row) give torch's answer with either lowering; ids
    outside the table never reach MPC (check_inputs refuses them on the owner's side)."""
    torch.manual_seed(0)
    model = _EmbedAndPick()
    ids = torch.tensor([[0, 19, 7], [3, 3, 12]])
    labels = torch.tensor([2, 0])
    with torch.no_grad():
        expected = model(ids, labels).numpy()
    session = get_session("spu", "SEMI2K", "FM64")
    got = {}
    for form in ("take", "one_hot"):
        cm = convert(model, (ids, labels), index_lowering=form)
        assert cm.extras["index_inputs"] == {"ids": 20, "labels": 3}
        run = wrap(session, cm.apply, owners=("alice", "bob", "bob"))
        got[form] = np.asarray(run(cm.params, ids.numpy(), labels.numpy()))
        err = max_abs_error(got[form], expected)
        print(f"index_lowering={form!r}: max abs error vs torch {err:.2g}")
        assert err < 1e-3
    assert max_abs_error(got["take"], got["one_hot"]) < 1e-3
