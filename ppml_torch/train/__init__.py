"""Training torch modules inside a session: :func:`fit`, :func:`predict` and the data description.

``from ppml_torch.train import fit, vertical`` is cheap: torch and optax are imported when
``fit`` runs.  See :mod:`ppml_torch.train.loop` for how a training runs and what it discloses.

The rooms: ``loop.py`` (``fit``: checks, then the session work in one sequence),
``programs.py`` (the pure ``init``/``train_step``/``epoch`` programs and the
:class:`~ppml_torch.train.programs.TrainPlan` they close over), ``state.py`` (the
:class:`~ppml_torch.train.state.TrainState` they carry), ``names.py`` (torch names of the
converted model's leaves), ``layout.py`` (blocks -> model input -> batches), ``checks.py``
(the argument checks), ``inference.py`` (``predict``), ``cache.py`` (conversions by input
shapes), ``rows.py`` (when padding a batch is exact), ``data.py``, ``optim.py``,
``losses.py``, ``history.py``, ``scope.py`` (handles freed after a failure); a torch
optimizer's own state carried in and out (``carry.py``), its LR scheduler
(``schedules.py``), the optax transformations torch has and optax lacks
(``transforms.py``); overflow: the whole step checked before MPC (``preflight.py``) and the
epoch's run-time sentinel (``sentinel.py``); what each epoch reveals (``outputs.py``); the
progress bar's stages (``progress.py``).
"""

from __future__ import annotations

from .checks import FitError
from .data import Block, Data, DataError, horizontal, vertical
from .history import EpochRecord, History
from .inference import predict
from .loop import fit
from .outputs import TrainingOverflowError
from .preflight import TrainingRangeError

__all__ = [
    "Block",
    "Data",
    "DataError",
    "EpochRecord",
    "FitError",
    "History",
    "TrainingOverflowError",
    "TrainingRangeError",
    "fit",
    "horizontal",
    "predict",
    "vertical",
]
