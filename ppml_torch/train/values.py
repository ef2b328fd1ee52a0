"""The owners' blocks checked before anything is put: what ``check_inputs`` and ``put`` refuse.

Inside ``fit`` and ``predict`` the model input is assembled from the parties' blocks inside
the program, where the values are secret: an id outside its table would be gathered as zeros
or a clamped row, not refused (``predict(nn.Sequential(nn.Embedding(7, 3)), [[9]])`` returned
zeros; ``fit`` trained on id 15 of a table of 10).  So every block is checked on its owner's
side first, with the functions the converted model and the session use:

* :func:`~ppml_torch.runners.base.check_leaf` (``Session.put``'s check): NaN or inf, a lossy
  64 -> 32-bit cast, and under MPC a float beyond the session's fixed-point range;
* :meth:`~ppml_torch.model.ConvertedModel.check_input` (``check_inputs`` but the shape, which
  is the batch's, not a block's): the dtype the model was converted for, and ids inside their
  table (token ids, the ``labels`` of a model that computes its own loss);
* the loss's own target check (:meth:`~ppml_torch.train.losses.TorchLoss.check_target`):
  class indices inside the output's classes.

One process per party: each process checks its own parties' blocks and announces the first
problem (a public one-line message, as a failed loader is), so every process stops with the
same line before any MPC work.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ppml_torch.errors import InputError, PpmlError
from ppml_torch.runners.base import check_leaf
from ppml_torch.runners.placeholders import is_placeholder

from .data import Data, Loaded


def check_blocks(
    model: Any,
    data: Data,
    loaded: Loaded,
    fixed_point: tuple[str, int] | None,
    *,
    labels_keyword: str | None = None,
    loss: Any = None,
    output_shape: tuple[int, ...] | None = None,
    announce: Callable[[Callable[[str], Any]], dict[str, Any]] | None = None,
) -> None:
    """Check every local block of ``loaded`` (module docstring); raise the first problem.

    ``labels_keyword``: the keyword the model takes the labels as (a model computing its own
    loss: ``"labels"``); otherwise ``loss`` checks them against ``output_shape`` (the model's
    output for a batch).  ``announce``: a production session's, to stop every process alike.
    """
    field, bits = fixed_point if fixed_point is not None else (None, None)
    problems: dict[str, str] = {}

    def check(owner: str, value: Any, where: str, rule: Callable[[Any], None]) -> None:
        if owner in problems or is_placeholder(value):  # another process's block
            return
        try:
            rule(check_leaf(value, where, field, bits))
        except PpmlError as e:
            problems[owner] = str(e)

    for b, a in zip(data.features, loaded.features, strict=True):
        where = f"data: {b.describe()}"
        arg = 0 if b.name is None else b.name
        check(b.owner, a, where, lambda v, arg=arg, where=where: model.check_input(arg, v, where))
    for b, y in zip(data.labels, loaded.labels, strict=True):
        where = f"data: {b.owner}'s labels"
        if labels_keyword is not None:
            rule = lambda v, w=where: model.check_input(labels_keyword, v, w)  # noqa: E731
        elif loss is not None and hasattr(loss, "check_target") and output_shape is not None:
            rule = lambda v, w=where: loss.check_target(v, output_shape, w)  # noqa: E731
        else:
            rule = _nothing
        check(b.owner, y, where, rule)
    if announce is not None:  # one process per party: every process learns every first problem
        problems = {p: m for p, m in announce(lambda p: problems.get(p)).items() if m}
    for b in (*data.features, *data.labels):  # the first in block order, in every process
        if b.owner in problems:
            raise InputError(problems[b.owner])


def _nothing(value: Any) -> None:
    return None
