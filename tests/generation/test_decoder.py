"""ppml_torch/generation/decoder.py: ``print(generation)`` gives its table (issue 19); the
library's plaintext copy of the weights is dropped once shared, the user's module is left as it
was, and a put after ``close()`` reads it again."""

from __future__ import annotations

import gc
import weakref

import jax
import numpy as np
import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from ppml_torch.generation import Decoder, Generation
from ppml_torch.runners.base import RunReport
from ppml_torch.runners.comm import CommStats
from tests.sessions import get_session

pytestmark = pytest.mark.filterwarnings("ignore:.*LeafSpec.*:FutureWarning")

PROMPT = np.array([[5, 17, 3, 40]], np.int32)


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


def _hf() -> GPT2LMHeadModel:
    torch.manual_seed(0)
    cfg = GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=64, n_positions=16)
    return GPT2LMHeadModel(cfg).eval()


@pytest.mark.parametrize("route", ["graph", "flax"])
def test_weights_copy_dropped_once_shared_and_module_untouched(route):
    """Catches a decoder that keeps its converted copy of the weights alive after the put
    (planted: programs' params kept, or the step functions closing over them: the weak
    reference stayed alive), one that alters the user's module, and one that cannot put the
    weights again after close() (the second generation must give the same ids)."""
    hf = _hf()
    before = {k: v.clone() for k, v in hf.state_dict().items()}
    s = get_session("spu", "SEMI2K", "FM64")
    dec = Decoder(hf, s, prompt_len=PROMPT.shape[1], max_new_tokens=3, route=route)
    ref = weakref.ref(jax.tree_util.tree_leaves(dec.programs.params)[0])
    try:
        first = dec.generate(PROMPT).ids
        assert dec.programs.params is None
        gc.collect()
        assert ref() is None, "the library's copy of the weights is still alive"
        dec.close()
        again = dec.generate(PROMPT)  # weights put again, from the module
        assert again.weights_put is not None
        np.testing.assert_array_equal(again.ids, first)
    finally:
        dec.close()
    after = hf.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
