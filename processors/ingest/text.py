"""Text that PostgreSQL and UTF-8 can store.

PostgreSQL rejects NUL in text and jsonb, and a lone surrogate cannot be encoded as UTF-8:
either would fail the cache write and stall the partition. So they are cleaned at the edge.
"""

from __future__ import annotations

import re
import reprlib

# NUL and the C0 controls, except tab and newline, are removed.
_CONTROLS = {code: None for code in range(0x20) if code not in (0x09, 0x0A)}
_SURROGATE = re.compile("[\ud800-\udfff]")


def clean_text(text: str) -> str:
    if text.isprintable():  # the common case: nothing to do, and cheap to check
        return text
    cleaned = text.translate(_CONTROLS)
    return _SURROGATE.sub("\ufffd", cleaned)


_SHORT = reprlib.Repr()  # keyword arguments only from Python 3.12
_SHORT.maxlevel, _SHORT.maxstring, _SHORT.maxother = 3, 60, 60
_SHORT.maxlist = _SHORT.maxdict = 4


def short_repr(value: object) -> str:
    """A value for a rejection's message: bounded in length and depth, whatever it holds."""
    return _SHORT.repr(value)
