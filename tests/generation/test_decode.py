"""ppml_torch/generation/decode.py: spu:ABY3 greedy tokens equal torch generate(do_sample=False).

A tiny HF GPT-2 (2 layers, width 32, vocabulary 300; weights drawn wider than GPT-2's init so
the greedy ids vary).  Per prompt and route: the private path (``Decoder.generate``: loop and
argmax under MPC, ids revealed at the end) and a teacher-forced path (``Decoder.forced``: bob
feeds torch's tokens, the logits are revealed to him) that measures the logits error per step.
A step is compared where torch's top-1 margin exceeds twice that error (two logits may each
move by it); other steps are near-ties, skipped and reported, and thanks to the forced path
the steps after them are still compared.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from ppml_torch.generation import Decoder, GenerationError, generate, torch_greedy
from tests.sessions import get_session, record_error

pytestmark = pytest.mark.filterwarnings("ignore:.*LeafSpec.*:FutureWarning")

VOCAB, T, N = 300, 5, 6
PROMPTS = np.random.RandomState(7).randint(0, VOCAB, (3, 1, T)).astype(np.int32)
skipped: dict[str, list[tuple[int, int]]] = {}


@pytest.fixture(scope="module")
def hf() -> GPT2LMHeadModel:
    torch.manual_seed(0)
    cfg = GPT2Config(
        n_layer=2, n_embd=32, n_head=2, vocab_size=VOCAB, n_positions=32, initializer_range=0.3
    )
    return GPT2LMHeadModel(cfg).eval()


def hf_generate(hf: GPT2LMHeadModel, prompt: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        out = hf.generate(
            torch.as_tensor(prompt, dtype=torch.long),
            attention_mask=torch.ones(prompt.shape, dtype=torch.long),
            max_new_tokens=N,
            do_sample=False,
            pad_token_id=0,
        )
    return out[:, T:].numpy()


@pytest.mark.parametrize("route", ["graph", "flax"])
def test_spu_aby3_tokens_equal_torch_generate(hf, route):
    check_tokens(hf, get_session("spu", "ABY3", "FM64"), route, PROMPTS, "ABY3")


@pytest.mark.secretflow
@pytest.mark.parametrize("route", ["graph", "flax"])
def test_secretflow_tokens_equal_torch_generate(hf, route):
    """SecretFlow compiles in its workers: the converted program travels there (pickled)."""
    s = get_session("secretflow", "SEMI2K", "FM64")
    prompt = PROMPTS[1]  # torch's top-1 margins >= 0.12 at every step: no near-tie
    (upto,) = check_tokens(hf, s, route, [prompt], "sf SEMI2K")
    assert upto == N
    g = generate(hf, prompt, 2, session=s, route=route)  # the entry point users call
    np.testing.assert_array_equal(g.ids, hf_generate(hf, prompt)[:, :2])


def check_tokens(hf, s, route, prompts, label) -> list[int]:
    """Private and teacher-forced paths against torch's greedy ids (see the module docstring).

    Returns, per prompt, how many leading steps are decisive (before the first near-tie)."""
    dec = Decoder(hf, s, prompt_len=T, max_new_tokens=N, route=route)
    first = len(s.reports)
    compared, skips, worst, uptos = 0, [], 0.0, []
    try:
        for p, prompt in enumerate(prompts):
            want = hf_generate(hf, prompt)
            ref_ids, ref_logits = torch_greedy(hf, prompt, N)
            np.testing.assert_array_equal(ref_ids, want)  # our torch reference is HF's generate

            gen = dec.generate(prompt)  # private path: the loop stays secret
            got = gen.ids
            assert (gen.weights_put is None) == (p > 0)  # put by the first generation only
            assert [o for _, o in gen.puts] == ["alice"] * (p == 0) + ["bob"] + ["public"] * (N - 1)
            logits, _ = dec.forced(prompt, want[:, :-1])  # torch's tokens fed back by bob
            err = np.abs(logits - ref_logits).max(axis=(1, 2))  # (N,) per step
            worst = max(worst, float(err.max()))
            top2 = np.sort(ref_logits, axis=-1)[..., -2:]
            margin = (top2[..., 1] - top2[..., 0]).min(axis=1)  # (N,)
            decisive = margin > 2 * err
            skips += [(p, int(t)) for t in np.nonzero(~decisive)[0]]
            # forced path: every decisive step's MPC argmax is torch's token
            mpc_top1 = logits.argmax(-1).T  # (B, N)
            assert np.array_equal(mpc_top1[:, decisive], want[:, decisive]), (p, mpc_top1, want)
            # private path: equal up to the first near-tie (after it the inputs may differ)
            upto = int(np.argmin(decisive)) if not decisive.all() else N
            assert np.array_equal(got[:, :upto], want[:, :upto]), (p, got, want, upto)
            compared += int(decisive.sum())
            uptos.append(upto)
    finally:
        dec.close()
    record_error(f"generate {route} {label} logits", worst)
    skipped[f"{route} {label}"] = skips
    print(f"{route} {label}: {compared} steps compared, near-ties skipped (prompt, step): {skips}")
    assert compared >= len(prompts) * N // 2, f"too few decisive steps to mean much: {skips}"
    # weights put once for all prompts: one alice put; bob's prompt + forced tokens; positions
    puts = [r.what for r in s.reports[first:] if r.what.startswith("put")]
    owners = [o for _, o in dec._puts]
    assert owners.count("alice") == 1
    assert sorted(puts) == sorted(w for w, _ in dec._puts)  # every put of the session is ours
    return uptos


def test_weights_put_once_per_generation_through_session_record(hf):
    """generate(): puts are weights (alice) + prompt (bob) + one public position per step."""
    s = get_session("spu", "ABY3", "FM64")
    for n in (2, 4):
        first = len(s.reports)
        g = generate(hf, PROMPTS[0], n, session=s, route="flax")
        puts = [r.what for r in s.reports[first:] if r.what.startswith("put")]
        assert len(puts) == 2 + (n - 1), puts
        assert [o for _, o in g.puts] == ["alice", "bob"] + ["public"] * (n - 1)
        assert g.weights_put.what == puts[0]
        assert len(g.steps) == n - 1 and g.prefill.compile_s > 0
        assert all(r.compile_s == 0.0 for r in g.steps[1:])  # one step program for every token
        assert g.comm is not None and g.comm.send_bytes > 0
        np.testing.assert_array_equal(g.ids, hf_generate(hf, PROMPTS[0])[:, :n])


@pytest.mark.parametrize(
    "run, parties, weights, prompt",
    [
        ("spu:ABY3", None, "alice", "bob"),
        ("cpu", None, "alice", "bob"),
        ("cpu", ("dave", "erin", "fay"), "dave", "erin"),  # roles follow the session's parties
    ],
)
def test_ids_are_revealed_to_the_prompts_owner_only(hf, run, parties, weights, prompt):
    """The session's record: the weights put by the first party, the prompt by the second,
    the cache positions public, and ONE reveal, of the ids ``(B, N)``, to the prompt's owner.
    Catches the ids revealed to the weights' owner (or to every party) instead: in one process
    the returned ids are the same either way, only the record tells."""
    from ppml_torch.runners import open_session

    n = 3
    if run == "cpu":
        s = open_session("cpu", parties=parties)
    else:
        s = get_session("spu", "ABY3", "FM64")
    try:
        first = len(s.record)
        g = generate(hf, PROMPTS[0], n, session=s, route="flax")
        record = s.record[first:]
    finally:
        if run == "cpu":
            s.close()
    puts = [e.party for e in record if e.kind == "put"]
    reveals = [e for e in record if e.kind == "reveal"]
    assert puts == [weights, prompt] + [None] * (n - 1), puts
    assert [e.party for e in reveals] == [prompt], reveals
    assert [tuple(a.shape) for a in reveals[0].handle.avals] == [(1, n)]
    np.testing.assert_array_equal(g.ids, hf_generate(hf, PROMPTS[0])[:, :n])


@pytest.mark.parametrize("route", ["graph", "flax"])
def test_cpu_session_equals_torch_for_several_prompt_lengths(hf, route):
    s = get_session("cpu")
    for T_ in (1,):  # a one-token prompt: prefill and decode have the same shape
        prompt = PROMPTS[1][:, :T_]
        g = generate(hf, prompt, 4, session=s, route=route)
        np.testing.assert_array_equal(g.ids, torch_greedy(hf, prompt, 4)[0])


def test_run_spec_string_opens_and_closes_a_session(hf):
    g = generate(hf, [1, 2, 3], 2, session="cpu", route="flax")
    assert g.ids.shape == (1, 2) and g.session.startswith("cpu")


def test_nanogpt_module_in_training_mode_is_left_as_it_was():
    """A nanoGPT GPT (not HF) with dropout, in training mode: runs in eval, mode restored."""
    from ppml_torch.models.nanogpt import GPT, GPTConfig

    torch.manual_seed(0)
    gpt = GPT(GPTConfig(block_size=16, vocab_size=50, n_layer=1, n_head=2, n_embd=16, dropout=0.5))
    gpt.train()
    g = generate(gpt, [[3, 4, 5]], 3, session=get_session("cpu"), route="graph")
    assert gpt.training and all(m.training for m in gpt.modules())
    np.testing.assert_array_equal(g.ids, torch_greedy(gpt, [[3, 4, 5]], 3)[0])
    assert gpt.training


def torch_greedy_among(hf: GPT2LMHeadModel, prompt: np.ndarray, n: int, cand: np.ndarray):
    """Plaintext greedy decoding whose argmax sees the ``cand`` tokens only."""
    seq = torch.as_tensor(prompt, dtype=torch.long)
    logits = []
    with torch.no_grad():
        for _ in range(n):
            last = hf(seq, use_cache=False).logits[:, -1].float()
            logits.append(last.numpy())
            tok = torch.as_tensor(cand)[last[:, cand].argmax(-1)]
            seq = torch.cat([seq, tok[:, None]], dim=1)
    return seq[:, prompt.shape[1] :].numpy(), np.stack(logits)


CANDIDATES = np.sort(np.random.RandomState(3).choice(VOCAB, 40, replace=False)).astype(np.int32)


@pytest.mark.parametrize("run", [("cpu",), ("spu", "ABY3", "FM64")])
def test_candidates_restrict_the_argmax_to_their_tokens(hf, run):
    """candidates=: every id is one of them, and equals plaintext greedy over them wherever the
    top-1 margin among them exceeds twice the logits error (cpu: exactly)."""
    s = get_session(*run)
    dec = Decoder(hf, s, prompt_len=T, max_new_tokens=N, route="flax", candidates=CANDIDATES)
    compared, skips = 0, []
    try:
        for p, prompt in enumerate(PROMPTS):
            want, ref_logits = torch_greedy_among(hf, prompt, N, CANDIDATES)
            assert not np.array_equal(want, torch_greedy(hf, prompt, N)[0])  # it matters here
            got = dec.generate(prompt).ids
            assert np.isin(got, CANDIDATES).all()
            logits, am = dec.forced(prompt, want[:, :-1])
            err = np.abs(logits - ref_logits).max(axis=(1, 2))
            top2 = np.sort(ref_logits[..., CANDIDATES], axis=-1)[..., -2:]
            decisive = (top2[..., 1] - top2[..., 0]).min(axis=1) > 2 * err
            skips += [(p, int(t)) for t in np.nonzero(~decisive)[0]]
            assert np.array_equal(am.T[:, decisive], want[:, decisive])
            upto = int(np.argmin(decisive)) if not decisive.all() else N
            assert np.array_equal(got[:, :upto], want[:, :upto]), (p, got, want, upto)
            compared += int(decisive.sum())
    finally:
        dec.close()
    print(f"{run}: {compared} candidate steps compared, near-ties skipped: {skips}")
    assert compared >= len(PROMPTS) * N // 2


@pytest.mark.parametrize(
    ("cand", "kw", "msg"),
    [
        ([], {}, "non-empty 1-D list"),
        ([3, 2], {}, "strictly increasing"),
        ([1, 1, 2], {}, "strictly increasing"),
        ([0, VOCAB], {}, f"candidate token id {VOCAB} is outside"),
        ([0.5, 2.0], {}, "integer token ids"),
        ([1, 2], {"argmax": "spu"}, "candidates need argmax='tree'"),
    ],
)
def test_bad_candidates_are_refused_before_any_sharing(hf, cand, kw, msg):
    s = get_session("cpu")
    first = len(s.reports)
    with pytest.raises(GenerationError, match=msg):
        generate(hf, PROMPTS[0], 2, session=s, route="flax", candidates=cand, **kw)
    assert len(s.reports) == first  # nothing was put
