"""Conversion routes from torch models to JAX.

* ``ppml_torch.converters.fx``: the graph route.  ``torch.export`` captures the
  module, the graph is lowered to core ATen and interpreted op by op in JAX.
  Works for any module whose ops have a lowering (see ``ppml-torch ops``).
* ``ppml_torch.converters.flax``: the weight-transfer route onto hand-written
  Flax models.

Both return :class:`ppml_torch.model.ConvertedModel`.  Importing this package
imports neither torch nor JAX.
"""
