"""Who owns the weights and who owns the data, named once from a session's parties.

A run with a model owner and a data owner (``generate``, ``check_equivalence``, the GPT-2
app) takes its roles from the session's parties in order: the first party holds the weights
(and gets them back after training), the second holds the data (features, labels, a prompt)
and receives the outputs; a third party (ABY3) holds shares only.  With the default parties
that is alice (weights) and bob (data), carol computing.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from .config import DEFAULT_PARTIES, ConfigError


@dataclasses.dataclass(frozen=True)
class Roles:
    weights: str  # puts the model's weights in
    data: str  # puts the inputs in (features, labels, a prompt) and receives the outputs


def roles(parties: Sequence[str] = DEFAULT_PARTIES) -> Roles:
    """The roles of a session's ``parties`` (default: the parties a session opens with)."""
    if len(parties) < 2:
        raise ConfigError(
            f"a run with a weights owner and a data owner needs two parties, got {list(parties)}"
        )
    return Roles(weights=parties[0], data=parties[1])
