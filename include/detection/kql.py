"""Kusto scalar semantics the rule relies on, vectorised over pandas/Arrow.

Each function documents the Kusto behaviour it reproduces (see shared/reference/rule-semantics.md).
Kusto strings are never null: a missing value is "", which is why `kusto_str` exists.
"""

from __future__ import annotations

import json
import re

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

# A `has` term is a maximal run of ASCII letters and digits.
_TERM_CHAR = "a-z0-9"


def kusto_str(s: pd.Series) -> pd.Series:
    """A string column as Kusto sees it: null is the empty string."""
    return s.fillna("").astype("str")


def equals_ci(s: pd.Series, literal: str) -> pd.Series:
    """`col =~ "literal"`: case-insensitive equality (the literal here is ASCII)."""
    return kusto_str(s).str.lower() == literal.lower()


def _ascii_lower(s: pd.Series) -> pa.ChunkedArray:
    return pc.ascii_lower(pa.chunked_array([pa.array(kusto_str(s).to_numpy(dtype=object), pa.string())]))


def has_term(s: pd.Series, term: str) -> pd.Series:
    """`col has "term"`: case-insensitive whole-term match; non-alphanumerics separate terms."""
    pattern = f"(^|[^{_TERM_CHAR}]){re.escape(term.lower())}([^{_TERM_CHAR}]|$)"
    hit = pc.match_substring_regex(_ascii_lower(s), pattern)
    return pd.Series(hit.to_numpy(zero_copy_only=False), index=s.index, dtype=bool)


def element_has_any_in_list_text(s: pd.Series, terms: tuple[str, ...]) -> pd.Series:
    """Per element: does this value, once serialised inside `tostring(make_list(...))`, hold a term?

    `list has_any (...)` looks at the list's JSON text. Quotes and commas separate terms, so the
    list matches iff one element's JSON-escaped text does. JSON escapes control characters as
    `\\n`, `\\t`, `\\u0001`...: the escape ends in a letter or digit that fuses with the next
    term ("\\nSuccess" is the term "nSuccess"), so a term right after a control character is no
    match, while one right before it still is (the backslash separates).
    """
    alternatives = "|".join(re.escape(t.lower()) for t in terms)
    pattern = f"(^|[^{_TERM_CHAR}\\x00-\\x1f])({alternatives})([^{_TERM_CHAR}]|$)"
    hit = pc.match_substring_regex(_ascii_lower(s), pattern)
    return pd.Series(hit.to_numpy(zero_copy_only=False), index=s.index, dtype=bool)


def may_hold_pattern(key: str, value: str) -> str:
    """A regex that the JSON text of an object with `key` == "value" (a string) must match,
    unless a \\u escape spells a letter of them: `"key"`, JSON whitespace, `:`, `"value"`."""
    return f'"{re.escape(key)}"\\s*:\\s*"{re.escape(value)}"'


def may_hold(text: pd.Series, key: str, value: str) -> pd.Series:
    """Rows whose JSON text can hold key == "value": a necessary condition, cheap to test, so
    only those rows need parsing."""
    s = kusto_str(text)
    return s.str.contains(may_hold_pattern(key, value), regex=True) | s.str.contains("\\u", regex=False)


def parse_json(text):
    """`parse_json(text)`: the JSON value, or the text itself (a dynamic string) when invalid."""
    if text is None or (isinstance(text, float) and pd.isna(text)):
        return None
    if not isinstance(text, str):
        return text
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):  # nested too deep to parse: as invalid, a string
        return text
    # A `\udXXX` escape with no partner decodes to a lone surrogate, which no Kusto (UTF-8)
    # string holds, and which would crash every encoder downstream: U+FFFD, as the sources do.
    return _no_surrogates(value) if "\\u" in text and _SURROGATE_ESCAPE.search(text) else value


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def _no_surrogates(value):
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value)
    if isinstance(value, list):
        return [_no_surrogates(v) for v in value]
    if isinstance(value, dict):
        return {_no_surrogates(k): _no_surrogates(v) for k, v in value.items()}
    return value


def get_property(value, key: str):
    """`dynamic.key`: the property of an object, else null (strings, arrays, null have none)."""
    return value.get(key) if isinstance(value, dict) else None


def tostring(value) -> str:
    """`tostring(dynamic)`: strings as-is, null as "", anything else as compact JSON."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def split_at(s: pd.Series, sep: str, index: int) -> pd.Series:
    """`tostring(split(col, sep)[index])`: out-of-range is null, and tostring(null) is ""."""
    parts = kusto_str(s).str.split(sep, regex=False)
    return parts.map(lambda p: p[index] if -len(p) <= index < len(p) else "").astype("str")
