"""Text that PostgreSQL and UTF-8 can store.

PostgreSQL rejects NUL in text and jsonb, and a lone surrogate cannot be encoded as UTF-8:
either would fail the cache write and stall the partition. So they are cleaned at the edge.
"""

from __future__ import annotations

import re

# NUL and the C0 controls, except tab and newline, are removed.
_CONTROLS = {code: None for code in range(0x20) if code not in (0x09, 0x0A)}
_SURROGATE = re.compile("[\ud800-\udfff]")


def clean_text(text: str) -> str:
    if text.isprintable():  # the common case: nothing to do, and cheap to check
        return text
    cleaned = text.translate(_CONTROLS)
    return _SURROGATE.sub("\ufffd", cleaned)
