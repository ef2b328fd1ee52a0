"""Move a torch model's weights into Flax parameters: the same job as ``ppml-torch to-flax``.

    python converters/torch_to_flax.py --mlp 30,15,8,1 --checkpoint mlp.pt --out mlp.safetensors
    python converters/torch_to_flax.py --hf-dir gpt2-dir --out gpt2.msgpack

``--help`` lists every option; the work is ``ppml_torch.converters.flax.jobs``.
"""

import sys
from pathlib import Path

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's ppml_torch
    from ppml_torch.cli import main

    sys.exit(main(["to-flax", *sys.argv[1:]]))
