"""ppml_torch/generation/decoder.py: ``print(generation)`` gives its table (issue 19)."""

from __future__ import annotations

import numpy as np

from ppml_torch.generation import Generation
from ppml_torch.runners.base import RunReport
from ppml_torch.runners.comm import CommStats


def test_print_gives_the_row_and_the_ids():
    mib = CommStats(2**20, 10)
    reports = (
        RunReport("spu", "put #1", 0.0, 0.5),
        RunReport("spu", "prefill", 1.5, 0.25, mib),
        RunReport("spu", "decode_step", 0.0, 0.125, mib),
        RunReport("spu", "decode_step", 0.0, 0.375, mib),
    )
    g = Generation(
        ids=np.array([[7, 8, 9]]), route="graph", session="spu:ABY3:FM64", reports=reports,
        puts=(("put #1", "alice"),), weights_put=reports[0], prepare_s=0.1, wall_s=2.0,
    )  # fmt: skip
    assert str(g) == g.describe()
    assert str(g).splitlines() == [
        "route  session        share  prompt  token   compile  communication",
        "graph  spu:ABY3:FM64  0.50s  0.25s   0.250s  1.5s     3.00 MiB sent in 30 sends",
        "ids: [[7, 8, 9]]",
    ]
