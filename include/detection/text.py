"""Untrusted text made safe to show: on a terminal, in a ticket, in a spreadsheet export.

Alert fields carry attacker-influenced data (caller names, VM names, locations, insights). Two
helpers every sink and the terminal share:

- `printable(value)`: control characters (C0, DEL, C1), line / paragraph separators, lone
  surrogates and invisible format characters (bidi overrides and isolates U+202A-U+202E,
  U+2066-U+2069, zero-width characters, BOM, soft hyphen: Unicode category Cf) are shown as
  `\\xNN` / `\\uNNNN` escapes, so a value can neither break a line, move the cursor, nor make
  text read in another order than it is stored. Backslashes are kept as they are: the output is
  for people to read, not to be parsed back.
- `formula_safe(value)`: a value starting with a spreadsheet formula character (`=`, `+`, `-`,
  `@`, TAB, CR) gets a leading `'`, so a ticket exported to CSV and opened in a spreadsheet
  shows the text instead of evaluating it (OWASP "CSV injection").
"""

from __future__ import annotations

import re
import unicodedata

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")

_C0_C1 = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_OTHER = re.compile(r"[^\x00-\x9f]")  # candidates for the slower category check


def _escape(c: str) -> str:
    o = ord(c)
    return f"\\x{o:02x}" if o <= 0xFF else f"\\u{o:04x}" if o <= 0xFFFF else f"\\U{o:08x}"


def _unseen(m: re.Match) -> str:
    c = m.group(0)
    return _escape(c) if unicodedata.category(c) in ("Cf", "Zl", "Zp", "Cs", "Cc") else c


def printable(value) -> str:
    """`value` as one line of visible characters (see the module docstring)."""
    text = _C0_C1.sub(lambda m: _escape(m.group(0)), str(value))
    return _OTHER.sub(_unseen, text) if not text.isascii() else text


def printable_lines(value) -> str:
    """Like `printable`, but line breaks (LF, CRLF) are kept as LF."""
    return "\n".join(printable(line) for line in re.split(r"\r\n|\n", str(value)))


def formula_safe(value) -> str:
    """`value` with a leading `'` if a spreadsheet would read it as a formula."""
    text = str(value)
    return "'" + text if text.startswith(FORMULA_START) else text


_JSON_UNSEEN = re.compile(r"[\x7f-\x9f\u2028\u2029]|[^\x00-\x7e]")


def _json_escape(m: re.Match) -> str:
    c = m.group(0)
    if c <= "\x9f" or unicodedata.category(c) in ("Cf", "Zl", "Zp", "Cs", "Cc"):
        return "".join(f"\\u{u:04x}" for u in _utf16(c))
    return c


def _utf16(c: str) -> list[int]:
    data = c.encode("utf-16-be", "surrogatepass")
    return [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]


def json_text(value, **kwargs) -> str:
    """JSON for a terminal: readable non-ASCII, but every invisible or control character that
    json.dumps(ensure_ascii=False) leaves raw (C1, DEL, bidi, line separators) as a \\uXXXX
    escape. Still valid JSON, and it parses back to the same value."""
    import json

    return _JSON_UNSEEN.sub(_json_escape, json.dumps(value, ensure_ascii=False, **kwargs))
