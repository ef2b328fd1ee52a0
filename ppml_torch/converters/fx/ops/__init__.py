"""ATen lowerings, one file per family.  Importing this package fills the registry."""

from ppml_torch.converters.fx.ops import (  # noqa: F401
    conv,
    elementwise,
    linalg,
    nn,
    norm,
    pool,
    reductions,
    resize,
    shapes,
)
