"""What every weight map shares: the error type and the check that runs before any copy.

A weight map moves tensors between two naming schemes (torch ``state_dict`` names and
Flax parameter paths, or a HF checkpoint and nanoGPT).  Before anything is copied the
two sides are compared key by key and shape by shape; every disagreement is collected
and reported in one message, so a wrong config is fixed in one go.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np

Shape = tuple[int, ...]


class WeightMapError(ValueError):
    """Weights and target model disagree (keys, shapes or layers); nothing was copied."""


def shape_of(x: object) -> Shape:
    """The shape of a torch tensor, numpy or JAX array as a plain tuple of ints."""
    return tuple(int(d) for d in np.shape(x))


def check_shapes(
    expected: Mapping[str, Shape],
    actual: Mapping[str, Shape],
    *,
    what: str,
    fix: str,
    expected_name: str = "model",
    actual_name: str = "weights",
) -> None:
    """Raise :class:`WeightMapError` unless both sides have the same keys and shapes.

    ``expected`` is what the target model needs, ``actual`` what the weights provide.
    The message lists missing keys, unexpected keys and every shape disagreement
    (``key: model (a, b) vs weights (c, d)``), then ``fix``.
    """
    missing = sorted(set(expected) - set(actual))
    unexpected = sorted(set(actual) - set(expected))
    mismatched = [
        (k, tuple(expected[k]), tuple(actual[k]))
        for k in sorted(set(expected) & set(actual))
        if tuple(expected[k]) != tuple(actual[k])
    ]
    if not (missing or unexpected or mismatched):
        return
    lines = [f"{what}: the weights do not fit the model; nothing was copied."]
    if missing:
        lines.append(f"  missing in {actual_name} ({len(missing)}): " + _short(missing))
    if unexpected:
        lines.append(f"  not in {expected_name} ({len(unexpected)}): " + _short(unexpected))
    if mismatched:
        lines.append(f"  shape mismatches ({len(mismatched)}), {expected_name} vs {actual_name}:")
        lines += [f"    {k}: {e} vs {a}" for k, e, a in mismatched[:40]]
        if len(mismatched) > 40:
            lines.append(f"    ... and {len(mismatched) - 40} more")
    lines.append(f"  fix: {fix}")
    raise WeightMapError("\n".join(lines))


def _short(keys: Sequence[str], limit: int = 12) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")


def flatten(tree: Mapping, prefix: Iterable[str] = ()) -> dict[tuple[str, ...], object]:
    """A nested dict of arrays as ``{("transformer", "h", "0", ...): array}``."""
    out: dict[tuple[str, ...], object] = {}
    for k, v in tree.items():
        path = (*prefix, str(k))
        if isinstance(v, Mapping):
            out.update(flatten(v, path))
        else:
            out[path] = v
    return out


def unflatten(flat: Mapping[tuple[str, ...], object]) -> dict:
    """Inverse of :func:`flatten`."""
    tree: dict = {}
    for path, v in flat.items():
        node = tree
        for k in path[:-1]:
            node = node.setdefault(k, {})
        node[path[-1]] = v
    return tree
