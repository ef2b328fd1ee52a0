"""Applications built on the library, one package each (the top layer but the command line).

Nothing in the library imports an application; ``tests/test_layers.py`` checks it.
"""
