"""The one base class of every error ppml-torch raises for bad input.

Every such error is one line that says what is wrong and what to do.  The command line turns
any :class:`PpmlError` into that line on stderr and exit code 2; library callers can catch the
base class.  Each layer keeps its own subclass (``ConfigError`` in runners, ``ConversionError``
in the graph converter, ``WeightMapError`` in the Flax transfer, ...).
"""

from __future__ import annotations


class PpmlError(Exception):
    """Bad input or configuration; the message is one line naming the fix."""


class InputFileError(PpmlError, ValueError):
    """A file or folder given by the user is missing, empty, truncated or not what it should be."""


class InputError(PpmlError, ValueError):
    """A value given to a session or a converted model cannot be used as it is (NaN, out of
    the fixed-point range, a lossy 64->32-bit cast, an id outside its table, a wrong shape)."""
