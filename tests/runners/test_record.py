"""``Session.record``: every put (by whom) and reveal (to whom, when), in order."""

from __future__ import annotations

import numpy as np

from ppml_torch.runners import open_session


def test_record_lists_puts_and_reveals():
    with open_session("cpu") as s:
        a = s.put(np.ones(3, np.float32), owner="alice")
        b = s.put(np.ones(3, np.float32), owner="public")
        c = s.call(lambda x, y: x + y, a, b)
        s.reveal(c, to="bob")
        s.reveal(c)
        assert [(e.kind, e.handle.key, e.party) for e in s.record] == [
            ("put", a.key, "alice"),
            ("put", b.key, None),
            ("reveal", c.key, "bob"),
            ("reveal", c.key, None),
        ]
        times = [e.at for e in s.record]
        assert times == sorted(times)
