"""Convert a torch model to StableHLO (``.mlir``), its weights (``.safetensors``) and a manifest.

The same job as ``ppml-torch export-stablehlo`` (same arguments, same files); the work is done
by ``ppml_torch.converters.torch_to_stablehlo``.  See docs/stablehlo.md::

    python converters/torch_to_stablehlo.py --module torch.nn:Linear \\
        --kwargs '{"in_features": 30, "out_features": 1}' --input float32[16,30] --out-dir out/
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's ppml_torch

from ppml_torch.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["export-stablehlo", *sys.argv[1:]]))
