"""The failure messages quoted in docs/troubleshooting.md, as patterns a real message must match.

A quote is a bold code span (**`...`**). In it, `<name>` stands for any text
(a checksum, a pid), `...` for an elided part, and a number for any number
(a port, an address, a file node); everything else must appear exactly as the
software prints it. The tests provoke each failure and check that its real
message matches one of the quotes.
"""

from __future__ import annotations

import re
from pathlib import Path

TROUBLESHOOTING = Path(__file__).resolve().parent.parent / "docs" / "troubleshooting.md"
QUOTE = re.compile(r"\*\*`(.+?)`\*\*")
TOKEN = re.compile(r"(<[^>]+>|\.\.\.|\d+)")


def quotes(path: Path = TROUBLESHOOTING) -> list[str]:
    return QUOTE.findall(path.read_text(encoding="utf-8"))


def pattern(quote: str) -> re.Pattern:
    parts = []
    for piece in TOKEN.split(quote):
        if not piece:
            continue
        if (piece.startswith("<") and piece.endswith(">")) or piece == "...":
            parts.append(r".*?")
        elif piece.isdigit():
            parts.append(r"\d+")
        else:
            parts.append(re.escape(piece))
    return re.compile("".join(parts), re.S)


def quotes_for(message: str, path: Path = TROUBLESHOOTING) -> list[str]:
    """The documented quotes that the real message matches (it may print more than one failure)."""
    return [quote for quote in quotes(path) if pattern(quote).search(message)]


def quote_for(message: str, path: Path = TROUBLESHOOTING) -> str | None:
    """The first documented quote that the real message matches, or None."""
    found = quotes_for(message, path)
    return found[0] if found else None
