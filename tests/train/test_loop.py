"""``ppml_torch.fit`` / ``predict`` against torch eager training (same init, same batches).

Plain SGD only for now (the optimizer mapping is a stand-in until ppml_torch/train/optim.py
lands).  Weights are compared with the tolerance table of ppml_torch/testing.py.
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

ROUTES = ("graph", "flax")
RUNS = [("cpu", None), ("spu", "SEMI2K")]


def tiny_mlp(seed: int = 0, n_in: int = 6, n_out: int = 1) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(n_in, 4), nn.ReLU(), nn.Linear(4, n_out))


def tiny_data(n: int = 20, n_in: int = 6, seed: int = 1):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, (n, n_in)).astype(np.float32)
    y = (x[:, :1] - 0.5 * x[:, 3:4] > 0).astype(np.float32)
    return x, y


def torch_eager(module, loss_fn, x, y, *, lr, epochs, batch_size, orders=None, drop_last=False):
    """The torch loop fit mirrors: SGD over consecutive batches of the (permuted) rows."""
    opt = torch.optim.SGD(module.parameters(), lr=lr)
    xt, yt = torch.as_tensor(x), torch.as_tensor(y)
    losses = []
    for e in range(epochs):
        if orders is not None:
            idx = torch.as_tensor(orders[e])
            xe, ye = xt[idx], yt[idx]
        else:
            xe, ye = xt, yt
        total, seen = 0.0, 0
        for a in range(0, len(xe), batch_size):
            xb, yb = xe[a : a + batch_size], ye[a : a + batch_size]
            if drop_last and len(xb) < batch_size:
                break
            opt.zero_grad()
            loss = loss_fn(module(xb), yb)
            loss.backward()
            opt.step()
            total, seen = total + loss.item() * len(xb), seen + len(xb)
        losses.append(total / seen)
    return module, losses


def split(x, y, *, labels=True):
    return vertical(
        {"alice": (range(0, 3), x[:, :3]), "bob": (range(3, 6), x[:, 3:])},
        labels=("bob", y) if labels else None,
        weights_owner="alice",
    )


def session_of(backend, protocol):
    return get_session(backend, protocol, "FM64" if protocol else None)


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
    assert history.loss == [None, None, None]  # not revealed unless asked
    events = s.record[start:]
    puts = [(e.party, len(e.handle.avals)) for e in events if e.kind == "put"]
    reveals = [(e.party, len(e.handle.avals)) for e in events if e.kind == "reveal"]
    # the weights (4 tensors) once by alice, then alice's block, bob's block, bob's labels
    assert puts == [("alice", n_weights), ("alice", 1), ("bob", 1), ("bob", 1)]
    # nothing revealed but the trained weights, once, to alice, after the last epoch
    assert reveals == [("alice", n_weights)]
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
    assert [e.party for e in s.record[start:] if e.kind == "reveal"] == ["bob"]  # weights_to
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


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("backend,protocol", RUNS)
def test_predict_reveals_only_to_receiver(route, backend, protocol):
    x, _ = tiny_data(n=9)
    module = tiny_mlp()
    s = session_of(backend, protocol)
    start = len(s.record)
    out = ppml_torch.predict(
        module, split(x, None, labels=False), route=route, session=s, reveal_to="bob"
    )
    with torch.no_grad():
        assert_close(out, module(torch.as_tensor(x)).numpy(), protocol=protocol, what="predict")
    assert [(e.kind, e.party) for e in s.record[start:]] == [
        ("put", "alice"), ("put", "alice"), ("put", "bob"), ("reveal", "bob"),
    ]  # fmt: skip


def test_conversions_are_cached_by_shape():
    """One conversion per module and training mode: the partial batch and predict on other
    row counts reuse the batch shape (the MLP is row-wise)."""
    from ppml_torch.train.cache import conversions

    x, y = tiny_data(n=20)
    module = tiny_mlp()
    opt = torch.optim.SGD(module.parameters(), lr=0.1)
    kw = dict(session="cpu", epochs=1, batch_size=8, progress=False)
    _, history = ppml_torch.fit(module, nn.MSELoss(), opt, split(x, y), **kw)
    cache = conversions(module, "graph")
    assert cache.conversions == 1  # the batch of 8; the kept partial batch of 4 is padded
    assert (history.conversions, history.partial_padded, history.partial_batch) == (1, True, 4)
    _, history = ppml_torch.fit(module, nn.MSELoss(), opt, split(x, y), **kw)
    assert history.conversions == 0
    ppml_torch.predict(module, x[:8], session="cpu")  # the batch shape: reused
    for n in (5, 20, 3):  # other row counts: chunks of the batch shape, no conversion
        out = ppml_torch.predict(module, x[:n], session="cpu")
        with torch.no_grad():  # predict uses the module's current (trained) weights
            assert_close(out, module(torch.as_tensor(x[:n])).numpy(), what=f"predict {n} rows")
    assert cache.conversions == 1
    ppml_torch.fit(module, nn.MSELoss(), opt, split(x, y), route="flax", **kw)
    ppml_torch.predict(module, x[:7], route="flax", session="cpu")
    assert conversions(module, "flax").conversions == 1  # the Flax route has no fixed shapes


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


def test_padded_partial_step_gradient_equals_unpadded():
    """The padded step's gradient is the gradient on the partial batch alone (plaintext)."""
    import jax

    from ppml_torch.train.cache import conversions

    x, y = tiny_data(n=8)
    module = tiny_mlp()
    cache = conversions(module, "graph")
    full, part = cache.get([((8, 6), np.float32)]), cache.get([((3, 6), np.float32)])
    params = cache.params(full)

    def mse(o, t):
        return jax.numpy.mean((o - t) ** 2)

    padded = jax.grad(lambda p: mse(full.apply(p, x)[-3:], y[-3:]))(params)
    alone = jax.grad(lambda p: mse(part.apply(p, x[-3:]), y[-3:]))(params)
    for k in params:
        np.testing.assert_allclose(padded[k], alone[k], rtol=1e-6, atol=1e-7, err_msg=k)


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
    assert reveals == [("alice", 2)]  # 0.bias and 2.weight


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


def test_secret_optimizer_leaves():
    """Which optimizer-state leaves training makes secret: the moments, not the counts."""
    import jax

    from ppml_torch.train.optim import from_torch
    from ppml_torch.train.state import secret_optimizer_leaves as _secret_opt_leaves

    module = tiny_mlp()
    train = {
        k: jax.ShapeDtypeStruct(tuple(v.shape), np.float32) for k, v in module.state_dict().items()
    }
    for opt, n_secret in [
        (torch.optim.SGD(module.parameters(), lr=0.1), 0),
        # one vector per param group (optim.py flattens each group's update)
        (torch.optim.SGD(module.parameters(), lr=0.1, momentum=0.9), 1),  # buffer; count public
        (torch.optim.Adam(module.parameters()), 2),  # mu, nu; beta powers public
    ]:
        tx = from_torch(opt, module).tx
        mask = _secret_opt_leaves(tx, train)
        n_leaves = len(jax.tree_util.tree_leaves(jax.eval_shape(tx.init, train)))
        assert sum(mask) == n_secret, mask
        assert n_leaves > n_secret or n_secret == 0, n_leaves  # some leaves stay public


def test_a_failure_frees_every_share(monkeypatch):
    from ppml_torch.runners import open_session

    x, y = tiny_data()
    module = tiny_mlp()
    before = {k: v.clone() for k, v in module.state_dict().items()}
    with open_session("cpu") as s:

        def broken_reveal(handle, to=None):
            raise RuntimeError("link lost")

        monkeypatch.setattr(s, "reveal", broken_reveal)
        with pytest.raises(RuntimeError, match="link lost"):
            ppml_torch.fit(
                module, nn.MSELoss(), torch.optim.SGD(module.parameters(), lr=0.1), split(x, y),
                route="flax", session=s, epochs=1, batch_size=8, progress=False,
            )  # fmt: skip
        assert s._values == {}  # nothing left inside the session
    assert all(torch.equal(before[k], v) for k, v in module.state_dict().items())


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
        assert [e.party for e in s.record[start:] if e.kind == "reveal"] == ["bob", "bob", "alice"]
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


# -- bad input: one line, before any session work -------------------------------------------------


def _sorted_loss(o, t):  # torch.sort has no lowering: the converter refuses the user's loss
    return (torch.sort(o, dim=0).values - t).abs().mean()


def _bad_cases():
    x, y = tiny_data()
    m = tiny_mlp()
    sgd = torch.optim.SGD(m.parameters(), lr=0.1)
    ok = split(x, y)
    other = torch.optim.SGD(tiny_mlp().parameters(), lr=0.1)
    return {
        "labels owned by no party": (m, nn.MSELoss(), sgd, split(x, y, labels=False), {}),
        "batch larger than data": (m, nn.MSELoss(), sgd, ok, {"batch_size": 21}),
        "optimizer not mapped": (m, nn.MSELoss(), torch.optim.Rprop(m.parameters()), ok, {}),
        "loss not a scalar": (m, nn.MSELoss(reduction="none"), sgd, ok, {}),
        "loss not mapped": (m, _sorted_loss, sgd, ok, {}),
        "loss not a loss": (m, "mse", sgd, ok, {}),
        "optimizer params not the module's": (m, nn.MSELoss(), other, ok, {}),
        "labels shape (n,) vs output (n, 1)": (m, nn.MSELoss(), sgd, split(x, y[:, 0]), {}),
        "party not in session": (
            m,
            nn.MSELoss(),
            sgd,
            vertical({"alice": (range(6), x)}, labels=("dave", y), weights_owner="alice"),
            {},
        ),  # fmt: skip
        "rows differ between parties": (
            m,
            nn.MSELoss(),
            sgd,
            vertical(
                {"alice": (range(3), x[:, :3]), "bob": (range(3, 6), x[:-1, 3:])},
                labels=("bob", y),
                weights_owner="alice",
            ),
            {},
        ),  # fmt: skip
        "block width differs from its columns": (
            m,
            nn.MSELoss(),
            sgd,
            vertical(
                {"alice": (range(2), x[:, :3]), "bob": (range(2, 6), x[:, 2:])},
                labels=("bob", y),
                weights_owner="alice",
            ),
            {},
        ),  # fmt: skip
        "unknown route": (m, nn.MSELoss(), sgd, ok, {"route": "onnx"}),
        "torch is no session": (m, nn.MSELoss(), sgd, ok, {"session": "torch"}),
        "bad epochs": (m, nn.MSELoss(), sgd, ok, {"epochs": 0}),
    }


BAD = _bad_cases()


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_one_line_before_any_session_work(case):
    from ppml_torch.errors import PpmlError

    module, loss, opt, data, kw = BAD[case]
    s = session_of("spu", "SEMI2K")
    n_record, n_reports = len(s.record), len(s.reports)
    kw = {"session": s, "progress": False, "batch_size": 8, **kw}
    with pytest.raises(PpmlError) as info:
        ppml_torch.fit(module, loss, opt, data, **kw)
    msg = str(info.value)
    assert msg and "\n" not in msg, msg
    assert (len(s.record), len(s.reports)) == (n_record, n_reports)  # nothing put, nothing run


def test_bad_run_spec_opens_nothing(monkeypatch):
    from ppml_torch.errors import PpmlError
    from ppml_torch.runners.runspec import RunSpec

    def no_open(self, **kw):
        raise AssertionError("a session was opened")

    monkeypatch.setattr(RunSpec, "open", no_open)
    x, y = tiny_data()
    m = tiny_mlp()
    with pytest.raises(PpmlError, match="batch_size 99"):
        ppml_torch.fit(
            m, nn.MSELoss(), torch.optim.SGD(m.parameters(), lr=0.1), split(x, y),
            session="spu:ABY3", batch_size=99, progress=False,
        )  # fmt: skip
