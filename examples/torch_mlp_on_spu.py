"""A torch MLP, converted two ways, run on SPU and compared with torch.

    .venv/bin/python examples/torch_mlp_on_spu.py [--protocol ABY3] [--field FM64]

The weights belong to alice, the batch to bob; only the output is revealed.
"""

from __future__ import annotations

import argparse


def main(argv: list[str] | None = None) -> int:
    import numpy as np
    import torch

    import ppml_torch
    from ppml_torch.runners import open_session, wrap
    from ppml_torch.testing import max_abs_error

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--protocol", default="SEMI2K")
    p.add_argument("--field", default="FM64")
    args = p.parse_args(argv)

    torch.manual_seed(0)
    module = torch.nn.Sequential(
        torch.nn.Linear(30, 15),
        torch.nn.ReLU(),
        torch.nn.Linear(15, 8),
        torch.nn.ReLU(),
        torch.nn.Linear(8, 1),
    ).eval()
    x = torch.rand(16, 30)
    with torch.no_grad():
        expected = module(x).numpy()

    routes = {
        "graph (convert)": ppml_torch.convert(module, (x,)),
        "flax (to_flax)": ppml_torch.to_flax(module),
    }
    with open_session("spu", args.protocol, args.field) as s:
        for name, model in routes.items():
            f = wrap(s, model.apply, owners=("alice", "bob"))
            out = np.asarray(f(model.params, x.numpy()))
            print(
                f"{name:<16} {args.protocol}/{args.field}: max abs error vs torch "
                f"{max_abs_error(out, expected):.2e}; {f.last_report.describe()}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
