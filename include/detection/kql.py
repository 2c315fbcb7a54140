"""Kusto scalar semantics the rule relies on, vectorised over pandas/Arrow.

Each function documents the Kusto behaviour it reproduces (see shared/reference/rule-semantics.md).
Kusto strings are never null: a missing value is "", which is why `kusto_str` exists.
"""

from __future__ import annotations

import json
import re
import threading
from collections import OrderedDict
from functools import lru_cache

import numpy as np
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
    return pc.ascii_lower(
        pa.chunked_array([pa.array(kusto_str(s).to_numpy(dtype=object), pa.string())])
    )


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
    unless a \\u escape spells a letter of them: `"key"`, JSON whitespace, `:`, `"value"`.
    RE2 and Python `re` read it alike (DuckDB's scan and Arrow use RE2)."""
    return f'"{re.escape(key)}"[ \\t\\n\\r]*:[ \\t\\n\\r]*"{re.escape(value)}"'


def may_hold(text: pd.Series, key: str, value: str) -> pd.Series:
    """Rows whose JSON text can hold key == "value": a necessary condition, cheap to test, so
    only those rows need parsing. RE2 over Arrow (pandas would run Python's `re` row by row)."""
    values = _arrow_strings(text)
    if values is None:  # Python values or lone surrogates: Python's re, row by row
        s = kusto_str(text).astype(object)
        return s.str.contains(may_hold_pattern(key, value), regex=True) | s.str.contains(
            "\\u", regex=False
        )
    pattern = may_hold_pattern(key, value)
    hit = _on_distinct(
        values,
        lambda distinct: (
            _match(distinct, pattern)
            | pc.match_substring(distinct, "\\u").to_numpy(zero_copy_only=False)
        ),
    )
    return pd.Series(hit, index=text.index, dtype=bool)


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


# --- JSON facts column-at-a-time ----------------------------------------------------------------
#
# The rule and the quality gate ask three things of dynamic JSON text: is it an object, does it
# have a top-level key, does that key hold a given string. Parsing every row in Python was half
# of a run where UEBA flags many rows. Instead each *distinct* text (UEBA insights are
# combinations of a few flags: a column of 264k rows has a few hundred distinct values) is
# decided by RE2 over Arrow where its shape makes the answer certain, and parsed by `parse_json`
# (memoised, so once per process) only where it does not. The fast path is exact by
# construction: it decides only text in a subset of JSON whose Python parse is known without
# parsing, and defers everything else to the per-row path:
#   * no backslash anywhere, so no escape can spell a key or value differently (`\u0054rue`);
#   * strings without control characters (Python's json refuses them raw);
#   * numbers of at most 31 integer digits (Python refuses ints over 4,300 digits);
#   * objects and arrays nested at most _DEPTH deep (Python gives up at ~1,000: invalid to us);
#   * for a key's value, the key occurs once in a flat object (duplicate keys: the last wins).
# Text whose first non-blank character is not `{` can be no object: decided False at once.

_WS = r"[ \t\n\r]*"
_STR = r'"[^"\\\x00-\x1f]*"'
_NUM = r"-?(?:0|[1-9][0-9]{0,30})(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?"
_SCALAR = f"(?:{_STR}|{_NUM}|true|false|null)"
_DEPTH = 3


def _members(value: str) -> str:
    return f"(?:{_STR}{_WS}:{_WS}{value}{_WS}(?:,{_WS}{_STR}{_WS}:{_WS}{value}{_WS})*)?"


def _nested(depth: int) -> str:
    """A JSON value nested at most `depth` deep (1: a scalar)."""
    if depth <= 1:
        return _SCALAR
    inner = _nested(depth - 1)
    items = f"(?:{inner}{_WS}(?:,{_WS}{inner}{_WS})*)?"
    return f"(?:{_SCALAR}|\\{{{_WS}{_members(inner)}\\}}|\\[{_WS}{items}\\])"


# A whole text that is one object of the subset: flat (values are scalars), or nested.
_FLAT_OBJECT = f"^{_WS}\\{{{_WS}{_members(_SCALAR)}\\}}{_WS}$"
_OBJECT = f"^{_WS}\\{{{_WS}{_members(_nested(_DEPTH - 1))}\\}}{_WS}$"
_NOT_OBJECT = rf"^{_WS}[^ \t\n\r{{]|^{_WS}$"


def _key(key: str) -> str:
    return f'"{re.escape(key)}"{_WS}:'


def _top_level_key(key: str) -> str:
    """The key as a member of the outermost object (not of a nested one)."""
    member = f"{_STR}{_WS}:{_WS}{_nested(_DEPTH - 1)}{_WS},{_WS}"
    return f"^{_WS}\\{{{_WS}(?:{member})*{_key(key)}"


# Parsed values of distinct texts, shared by the rule and the quality gate, so a text is parsed
# once per process. Only short texts are kept (they are the common ones): memory stays bounded.
_MEMO_MAX_CHARS = 16_384


@lru_cache(maxsize=8192)
def _parsed_memo(text: str):
    return parse_json(text)


def parsed(text):
    """parse_json, memoised for short texts. The value is shared: read it, never change it."""
    if isinstance(text, str) and len(text) <= _MEMO_MAX_CHARS:
        return _parsed_memo(text)
    return parse_json(text)


def _match(values: pa.Array, pattern: str) -> np.ndarray:
    return pc.match_substring_regex(values, pattern).to_numpy(zero_copy_only=False)


def _per_distinct(text: pd.Series, decide, per_row, fact: tuple) -> pd.Series:
    """Apply a fact to a column of JSON text: `decide(distinct: pa.Array)` returns (decided,
    answer) boolean arrays over the distinct non-null texts; `per_row(value)` answers the rest
    (and null). Each distinct text is decided or parsed once; `fact` names the fact, so a
    chunk asked it again is answered from memory (_on_distinct)."""

    def rows(column):  # not all text (an object column of Python values): row by row
        return [bool(per_row(parsed(v))) for v in column.astype(object)]

    def facts(distinct):
        decided, answer = decide(distinct)
        answer = np.array(answer, dtype=bool)
        for i in np.flatnonzero(~np.asarray(decided, dtype=bool)):
            answer[i] = bool(per_row(parsed(distinct[int(i)].as_py())))
        return answer

    return _per_text(text, rows, facts, bool(per_row(None)), fact)


def _per_text(text: pd.Series, rows, mask, null: bool, fact=None) -> pd.Series:
    """A boolean fact per row of a text column: `mask(distinct: pa.Array)` once per distinct
    non-null text, `null` for null rows (_on_distinct, which keeps each chunk's answer under a
    `fact`); `rows(text)` row by row when the column holds anything but text."""
    values = _arrow_strings(text)
    out = rows(text) if values is None else _on_distinct(values, mask, null=null, fact=fact)
    return pd.Series(out, index=text.index, dtype=bool)


def _on_distinct(values: pa.Array, mask, null: bool = False, fact=None) -> np.ndarray:
    """A boolean fact per row, computed once per distinct value: `mask(distinct)` over the
    distinct non-null values (hashing a column is far cheaper than a regex over it, and dynamic
    columns repeat a few texts), `null` for null rows. With a `fact` (a name for what `mask`
    and `null` compute), each chunk's answer is kept (_per_chunk): consecutive windows share a
    slice, so a back-fill asks every slice's chunk each fact twice."""
    if fact is not None:
        chunks = values.chunks if isinstance(values, pa.ChunkedArray) else [values]
        parts = [
            _per_chunk(chunk, ("fact", fact), lambda c: _on_distinct(c, mask, null))
            for chunk in chunks
            if len(chunk)
        ]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=bool)
    distinct, indices = _encode(values)
    answer = np.asarray(mask(distinct), dtype=bool) if len(distinct) else np.zeros(0, bool)
    out = np.full(len(values), null, dtype=bool)
    valid = indices.is_valid().to_numpy(zero_copy_only=False)
    out[valid] = answer[indices.drop_null().to_numpy(zero_copy_only=False)]
    return out


def _encode(values) -> tuple[pa.Array, pa.Array | pa.ChunkedArray]:
    """(distinct non-null values, each row's index into them, null for null) of an Arrow array
    or chunked array. Each chunk is encoded once (_encode_chunk), then the chunks' distinct
    values are merged (a few hundred texts): the rows' texts are never copied into one array."""
    if not isinstance(values, pa.ChunkedArray):
        return _encode_chunk(values)
    chunks = [c for c in values.chunks if len(c)]
    if not chunks:
        return pa.array([], pa.large_string()), pa.array([], pa.int64())
    if len(chunks) == 1:
        return _encode_chunk(chunks[0])
    encoded = [_encode_chunk(c) for c in chunks]
    merged = pc.dictionary_encode(pa.concat_arrays([d.cast(pa.large_string()) for d, _ in encoded]))
    position = merged.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    indices, at = [], 0
    for distinct, own in encoded:
        # each chunk's index into its own distinct values -> into the merged ones (nulls stay)
        indices.append(pc.take(pa.array(position[at : at + len(distinct)]), own))
        at += len(distinct)
    return merged.dictionary, pa.chunked_array(indices, pa.int64())


# What was computed of the chunks met lately (their dictionary encoding, the JSON facts), keyed
# by where the chunk's data lives. A window's column is the chunks of its slices
# (ranges.merge_scans concatenates them without a copy), the rule and the quality gate ask
# several things of one column, and consecutive windows share a slice: hashing and matching
# ActivityInsights' wide texts three times a window was a tenth of a back-fill's main thread.
# Each entry holds its chunk, so its buffers (and their addresses, the key) cannot be reused
# while it is kept. Bounded: a long-lived worker keeps at most _KEPT_BYTES of chunks alive.
_KEPT: OrderedDict = OrderedDict()
_KEPT_LOCK = threading.Lock()
_KEPT_ENTRIES = 64
_KEPT_BYTES = 128 << 20  # chunks larger than this are computed each time, never kept


def _chunk_key(chunk: pa.Array) -> tuple:
    return (
        str(chunk.type),
        chunk.offset,
        len(chunk),
        tuple(0 if b is None else b.address for b in chunk.buffers()),
    )


def _per_chunk(chunk: pa.Array, what, compute):
    """compute(chunk), once per chunk and `what` (a hashable name of what compute computes)
    while the chunk is among those met lately."""
    key = (what, _chunk_key(chunk))
    with _KEPT_LOCK:
        hit = _KEPT.get(key)
        if hit is not None:
            _KEPT.move_to_end(key)
            return hit[1]
    value = compute(chunk)
    if chunk.get_total_buffer_size() <= _KEPT_BYTES:
        with _KEPT_LOCK:
            _KEPT[key] = (chunk, value)
            while len(_KEPT) > _KEPT_ENTRIES or _kept_bytes() > _KEPT_BYTES:
                _KEPT.popitem(last=False)
    return value


def _kept_bytes() -> int:
    """The size of the chunks kept alive, each once however many entries name it."""
    chunks = {key[1]: entry[0] for key, entry in _KEPT.items()}
    return sum(chunk.get_total_buffer_size() for chunk in chunks.values())


def _encode_chunk(chunk: pa.Array) -> tuple[pa.Array, pa.Array]:
    def encode(c):
        encoded = pc.dictionary_encode(c)
        return encoded.dictionary, encoded.indices.cast(pa.int64())

    return _per_chunk(chunk, "encoded", encode)


def where_rows(frame: pd.DataFrame, keep: pd.Series) -> pd.DataFrame:
    """frame[keep] (keep: a boolean Series on frame's index), the same frame, column by column:
    a column of Arrow text is filtered chunk by chunk. A window's column is its slices' chunks,
    and pandas' boolean mask over a column of several chunks copies the chunks into one first:
    ~35 ms for a window of 27,000 UEBA rows with their wide JSON texts, where Arrow's filter
    takes 0.2 ms."""
    plain = frame.columns.is_unique and frame.index.is_unique
    if not plain or not keep.index.equals(frame.index):
        return frame[keep]  # pandas' own alignment rules
    mask = keep.to_numpy(dtype=bool)
    index = frame.index[mask]
    columns = {}
    for name in frame.columns:
        column = frame[name]
        values = column.array
        if isinstance(values, pd.arrays.ArrowStringArray):
            kept = values.__arrow_array__().filter(pa.array(mask))
            columns[name] = pd.Series(type(values)(kept, dtype=values.dtype), index=index)
        else:
            columns[name] = column[mask]
    return pd.DataFrame(columns, index=index, columns=frame.columns)


def by_distinct(text: pd.Series, mask) -> pd.Series:
    """Per row, `mask` (a function of a pandas Series of text to a boolean Series, row by row)
    computed once per distinct text: its answer for a text is that text's rows' answer, null
    rows included (mask sees them as null). Hashing the column is far cheaper than most masks
    over every row. A column that is not all text gets the mask row by row."""

    def per_distinct(distinct):
        return mask(pd.Series(distinct.to_pylist(), dtype=object)).to_numpy(dtype=bool)

    null = bool(mask(pd.Series([None], dtype=object)).iloc[0])
    return _per_text(text, lambda column: mask(column).to_numpy(dtype=bool), per_distinct, null)


def python_search(text: pd.Series, regex: str) -> pd.Series:
    """Per row: does Python's `re.search(regex)` find the regex in the text (null: no)? Once per
    distinct text, and once per chunk and regex (_per_text): Python's re where the caller
    means it, not RE2 (their \\s and $ differ: Unicode spaces, a trailing newline)."""
    search = re.compile(regex).search

    def rows(column):
        return [isinstance(v, str) and search(v) is not None for v in column.astype(object)]

    def mask(distinct):
        found = (search(v) is not None for v in distinct.to_pylist())
        return np.fromiter(found, dtype=bool, count=len(distinct))

    return _per_text(text, rows, mask, False, ("python_search", regex))


def _arrow_strings(text: pd.Series) -> pa.Array | pa.ChunkedArray | None:
    """The column as Arrow strings (the chunks a frame holds, not joined: joining copies every
    text, and each column is asked several facts), or None when it holds anything but text
    and nulls (or text Arrow cannot hold: a lone surrogate)."""
    try:
        if hasattr(text.array, "__arrow_array__"):  # Arrow-backed already: no copy
            return text.array.__arrow_array__().cast(pa.large_string())
        return pa.array(text, type=pa.large_string(), from_pandas=True)
    except (pa.ArrowException, TypeError, ValueError, UnicodeError):
        return None


def categorical(text: pd.Series) -> pd.Series:
    """The column as a pandas categorical of its distinct texts (nulls stay null), hashed by
    Arrow: moving codes through filters and joins is cheap where the text is wide."""
    values = _arrow_strings(text)
    if values is None:
        return text.astype("category")
    distinct, indices = _encode(values)
    codes = indices.fill_null(-1).to_numpy(zero_copy_only=False)
    categories = pd.Index(distinct.to_pylist(), dtype=object)
    return pd.Series(
        pd.Categorical.from_codes(codes, categories=categories), index=text.index, name=text.name
    )


def _plain(distinct: pa.Array) -> np.ndarray:
    """Texts without a backslash: no escape can spell anything differently."""
    return ~pc.match_substring(distinct, "\\").to_numpy(zero_copy_only=False)


def is_object(text: pd.Series) -> pd.Series:
    """Per row: is `parse_json(text)` an object (a dict)? Invalid JSON, JSON strings, arrays,
    scalars and null are not."""

    def decide(distinct):
        no = _match(distinct, _NOT_OBJECT)
        yes = _plain(distinct) & _match(distinct, _OBJECT)
        return no | yes, yes

    return _per_distinct(text, decide, lambda v: isinstance(v, dict), ("is_object",))


def has_property(text: pd.Series, key: str) -> pd.Series:
    """Per row: is `parse_json(text)` an object with `key` among its top-level keys?"""

    def decide(distinct):
        no = _match(distinct, _NOT_OBJECT)
        # In the subset the grammar has one parse: a prefix that reads as members of the
        # outermost object up to the key is that object's, duplicates or not.
        subset = _plain(distinct) & _match(distinct, _OBJECT)
        return no | subset, subset & _match(distinct, _top_level_key(key))

    return _per_distinct(
        text, decide, lambda v: isinstance(v, dict) and key in v, ("has_property", key)
    )


def property_equals(text: pd.Series, key: str, value: str) -> pd.Series:
    """Per row: `parse_json(text).key == "value"` (a string; case-sensitive, no conversion:
    the JSON `true` is no "True")."""
    literal = f'{_key(key)}{_WS}"{re.escape(value)}"'

    def decide(distinct):
        no = _match(distinct, _NOT_OBJECT)
        plain = _plain(distinct)
        holds = _match(distinct, literal)
        # no key/value pair in plain text: whatever the text is, the property is not "value"
        absent = plain & ~holds
        flat = plain & _match(distinct, _FLAT_OBJECT)
        count = pc.count_substring_regex(distinct, _key(key)).to_numpy(zero_copy_only=False)
        once = flat & (count == 1)
        return no | absent | once, once & holds

    return _per_distinct(
        text, decide, lambda v: get_property(v, key) == value, ("property_equals", key, value)
    )


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
    # Once per distinct value (a window's callers and scopes repeat), not row by row.
    codes, distinct = pd.factorize(kusto_str(s))
    picked = []
    for value in distinct:
        parts = value.split(sep)
        picked.append(parts[index] if -len(parts) <= index < len(parts) else "")
    return pd.Series(np.array(picked, dtype=object)[codes], index=s.index, dtype="str")
