"""Text from untrusted sources (an algorithm's file names, logs, messages) made safe to store and show.

Whatever reaches the store, the terminal or the report passes through here: bytes that are not
UTF-8 (file names decoded with surrogate escapes) become `\\xNN`, ANSI escape sequences are removed,
other control characters become `\\xNN`; `safe_text` also folds line breaks into spaces (a one-line
message), `safe_block` keeps them (a log).
"""

from __future__ import annotations

import re

_ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[@-Z\\-_])")


def _clean(text: str, keep: str) -> str:
    text = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    text = _ANSI.sub("", text)
    return "".join(c if c.isprintable() or c in keep else f"\\x{ord(c):02x}" for c in text)


def safe_text(text: str, *, limit: int | None = None) -> str:
    """One safe line (line breaks and tabs folded to spaces), cut to `limit` characters."""
    line = " ".join(_clean(str(text), "\n\t").split())
    return line if limit is None or len(line) <= limit else line[: limit - 1] + "\u2026"


def safe_block(text: str) -> str:
    """Safe multi-line text (line breaks and tabs kept)."""
    return _clean(str(text), "\n\t")
