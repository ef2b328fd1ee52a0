"""Train a torch MLP under MPC with ``ppml_torch.fit`` and get the trained torch module back.

The breast-cancer data split vertically as in the SecretFlow homework: alice holds features
0-14, bob features 15-29 and the labels; alice owns the initial weights and receives the
trained ones.  Each owner min-max scales its own columns.  The same loop in torch eager gives
the reference AUC.

    python examples/fit_breast_cancer.py --session spu:SEMI2K --route graph --epochs 3
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
import torch.nn as nn


def load() -> tuple[np.ndarray, ...]:
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split

    x, y = load_breast_cancer(return_X_y=True)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.2, random_state=42)

    def scale(cols_tr, cols_te):  # each owner scales its own columns with its own statistics
        lo, hi = cols_tr.min(axis=0), cols_tr.max(axis=0)
        span = np.where(hi > lo, hi - lo, 1.0)
        return ((cols_tr - lo) / span).astype(np.float32), ((cols_te - lo) / span).astype(
            np.float32
        )

    a_tr, a_te = scale(x_tr[:, :15], x_te[:, :15])
    b_tr, b_te = scale(x_tr[:, 15:], x_te[:, 15:])
    f32 = lambda a: np.asarray(a, np.float32).reshape(-1, 1)  # noqa: E731
    return a_tr, b_tr, f32(y_tr), a_te, b_te, f32(y_te)


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(30, 15), nn.ReLU(), nn.Linear(15, 8), nn.ReLU(), nn.Linear(8, 1))


def main(argv: list[str] | None = None) -> int:
    import ppml_torch
    from ppml_torch.train import vertical

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    p.add_argument("--session", default="spu:SEMI2K", help="run spec, e.g. cpu, spu:ABY3")
    p.add_argument("--route", default="graph", choices=("graph", "flax"))
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=0.5)
    args = p.parse_args(argv)
    from sklearn.metrics import roc_auc_score

    a_tr, b_tr, y_tr, a_te, b_te, y_te = load()
    data = vertical(
        {"alice": (range(0, 15), a_tr), "bob": (range(15, 30), b_tr)},
        labels=("bob", y_tr),
        weights_owner="alice",  # puts the initial weights, receives the trained ones
    )
    test = vertical(
        {"alice": (range(0, 15), a_te), "bob": (range(15, 30), b_te)}, weights_owner="alice"
    )

    model = mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr)
    model, history = ppml_torch.fit(
        model, nn.BCEWithLogitsLoss(), optimizer, data,
        route=args.route, session=args.session, epochs=args.epochs,
        batch_size=args.batch_size, reveal_loss=True,  # the loss is revealed to bob: opt-in
    )  # fmt: skip
    print(history)  # the epochs as a table
    scores = ppml_torch.predict(
        model, test, route=args.route, session=args.session, reveal_to="bob"
    )
    auc = roc_auc_score(y_te.ravel(), scores.ravel())

    ref = mlp()  # the same loop in torch eager
    opt = torch.optim.SGD(ref.parameters(), lr=args.lr)
    x, y = torch.as_tensor(np.concatenate([a_tr, b_tr], 1)), torch.as_tensor(y_tr)
    for _ in range(args.epochs):
        for i in range(0, len(x), args.batch_size):
            opt.zero_grad()
            nn.BCEWithLogitsLoss()(
                ref(x[i : i + args.batch_size]), y[i : i + args.batch_size]
            ).backward()
            opt.step()
    with torch.no_grad():
        ref_auc = roc_auc_score(
            y_te.ravel(), ref(torch.as_tensor(np.concatenate([a_te, b_te], 1))).numpy().ravel()
        )
    diff = max(
        (p - q).abs().max().item()
        for p, q in zip(model.parameters(), ref.parameters(), strict=True)
    )
    print(f"{args.session} {args.route}: test AUC {auc:.5f} (torch eager {ref_auc:.5f}), "
          f"max |weight difference| vs torch eager {diff:.2e}, wall {history.wall_s:.1f}s")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
