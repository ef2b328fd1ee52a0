"""``ppml-torch gpt2``: greedy GPT-2 generation on several runtimes, side by side.

The weights are the first party's secret (alice's), shared once; the prompt is the second's
(bob's); the KV cache and the loop stay secret, and the ids are revealed to the prompt's
owner only, at the end (``ppml_torch.generate``).

Files: :mod:`.job` (the model, a checkpoint or a seeded random GPT-2, and the prompt; built
and checked before any session), :mod:`.runs` (every run and route in one process, ids
compared), :mod:`.parties` (one process per party), :mod:`.report` (the table and its lines,
for both).
"""
