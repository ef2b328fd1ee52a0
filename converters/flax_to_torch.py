"""Bring Flax parameters back to torch: the same job as ``ppml-torch from-flax``.

    python converters/flax_to_torch.py --params trained.safetensors --out mlp.pt
    python converters/flax_to_torch.py --params gpt2.msgpack --hf-out gpt2-back/

``--help`` lists every option; the work is ``ppml_torch.converters.flax.jobs``.
"""

import sys
from pathlib import Path

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's ppml_torch
    from ppml_torch.cli import main

    sys.exit(main(["from-flax", *sys.argv[1:]]))
