"""One party of a multi-process test run (started by processes.run_parties, not collected).

    python tests/runners/prod_party.py SCENARIO CLUSTER_FILE PARTY

Prints ``RESULT <json>`` lines that the tests read.
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np


def main() -> int:
    scenario, cluster, party = sys.argv[1:4]
    import jax

    from ppml_torch.runners import open_session

    if scenario == "generate":
        return generate(cluster, party)
    if scenario == "fit_loss":
        return fit_loss(cluster, party)

    with open_session("secretflow", cluster=cluster, party=party) as s:
        from secretflow.distributed.fed.global_context import get_global_context

        proxy = get_global_context()._proxy
        sent: list[tuple[str, str]] = []
        orig = proxy.send

        def spy(dest, data, seq):  # what this party hands to its cross-silo channel
            sent.append((dest, type(data).__name__))
            return orig(dest, data, seq)

        proxy.send = spy
        a = np.arange(4, dtype=np.float32).reshape(2, 2)
        b = np.full((2, 2), 3.0, np.float32)
        shape = jax.ShapeDtypeStruct((2, 2), np.float32)
        ha = s.put(a if party == "alice" else shape, owner="alice")
        hb = s.put((lambda: b) if party == "bob" else (lambda: None), owner="bob")
        if scenario == "stall" and party == "bob":
            time.sleep(1000)
        hz = s.call(lambda x, y: x @ y + 1.0, ha, hb)
        to_bob = s.reveal(hz, to="bob")
        time.sleep(1.0)  # sends are asynchronous: let them reach the spy
        until_reveal = list(sent)
        everyone = s.reveal(hz)
        from ppml_torch.runners import wrap

        # wrap: called the same way in every process, each giving its own data or shapes
        mul = wrap(s, lambda x, y: x * y, ["alice", "bob"], reveal_to="alice")
        wrapped = mul(a if party == "alice" else shape, b if party == "bob" else shape)
        leak = None
        if scenario == "sf_reveal":  # what SecretFlow's own sf.reveal does at the receiver
            import secretflow as sf

            moved = s._objects[hz.key].to(s._pyus["bob"])
            before = len(sent)
            if party == "bob":
                sf.reveal(moved)
            else:
                sf.reveal(moved)  # every party has to call it: fed.get is collective
            time.sleep(1.0)
            leak = [x for x in sent[before:] if x[1] == "ndarray"]
    print(
        "RESULT "
        + json.dumps(
            {
                "party": party,
                "to_bob": None if to_bob is None else np.asarray(to_bob).tolist(),
                "everyone": np.asarray(everyone).tolist(),
                "wrapped": None if wrapped is None else np.asarray(wrapped).tolist(),
                "sends_until_reveal_to_bob": until_reveal,
                "sf_reveal_ndarray_sends": leak,
                "startup_s": s.startup_s,
            }
        ),
        flush=True,
    )
    return 0


def tiny_gpt2(seed: int):
    """A tiny HF GPT-2 (2 layers, width 32, vocabulary 300, wide init: varied greedy ids)."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    cfg = GPT2Config(
        n_layer=2, n_embd=32, n_head=2, vocab_size=300, n_positions=32, initializer_range=0.3
    )
    return GPT2LMHeadModel(cfg).eval()


PROMPT = np.array([[11, 250, 7, 99, 42]], np.int32)
NEW_TOKENS = 4


def generate(cluster: str, party: str) -> int:
    """generate across processes: alice's weights, bob's prompt, the ids to bob only.

    alice builds the model from seed 0 (the weights); bob and carol from seed 1: their
    module gives the architecture only, its weights are never read.  bob passes the ids,
    alice a shape-only placeholder, carol None."""
    import jax

    from ppml_torch.generation import generate as gen
    from ppml_torch.runners import open_session

    model = tiny_gpt2(0 if party == "alice" else 1)
    prompt = {
        "bob": PROMPT,
        "alice": jax.ShapeDtypeStruct(PROMPT.shape, np.int32),
        "carol": None,
    }[party]
    with open_session("secretflow", cluster=cluster, party=party) as s:
        g = gen(model, prompt, NEW_TOKENS, session=s, route="flax")
        puts = [o for _, o in g.puts]
    out = {"party": party, "ids": None if g.ids is None else g.ids.tolist(), "puts": puts}
    print("RESULT " + json.dumps(out), flush=True)
    return 0


def fit_loss(cluster: str, party: str) -> int:
    """fit with reveal_loss=True (to bob, the label owner), 2 epochs of a tiny regression:
    alice's features 0-1 and weights, bob's features 2-3 and labels; weights_to=bob."""
    import jax
    import torch

    from ppml_torch.train import fit, predict, vertical

    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (24, 4)).astype(np.float32)
    y = (x @ np.array([[0.5], [-1.0], [0.25], [1.0]], np.float32)).astype(np.float32)
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(4, 1))
    opt = torch.optim.SGD(module.parameters(), lr=0.1)

    def block(owner, value):
        return value if party == owner else jax.ShapeDtypeStruct(value.shape, value.dtype)

    data = vertical(
        {"alice": (range(0, 2), block("alice", x[:, :2])), "bob": (range(2, 4), lambda: x[:, 2:])},
        labels=("bob", block("bob", y)),
        weights_owner="alice",
        weights_to="bob",
    )
    from ppml_torch.runners import open_session

    with open_session("secretflow", cluster=cluster, party=party) as s:
        trained, hist = fit(
            module, torch.nn.MSELoss(), opt, data, route="flax", session=s, epochs=2,
            batch_size=8, reveal_loss=True, progress=False,
        )  # fmt: skip
        test = vertical(
            {"alice": (range(0, 2), block("alice", x[:4, :2])), "bob": (range(2, 4), block("bob", x[:4, 2:]))},
            weights_owner="bob",
        )  # fmt: skip
        scores = predict(
            trained if trained is not None else module,
            test,
            route="flax",
            session=s,
            reveal_to="alice",
        )
    out = {
        "party": party,
        "loss": hist.loss,
        "weights": None
        if trained is None
        else {k: v.detach().numpy().tolist() for k, v in trained.state_dict().items()},
        "scores": None if scores is None else scores.tolist(),
        "weights_to": hist.weights_to,
    }
    print("RESULT " + json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
