"""One party of a multi-process test run (started by test_secretflow_prod.py, not collected).

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


if __name__ == "__main__":
    sys.exit(main())
