"""ppml_torch/train/loop.py: ``ppml_torch.fit`` against torch eager training (same init, same
batches), on both routes, in plaintext and under MPC; what it puts and reveals.

Weights are compared with the tolerance table of ppml_torch/testing.py.  The programs fit
runs are tested on their own in test_programs.py, its argument checks in test_checks.py.
"""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
import torch
import torch.nn as nn

import ppml_torch
from ppml_torch.testing import assert_close
from ppml_torch.train import horizontal, vertical
from tests.sessions import get_session, record_error
from tests.train.toy import ROUTES, RUNS, session_of, split, tiny_data, tiny_mlp, torch_eager


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("backend,protocol", RUNS)
def test_fit_matches_torch_eager(route, backend, protocol):
    x, y = tiny_data()
    s = session_of(backend, protocol)
    module = tiny_mlp()
    ref, ref_losses = torch_eager(
        tiny_mlp(), nn.MSELoss(), x, y, lr=0.2, epochs=2, batch_size=8
    )  # batches of 8, 8 and a partial 4
    opt = torch.optim.SGD(module.parameters(), lr=0.2)
    out, history = ppml_torch.fit(
        module, nn.MSELoss(), opt, split(x, y), route=route, session=s, epochs=2,
        batch_size=8, progress=False, reveal_loss=True,
    )  # fmt: skip
    assert out is module
    assert (history.batches_per_epoch, history.partial_batch, history.dropped_rows) == (2, 4, 0)
    # graph: the partial batch of 4 runs padded in the batch-of-8 program (one conversion);
    # flax is shape-polymorphic and runs it at its own 4 rows
    assert history.partial_padded == (route == "graph") and history.padding_refused is None
    assert history.conversions == 1
    err = assert_close(
        {k: v.numpy() for k, v in module.state_dict().items()},
        {k: v.detach().numpy() for k, v in ref.state_dict().items()},
        protocol=protocol, what=f"fit weights ({route})",
    )  # fmt: skip
    record_error(f"fit {route} {protocol or 'cpu'}", err)
    assert_close(np.array(history.loss), np.array(ref_losses), protocol=protocol, what="losses")
    # the weights moved, and the returned module predicts with them
    init = tiny_mlp()
    assert (
        max(
            (a - b).abs().max().item()
            for a, b in zip(init.parameters(), module.parameters(), strict=True)
        )
        > 1e-2
    )
    with torch.no_grad():
        assert_close(
            module(torch.as_tensor(x)).numpy(), ref(torch.as_tensor(x)).numpy(), protocol=protocol
        )
    if backend == "spu":
        assert all(e.comm is not None and e.comm.send_bytes > 0 for e in history.epochs)
        assert history.epochs[0].compile_s > 0 and history.epochs[1].compile_s == 0.0


@pytest.mark.parametrize("backend,protocol", RUNS)
def test_weights_put_once_and_revealed_once(backend, protocol):
    x, y = tiny_data()
    s = session_of(backend, protocol)
    start = len(s.record)
    module = tiny_mlp()
    n_weights = len(module.state_dict())
    _, history = ppml_torch.fit(
        module, nn.MSELoss(), torch.optim.SGD(module.parameters(), lr=0.1), split(x, y),
        route="flax", session=s, epochs=3, batch_size=8, progress=False,
    )  # fmt: skip
    events = s.record[start:]
    puts = [(e.party, len(e.handle.avals)) for e in events if e.kind == "put"]
    reveals = [(e.party, len(e.handle.avals)) for e in events if e.kind == "reveal"]
    # the weights (4 tensors) once by alice, then alice's block, bob's block, bob's labels
    assert puts == [("alice", n_weights), ("alice", 1), ("bob", 1), ("bob", 1)]
    if backend == "cpu":  # plaintext: the loss is read every epoch (nothing is secret)
        assert all(isinstance(v, float) for v in history.loss)
        assert reveals == [(None, 1)] * 3 + [("alice", n_weights)]
    else:  # MPC: not revealed unless asked; the sentinel's one bit per epoch, to bob
        assert history.loss == [None, None, None]
        assert reveals == [("bob", 1)] * 3 + [("alice", n_weights)]
    # the trained weights revealed once, to alice, after the last epoch
    assert events[-1].kind == "reveal"


def test_loss_reveal_is_recorded_to_label_owner():
    x, y = tiny_data()
    s = session_of("cpu", None)
    start = len(s.record)
    module = tiny_mlp()
    _, history = ppml_torch.fit(
        module, nn.MSELoss(), torch.optim.SGD(module.parameters(), lr=0.1), split(x, y),
        route="flax", session=s, epochs=2, batch_size=8, progress=False, reveal_loss=True,
    )  # fmt: skip
    reveals = [(e.party, len(e.handle.avals)) for e in s.record[start:] if e.kind == "reveal"]
    assert reveals == [("bob", 1), ("bob", 1), ("alice", 4)]
    assert all(isinstance(v, float) for v in history.loss)


@pytest.mark.parametrize("route", ROUTES)
def test_shuffle_drop_last_and_column_order(route):
    """Non-contiguous columns, a public shuffle per epoch, the partial batch dropped."""
    x, y = tiny_data(n=21)
    module = tiny_mlp()
    data = vertical(
        {"alice": ([0, 2, 4], x[:, [0, 2, 4]]), "bob": ([1, 3, 5], x[:, [1, 3, 5]])},
        labels=("bob", y),
        weights_owner="alice",
        weights_to="bob",
    )
    rng = np.random.default_rng(7)
    orders = [rng.permutation(21) for _ in range(3)]
    ref, _ = torch_eager(
        tiny_mlp(), nn.MSELoss(), x, y, lr=0.2, epochs=3, batch_size=5, orders=orders,
        drop_last=True,
    )  # fmt: skip
    s = session_of("cpu", None)
    start = len(s.record)
    _, history = ppml_torch.fit(
        module, nn.MSELoss(), torch.optim.SGD(module.parameters(), lr=0.2), data, route=route,
        session=s, epochs=3, batch_size=5, shuffle=True, seed=7, drop_last=True, progress=False,
    )  # fmt: skip
    assert (history.batches_per_epoch, history.partial_batch, history.dropped_rows) == (4, 0, 1)
    assert_close(
        [v.numpy() for v in module.state_dict().values()],
        [v.detach().numpy() for v in ref.state_dict().values()],
        what="shuffled fit",
    )
    # the loss of each epoch (plaintext: read by everyone), then the weights to weights_to
    assert [e.party for e in s.record[start:] if e.kind == "reveal"] == [None] * 3 + ["bob"]
    # the shuffle orders are public puts, one per epoch
    assert [e.party for e in s.record[start:] if e.kind == "put"].count(None) == 3


def test_horizontal_split_and_loaders():
    x, y = tiny_data(n=20)
    calls = []

    def loader(arr, who):
        def load():
            calls.append(who)
            return arr

        return load

    data = horizontal(
        {
            "alice": (loader(x[:12], "alice x"), loader(y[:12], "alice y")),
            "bob": (loader(x[12:], "bob x"), loader(y[12:], "bob y")),
        },
        weights_owner="bob",
    )
    module = tiny_mlp()
    ref, _ = torch_eager(tiny_mlp(), nn.MSELoss(), x, y, lr=0.2, epochs=2, batch_size=6)
    ppml_torch.fit(
        module, nn.MSELoss(), torch.optim.SGD(module.parameters(), lr=0.2), data,
        route="flax", session=session_of("cpu", None), epochs=2, batch_size=6, progress=False,
    )  # fmt: skip
    assert sorted(calls) == ["alice x", "alice y", "bob x", "bob y"]  # each loader once
    assert_close(
        [v.numpy() for v in module.state_dict().values()],
        [v.detach().numpy() for v in ref.state_dict().values()],
        what="horizontal fit",
    )


@pytest.mark.parametrize("route", ROUTES)
def test_cross_entropy_with_class_labels(route):
    x, _ = tiny_data(n=16)
    y = (np.argmax(x[:, :3], axis=1)).astype(np.int64)
    module = tiny_mlp(n_out=3)
    ref, _ = torch_eager(
        tiny_mlp(n_out=3), nn.CrossEntropyLoss(), x, y, lr=0.3, epochs=2, batch_size=8
    )
    ppml_torch.fit(
        module, nn.CrossEntropyLoss(), torch.optim.SGD(module.parameters(), lr=0.3),
        split(x, y), route=route, session="cpu", epochs=2, batch_size=8, progress=False,
    )  # fmt: skip
    assert_close(
        [v.numpy() for v in module.state_dict().values()],
        [v.detach().numpy() for v in ref.state_dict().values()],
        what="cross-entropy fit",
    )


class BatchCentered(nn.Module):
    """Subtracts the batch mean of its hidden layer: the rows of a batch mix."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.a, self.b = nn.Linear(6, 4), nn.Linear(4, 1)

    def forward(self, x):
        h = torch.relu(self.a(x))
        return self.b(h - h.mean(dim=0, keepdim=True))


@pytest.mark.parametrize("backend,protocol", RUNS)
def test_row_mixing_module_converts_its_partial_batch(backend, protocol):
    """Padding would change this model's numbers: fit converts the partial shape instead, and
    predict converts new row counts; both still equal torch eager."""
    from ppml_torch.train.cache import conversions

    x, y = tiny_data(n=20)
    module, ref = BatchCentered(), BatchCentered()
    ref, _ = torch_eager(ref, nn.MSELoss(), x, y, lr=0.2, epochs=2, batch_size=8)
    _, history = ppml_torch.fit(
        module, nn.MSELoss(), torch.optim.SGD(module.parameters(), lr=0.2), split(x, y),
        session=session_of(backend, protocol), epochs=2, batch_size=8, progress=False,
    )  # fmt: skip
    assert not history.partial_padded and history.conversions == 2
    assert "changes with the other rows" in history.padding_refused
    assert_close(
        [v.numpy() for v in module.state_dict().values()],
        [v.detach().numpy() for v in ref.state_dict().values()],
        protocol=protocol, what="row-mixing fit",
    )  # fmt: skip
    out = ppml_torch.predict(module, x[:5], session="cpu")
    with torch.no_grad():
        assert_close(out, module(torch.as_tensor(x[:5])).numpy(), what="row-mixing predict")
    assert conversions(module, "graph").conversions == 3


def test_run_spec_session_is_opened_and_closed():
    x, y = tiny_data()
    module = tiny_mlp()
    ref, _ = torch_eager(tiny_mlp(), nn.MSELoss(), x, y, lr=0.2, epochs=1, batch_size=20)
    ppml_torch.fit(
        module, nn.MSELoss(), torch.optim.SGD(module.parameters(), lr=0.2), split(x, y),
        route="flax", session="spu:SEMI2K", epochs=1, batch_size=20, progress=False,
    )  # fmt: skip
    assert_close(
        [v.numpy() for v in module.state_dict().values()],
        [v.detach().numpy() for v in ref.state_dict().values()],
        protocol="SEMI2K",
    )


@pytest.mark.parametrize("route", ROUTES)
def test_parameters_outside_the_optimizer_stay_fixed(route):
    """Only what the optimizer updates is trained (here: the last layer), as in torch."""
    x, y = tiny_data()
    module, ref = tiny_mlp(), tiny_mlp()
    module[0].weight.requires_grad_(False)  # in no optimizer and frozen
    opt = torch.optim.SGD(module[2].parameters(), lr=0.2)
    ref_opt = torch.optim.SGD(ref[2].parameters(), lr=0.2)
    first = module[0].weight.detach().clone(), module[0].bias.detach().clone()
    ppml_torch.fit(
        module, nn.MSELoss(), opt, split(x, y), route=route, session="cpu", epochs=2,
        batch_size=8, progress=False,
    )  # fmt: skip
    xt, yt = torch.as_tensor(x), torch.as_tensor(y)
    for _ in range(2):
        for a in range(0, 20, 8):
            ref_opt.zero_grad()
            nn.MSELoss()(ref(xt[a : a + 8]), yt[a : a + 8]).backward()
            ref_opt.step()
    assert torch.equal(module[0].weight, first[0]) and torch.equal(module[0].bias, first[1])
    assert not torch.equal(module[2].weight, tiny_mlp()[2].weight)
    assert_close(
        [v.numpy() for v in module.state_dict().values()],
        [v.detach().numpy() for v in ref.state_dict().values()],
        what="partly frozen fit",
    )


@pytest.mark.parametrize("route", ROUTES)
def test_frozen_parameters_are_bit_identical_under_mpc(route):
    """Frozen parameters are not revealed (they never change): they come back bit for bit,
    not rounded through fixed point; only the trained ones are revealed, once."""
    x, y = tiny_data()
    module = tiny_mlp()
    module[0].weight.requires_grad_(False)
    module[2].bias.requires_grad_(False)
    before = {k: v.clone() for k, v in module.state_dict().items()}
    s = session_of("spu", "SEMI2K")
    start = len(s.record)
    opt = torch.optim.SGD(module.parameters(), lr=0.2, momentum=0.9)  # frozen ones in the group
    ppml_torch.fit(
        module, nn.MSELoss(), opt, split(x, y), route=route, session=s, epochs=2, batch_size=8,
        progress=False,
    )  # fmt: skip
    after = module.state_dict()
    assert torch.equal(after["0.weight"], before["0.weight"])
    assert torch.equal(after["2.bias"], before["2.bias"])
    assert not torch.equal(after["0.bias"], before["0.bias"])
    assert not torch.equal(after["2.weight"], before["2.weight"])
    reveals = [(e.party, len(e.handle.avals)) for e in s.record[start:] if e.kind == "reveal"]
    # the sentinel's bit per epoch to bob; then 0.bias, 2.weight and the group's momentum
    # buffer (one vector), once, to alice
    assert reveals == [("bob", 1), ("bob", 1), ("alice", 3)]


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("kind", ["Adam", "SGD-momentum"])
def test_every_epoch_reuses_the_first_compiled_program(route, kind):
    """The optimizer state starts with the visibility an epoch gives it (the moments secret),
    so SPU compiles the epoch program once."""
    from ppml_torch.train.optim import MpcAdamWarning

    x, y = tiny_data()
    module = tiny_mlp()
    if kind == "Adam":
        opt = torch.optim.Adam(module.parameters(), lr=0.01)
    else:
        opt = torch.optim.SGD(module.parameters(), lr=0.1, momentum=0.9)
    with pytest.warns(MpcAdamWarning) if kind == "Adam" else contextlib.nullcontext():
        _, history = ppml_torch.fit(
            module, nn.MSELoss(), opt, split(x, y), route=route,
            session=session_of("spu", "SEMI2K"), epochs=3, batch_size=8, progress=False,
        )  # fmt: skip
    assert history.epochs[0].compile_s > 0
    assert [e.compile_s for e in history.epochs[1:]] == [0.0, 0.0]


@pytest.mark.secretflow
@pytest.mark.parametrize("route", ROUTES)
def test_fit_on_secretflow(route):
    """Both routes: SecretFlow compiles in its workers, so the epoch program (and the converted
    model inside it) travels there pickled.  Checked against torch eager and against the same
    fit on backend ``spu`` (same protocol and field)."""
    x, y = tiny_data(n=12)
    rng = np.random.default_rng(5)
    orders = [rng.permutation(12) for _ in range(2)]
    ref, ref_losses = torch_eager(
        tiny_mlp(), nn.MSELoss(), x, y, lr=0.2, epochs=2, batch_size=5, orders=orders
    )
    trained, losses = {}, {}
    for backend in ("spu", "secretflow"):
        s = get_session(backend, "SEMI2K", "FM64")
        module = tiny_mlp()
        start = len(s.record)
        _, history = ppml_torch.fit(
            module, nn.MSELoss(), torch.optim.SGD(module.parameters(), lr=0.2), split(x, y),
            route=route, session=s, epochs=2, batch_size=5, shuffle=True, seed=5,
            progress=False, reveal_loss=True,
        )  # fmt: skip
        # per epoch the sentinel's bit and the loss to bob; the weights to alice
        reveals = [e.party for e in s.record[start:] if e.kind == "reveal"]
        assert reveals == ["bob"] * 4 + ["alice"]
        trained[backend] = [v.numpy() for v in module.state_dict().values()]
        losses[backend] = np.array(history.loss)
    err = assert_close(
        trained["secretflow"],
        [v.detach().numpy() for v in ref.state_dict().values()],
        protocol="SEMI2K",
        what=f"secretflow fit ({route})",
    )
    record_error(f"fit secretflow {route} vs torch", err)
    assert_close(losses["secretflow"], np.array(ref_losses), protocol="SEMI2K", what="losses")
    err = assert_close(
        trained["secretflow"],
        trained["spu"],
        protocol="SEMI2K",
        what=f"secretflow vs spu ({route})",
    )
    record_error(f"fit secretflow {route} vs spu", err)
    print(f"\n{route}: max |secretflow - spu| weights {err:.2e}")


@pytest.fixture(scope="module")
def breast_cancer():
    from ppml_torch.apps.homework.data import load_data

    return load_data()


def homework_mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(30, 15), nn.ReLU(), nn.Linear(15, 8), nn.ReLU(), nn.Linear(8, 1)
    )  # fmt: skip


@pytest.fixture(scope="module")
def eager_auc(breast_cancer):
    from sklearn.metrics import roc_auc_score

    d = breast_cancer
    ref, _ = torch_eager(
        homework_mlp(), nn.BCEWithLogitsLoss(), d.x_train, d.y_train, lr=0.5, epochs=2,
        batch_size=32,
    )  # fmt: skip
    with torch.no_grad():
        scores = ref(torch.as_tensor(d.x_test)).numpy()
    return roc_auc_score(d.y_test.ravel(), scores.ravel())


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("backend,protocol", RUNS)
def test_breast_cancer_auc_matches_torch_eager(breast_cancer, eager_auc, route, backend, protocol):
    """The homework split (alice 0-14, bob 15-29 + labels), 2 epochs: AUC within 0.01."""
    from sklearn.metrics import roc_auc_score

    d = breast_cancer
    data = vertical(
        {"alice": (range(0, 15), d.x_alice_train), "bob": (range(15, 30), d.x_bob_train)},
        labels=("bob", d.y_train),
        weights_owner="alice",
    )
    test = vertical(
        {"alice": (range(0, 15), d.x_alice_test), "bob": (range(15, 30), d.x_bob_test)},
        weights_owner="alice",
    )
    s = session_of(backend, protocol)
    module = homework_mlp()
    ppml_torch.fit(
        module, nn.BCEWithLogitsLoss(), torch.optim.SGD(module.parameters(), lr=0.5), data,
        route=route, session=s, epochs=2, batch_size=32, progress=False,
    )  # fmt: skip
    scores = ppml_torch.predict(module, test, route=route, session=s, reveal_to="bob")
    auc = roc_auc_score(d.y_test.ravel(), scores.ravel())
    assert eager_auc > 0.95
    assert abs(auc - eager_auc) <= 0.01, (auc, eager_auc)
