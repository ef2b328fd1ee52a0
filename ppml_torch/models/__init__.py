"""Model definitions: Flax MLP (the homework's), and (torch + Flax) nanoGPT-style GPT-2."""
