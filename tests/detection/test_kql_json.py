"""The column-at-a-time JSON facts (kql.is_object, has_property, property_equals) equal the
per-row path (kql.parse_json) on any text: the fast path decides only what it is sure of."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from include.detection import kql

KEY = "ActionUncommonlyPerformedByUser"
KEYS = [KEY, "scope", "Scope", KEY.lower(), "a", "é", ""]


def per_row_is_object(text):
    return isinstance(kql.parse_json(text), dict)


def per_row_has(text, key):
    value = kql.parse_json(text)
    return isinstance(value, dict) and key in value


def per_row_equals(text, key, value):
    return kql.get_property(kql.parse_json(text), key) == value


def check(texts, dtype="str", column=None):
    column = pd.Series(texts, dtype=dtype) if column is None else column
    assert kql.is_object(column).tolist() == [per_row_is_object(t) for t in texts]
    for key in (KEY, "scope"):
        assert kql.has_property(column, key).tolist() == [per_row_has(t, key) for t in texts]
        assert kql.property_equals(column, key, "True").tolist() == [
            per_row_equals(t, key, "True") for t in texts
        ]
    # the scan's cheap pre-filter never drops a row the rule keeps
    may_hold = kql.may_hold(column, KEY, "True").tolist()
    assert all(may or not per_row_equals(t, KEY, "True") for t, may in zip(texts, may_hold))


# --- generated JSON-ish text ---------------------------------------------------------------------

scalars = st.one_of(
    st.sampled_from(["True", "true", "False", "", "True ", "T\u0000rue"]),
    st.text(max_size=6),
    st.booleans(),
    st.none(),
    st.integers(-(10**20), 10**20),
    st.floats(allow_nan=False, allow_infinity=False),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.lists(st.tuples(st.sampled_from(KEYS), inner), max_size=4)
    ),
    max_leaves=12,
)


def render(value, draw) -> str:
    """JSON text of a value where a list of pairs is an object (duplicate keys allowed), with
    random spacing, and strings sometimes spelled with \\u escapes."""
    space = draw(st.sampled_from(["", " ", "\n", "\t ", "\r\n"]))
    if isinstance(value, list) and value and all(isinstance(p, tuple) for p in value):
        members = [f"{render_string(k, draw)}{space}:{space}{render(v, draw)}" for k, v in value]
        return "{" + space + f",{space}".join(members) + space + "}"
    if isinstance(value, list):
        return "[" + ",".join(render(v, draw) for v in value) + "]"
    if isinstance(value, str):
        return render_string(value, draw)
    return json.dumps(value)


def render_string(text: str, draw) -> str:
    out = json.dumps(text, ensure_ascii=draw(st.booleans()))
    if draw(st.integers(0, 5)) == 0 and len(text) > 1:  # a letter as a \u escape: same string
        out = out[:2] + f"\\u{ord(out[2]):04x}" + out[3:] if out[2] not in '"\\' else out
    return out


MUTATIONS = [
    "",
    "x",
    ",",
    "}",
    "{",
    "]",
    "\\",
    '"',
    "\ufeff",
    "\u00a0",
    "\x0c",
    "\x01",
    "\\ud800",
    "\\u0054",
    " ",
    "NaN",
    "1" * 5000,
]


@st.composite
def json_ish(draw):
    value = draw(values)
    top = draw(st.sampled_from(["object", "object", "any"]))
    if top == "object" and not (
        isinstance(value, list) and all(isinstance(p, tuple) for p in value)
    ):
        value = [(draw(st.sampled_from(KEYS)), value), (KEY, draw(scalars))]
        if draw(st.booleans()):
            value.reverse()
    text = render(value, draw)
    choice = draw(st.integers(0, 9))
    if choice == 0:  # truncated: mostly invalid JSON
        text = text[: draw(st.integers(0, len(text)))]
    elif choice == 1:  # something inserted anywhere
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(st.sampled_from(MUTATIONS)) + text[at:]
    elif choice == 2:  # a JSON string holding the object's text
        text = json.dumps(text)
    elif choice == 3:  # blank around it
        text = draw(st.sampled_from([" ", "\n", "\u2028", ""])) + text + " "
    return text


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(json_ish(), st.none(), st.text(max_size=8)), min_size=1, max_size=8))
def test_fast_path_equals_per_row_parse_on_any_text(texts):
    check(texts + texts[:2])  # repeated texts: each distinct one decided once


@settings(max_examples=100, deadline=None)
@given(st.lists(st.one_of(json_ish(), st.none()), min_size=1, max_size=5))
def test_fast_path_equals_per_row_parse_on_an_object_column(texts):
    check(texts, dtype=object)


# --- the cases that make the fast path step aside, by name ----------------------------------------

FLAG = '{"%s":"True"}' % KEY
CASES = [
    ("flat object, flagged", FLAG, True, True),
    ("flat object with spaces", '{ "a" : "False" , "%s" : "True" }' % KEY, True, True),
    ("JSON true is not the string True", '{"%s":true}' % KEY, True, False),
    ("lower-case true", '{"%s":"true"}' % KEY, True, False),
    ("duplicate key, last one False", '{"%s":"True","%s":"False"}' % (KEY, KEY), True, False),
    ("duplicate key, last one True", '{"%s":"False","%s":"True"}' % (KEY, KEY), True, True),
    ("value spelled with an escape", '{"%s":"\\u0054rue"}' % KEY, True, True),
    ("key spelled with an escape", '{"\\u0041%s":"True"}' % KEY[1:], True, True),
    ("invalid JSON holding the pair", FLAG[:-1], False, False),
    ("trailing comma", FLAG[:-1] + ",}", False, False),
    ("a JSON string holding the object", json.dumps(FLAG), False, False),
    ("an array holding the object", "[" + FLAG + "]", False, False),
    ("the pair nested one level down", '{"x":%s}' % FLAG, True, False),
    ("the pair nested and a top-level False", '{"x":%s,"%s":"False"}' % (FLAG, KEY), True, False),
    ("the pair inside a string value", '{"x":"\\"%s\\":\\"True\\""}' % KEY, True, False),
    (
        "nested deeper than Python parses",
        '{"%s":"True","d":%s}' % (KEY, "[" * 3000 + "]" * 3000),
        False,
        False,
    ),
    (
        "an integer Python refuses (over 4,300 digits)",
        '{"%s":"True","n":%s}' % (KEY, "9" * 5000),
        False,
        False,
    ),
    ("NaN (Python's json takes it)", '{"%s":"True","n":NaN}' % KEY, True, True),
    ("a raw control character in a string", '{"%s":"True","c":"\x01"}' % KEY, False, False),
    ("a lone surrogate escape", '{"%s":"True","s":"\\ud800"}' % KEY, True, True),
    ("a byte order mark before it", "\ufeff" + FLAG, False, False),
    ("a non-breaking space before it", "\u00a0" + FLAG, False, False),
    ("empty text", "", False, False),
    ("null", None, False, False),
]


@pytest.mark.parametrize(
    "text, is_object, flagged", [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_insight_flag_case(text, is_object, flagged):
    column = pd.Series([text, text, FLAG], dtype="str")
    assert kql.is_object(column).tolist() == [is_object, is_object, True]
    assert kql.property_equals(column, KEY, "True").tolist() == [flagged, flagged, True]
    check([text, FLAG])


@pytest.mark.parametrize(
    "text, has_scope",
    [
        ('{"action":"a","scope":"/subscriptions/s/x","evidence":{"role":"Owner"}}', True),
        ('{"action":"a","evidence":{"scope":"/subscriptions/s"}}', False),
        ('{"evidence":{"scope":"x"},"scope":"y"}', True),
        ('{"Scope":"y"}', False),
        ('{"sc\\u006fpe":"y"}', True),
        ('{"scope":null}', True),
        ('{"scope":"y"', False),
        ('"{\\"scope\\":\\"y\\"}"', False),
    ],
    ids=[
        "top-level-scope-beside-nested-evidence",
        "scope-only-nested",
        "nested-and-top-level",
        "other-case",
        "escaped-key",
        "null-scope-is-still-a-key",
        "invalid-json",
        "json-string",
    ],
)
def test_authorization_has_scope_case(text, has_scope):
    assert kql.has_property(pd.Series([text], dtype="str"), "scope").tolist() == [has_scope]


def test_each_distinct_undecided_text_is_parsed_once(monkeypatch):
    """Texts the fast path cannot decide go to parse_json once each, however many rows hold them
    and whichever fact asks (the rule and the quality gate share the memo)."""
    calls = []
    real = kql.parse_json
    monkeypatch.setattr(kql, "parse_json", lambda t: calls.append(t) or real(t))
    kql._parsed_memo.cache_clear()
    escaped = '{"%s":"\\u0054rue"}' % KEY  # undecided: an escape
    column = pd.Series([escaped] * 1000 + [FLAG] * 1000, dtype="str")
    assert kql.property_equals(column, KEY, "True").all()
    assert kql.is_object(column).all()
    assert calls == [escaped]


# --- a window's column is its slices' chunks --------------------------------------------------


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.lists(st.one_of(json_ish(), st.none(), st.sampled_from([FLAG, "{}"])), max_size=5),
        min_size=2,
        max_size=4,
    )
)
def test_facts_of_a_column_of_several_chunks(parts):
    """ranges.merge_scans concatenates the slices' frames without a copy, so a window's column
    is several Arrow chunks: each is encoded on its own and their distinct texts merged. The
    facts still equal the per-row path, and again when the chunks are met a second time (the
    next window shares a slice)."""
    texts = [t for part in parts for t in part]
    column = pd.concat([pd.Series(part, dtype="str") for part in parts], ignore_index=True)
    for _ in range(2):
        check(texts, column=column)
        assert kql.categorical(column).astype(object).where(column.notna(), None).tolist() == [
            t for t in texts
        ]


def test_a_chunk_is_encoded_once_across_facts_and_windows(monkeypatch):
    """The rule and the quality gate ask three facts of ActivityInsights, and consecutive
    windows share a slice: each slice's chunk is hashed once, not once per fact and window,
    and each fact of a chunk is decided once."""
    encoded = []
    real = kql.pc.dictionary_encode
    monkeypatch.setattr(
        kql.pc, "dictionary_encode", lambda a, *k, **kw: encoded.append(len(a)) or real(a, *k, **kw)
    )
    monkeypatch.setattr(kql, "_KEPT", kql.OrderedDict())
    days = [
        pd.Series([FLAG, '{"%s":"False"}' % KEY, None] * 101, dtype="str"),  # 303 rows
        pd.Series(["[]", FLAG] * 151, dtype="str"),  # 302 rows
        pd.Series(['"text"', FLAG, "{"] * 107, dtype="str"),  # 321 rows
    ]
    for first, second in zip(days, days[1:]):  # two windows of two slices each
        column = pd.concat([first, second], ignore_index=True)
        expected = [per_row_equals(t, KEY, "True") for t in column.astype(object)]
        assert kql.property_equals(column, KEY, "True").tolist() == expected
        assert kql.is_object(column).tolist() == [
            per_row_is_object(t) for t in column.astype(object)
        ]
        assert kql.categorical(column).astype(object).tolist() == column.astype(object).tolist()
    assert sorted(n for n in encoded if n > 100) == [302, 303, 321]  # the rest: merged distincts
    decided = []
    real_match = kql._match
    monkeypatch.setattr(kql, "_match", lambda a, p: decided.append(len(a)) or real_match(a, p))
    for first, second in zip(days, days[1:]):  # the same windows again: every fact known
        column = pd.concat([first, second], ignore_index=True)
        assert kql.property_equals(column, KEY, "True").tolist() == [
            per_row_equals(t, KEY, "True") for t in column.astype(object)
        ]
        assert kql.is_object(column).sum() > 0
    assert decided == []


def test_a_fact_kept_for_one_chunk_is_never_served_for_another(monkeypatch):
    """Chunks of the same length and type but other texts (another slice, a rewritten file)
    are decided afresh: the memo is keyed by where the data lives, and holds the chunk so
    that place is not reused while it is kept."""
    monkeypatch.setattr(kql, "_KEPT", kql.OrderedDict())
    for k in range(50):
        texts = [FLAG if (i + k) % 3 == 0 else "{}" for i in range(30)]
        column = pd.Series(texts, dtype="str")
        assert kql.property_equals(column, KEY, "True").tolist() == [t == FLAG for t in texts]
        upns = pd.Series([f"user{k}@contoso.com" if i % 2 else "x" for i in range(30)], dtype="str")
        assert kql.python_search(upns, r"@").tolist() == [bool(i % 2) for i in range(30)]


def test_encodings_kept_are_bounded(monkeypatch):
    """A chunk larger than the bound is encoded each time and never kept; the entries kept stay
    under their count, so a long-lived worker holds no more than that."""
    monkeypatch.setattr(kql, "_KEPT", kql.OrderedDict())
    monkeypatch.setattr(kql, "_KEPT_BYTES", 4096)
    monkeypatch.setattr(kql, "_KEPT_ENTRIES", 3)
    big = pd.Series([FLAG + " " * k for k in range(200)], dtype="str")  # > 4 KiB of text
    assert kql.property_equals(big, KEY, "True").all()
    assert len(kql._KEPT) == 0
    for k in range(6):
        small = pd.Series([FLAG, "{}", "x" * k], dtype="str")
        assert kql.property_equals(small, KEY, "True").tolist() == [True, False, False]
    assert len(kql._KEPT) == 3
    assert kql._kept_bytes() <= 4096


# --- a window's rows filtered, chunk by chunk -----------------------------------------------------


def _window_frame(parts) -> pd.DataFrame:
    """A frame shaped like a window's: each column several chunks (one per slice), text with
    nulls, times, a categorical and an object column, an index that is not 0..n-1."""
    frames = []
    for k, part in enumerate(parts):
        n = len(part)
        frames.append(
            pd.DataFrame(
                {
                    "Text": pd.Series(part, dtype="str"),
                    "TimeGenerated": pd.date_range("2026-10-31", periods=n, freq="s", tz="UTC"),
                    "Code": pd.Series([f"c{i % 3}" for i in range(n)], dtype="category"),
                    "Value": pd.Series([{"k": i} for i in range(n)], dtype=object),
                    "Slice": k,
                }
            )
        )
    frame = pd.concat(frames, ignore_index=True)
    frame.index = frame.index * 10 + 7
    return frame


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.lists(st.one_of(st.text(max_size=6), st.none()), min_size=1, max_size=6),
        min_size=2,
        max_size=3,
    ),
    st.data(),
)
def test_where_rows_equals_pandas_mask_on_a_window_of_several_chunks(parts, data):
    frame = _window_frame(parts)
    keep = pd.Series(
        data.draw(st.lists(st.booleans(), min_size=len(frame), max_size=len(frame))),
        index=frame.index,
        dtype=bool,
    )
    got, expected = kql.where_rows(frame, keep), frame[keep]
    pd.testing.assert_frame_equal(got, expected)
    chunks = got["Text"].array.__arrow_array__().chunks
    sliced = expected["Slice"].nunique()
    assert sum(len(c) > 0 for c in chunks) == sliced, "each slice's chunk filtered, not combined"


@pytest.mark.filterwarnings("ignore:Boolean Series key will be reindexed")
def test_where_rows_with_a_mask_on_another_index_aligns_as_pandas_does():
    frame = _window_frame([["a", "b"], ["c", None]])
    keep = pd.Series([True, False, True, False], index=frame.index[::-1])
    pd.testing.assert_frame_equal(kql.where_rows(frame, keep), frame[keep])


def test_where_rows_on_a_frame_with_repeated_labels_keeps_them_as_pandas_does():
    frame = _window_frame([["a", "b"], ["c", None]])
    frame.index = [7, 7, 8, 8]
    keep = pd.Series([True, False, False, True], index=frame.index)
    got = kql.where_rows(frame, keep)
    pd.testing.assert_frame_equal(got, frame[keep])
    assert got["Text"].tolist()[0] == "a" and got["Slice"].tolist() == [0, 1]


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.lists(st.one_of(st.sampled_from(["Ann@X", "ann@x", "İ@x", "ß@x", ""]), st.none())),
        min_size=1,
        max_size=3,
    )
)
def test_by_distinct_equals_the_mask_row_by_row(parts):
    """Each distinct text is asked once; every row, null rows included, gets its text's answer,
    the answer the mask gives the row itself."""
    column = pd.concat([pd.Series(p, dtype="str") for p in parts], ignore_index=True)

    def mask(s):
        return kql.kusto_str(s).str.lower().isin(["ann@x", "i̇@x", ""])

    assert kql.by_distinct(column, mask).tolist() == mask(column).tolist()
    objects = pd.Series([*column.astype(object).where(column.notna(), None), 3], dtype=object)
    assert kql.by_distinct(objects, lambda s: s.map(lambda v: v == 3)).tolist() == [
        v == 3 for v in objects
    ], "a column not all text: row by row"
