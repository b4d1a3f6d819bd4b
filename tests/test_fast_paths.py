"""The fast paths of reading and deriving give exactly what the plain ones give (values and errors alike)."""

import json
import math
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hicl_retrieval.core import text as text_module
from hicl_retrieval.core.text import duplicate_key, extract_hashtags
from hicl_retrieval.core.times import V1_FORMAT, parse_post_time
from hicl_retrieval.corpus.jsonl import _loads
from hicl_retrieval.corpus.records import BadRecord

SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=2**63 - 5, max_value=2**80),
    st.floats(allow_nan=True, allow_infinity=True), st.text(), st.just("\ud800 lone"),
)
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner,
                                                                                            max_size=4), max_leaves=12)


def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(map(_same, a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


def _plain(text: str):
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        return type(exc)


def _ours(text: str):
    try:
        return _loads(text)
    except BadRecord:
        return "bad"


@settings(max_examples=400, deadline=None)
@given(value=VALUES, junk=st.sampled_from(["", " ", "x", ",", "}", "\u00e9", '"\\ud800"', "1e999", "NaN"]))
def test_json_lines_decode_as_the_standard_library_decodes_them(value, junk):
    for text in (json.dumps(value), json.dumps(value, ensure_ascii=False), json.dumps(value) + junk, junk):
        plain, ours = _plain(text), _ours(text)
        if isinstance(plain, type) and issubclass(plain, Exception):
            assert ours == "bad", text
        else:
            assert _same(ours, plain), text


def test_a_huge_integer_id_keeps_every_digit():
    assert _loads('{"id": 123456789012345678901234567890}') == {"id": 123456789012345678901234567890}


@pytest.mark.parametrize("text", ['{"n": ' + "9" * 4300 + "}", '{"n": ' + "9" * 4301 + "}",
                                  '{"a": ' * 100_000 + "1" + "}" * 100_000])
def test_the_limits_of_integers_and_nesting_are_the_standard_librarys(text):
    plain, ours = _plain(text), _ours(text)
    assert ours == "bad" if isinstance(plain, type) else ours == plain


DAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun", "mon", "Xyz"]
MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec", "oct", "Foo"]


def _strptime(value: str):
    try:
        return datetime.strptime(value, V1_FORMAT).astimezone(timezone.utc).replace(tzinfo=None)
    except ValueError:
        return ValueError


def _parsed(value: str):
    try:
        return parse_post_time(value)
    except ValueError:
        return ValueError


@settings(max_examples=400, deadline=None)
@given(day=st.sampled_from(DAYS), month=st.sampled_from(MONTHS), date=st.integers(0, 32), hour=st.integers(0, 25),
       minute=st.integers(0, 60), second=st.integers(0, 61), offset=st.integers(-1439, 1439),
       year=st.integers(1000, 9999))
def test_twitter_times_read_as_strptime_reads_them(day, month, date, hour, minute, second, offset, year):
    sign = "+" if offset >= 0 else "-"
    value = (f"{day} {month} {date:02d} {hour:02d}:{minute:02d}:{second:02d} "
             f"{sign}{abs(offset) // 60:02d}{abs(offset) % 60:02d} {year}")
    assert _parsed(value) == _strptime(value), value


@pytest.mark.parametrize("value", ["Wed Oct 10 20:19:24 +0000 2018", "Sun Dec 31 23:30:00 -0130 2017"])
def test_a_twitter_time_is_utc(value):
    moment = datetime.strptime(value, V1_FORMAT)
    assert parse_post_time(value) == (moment - (moment.utcoffset() or timedelta())).replace(tzinfo=None)


def _plain_duplicate_key(text: str) -> str:
    """`duplicate_key` as written before it skipped the expressions that cannot match."""
    key = text_module._RT_PREFIX.sub("", text.strip())
    if text_module.is_truncated(key):
        key = text_module._TRUNCATED_TAIL.sub("", key)
    key = text_module._URL.sub(" ", key)
    key = text_module._MENTION.sub(" ", key)
    key = text_module._NON_WORD.sub(" ", key.lower())
    return " ".join(key.split())


TWEETISH = st.lists(st.sampled_from(["RT", "rt", "@user", "@İstanbul", "#tag", "＃タグ", "#", "http://x.co/a",
                                     "HTTPS://T.CO/B", "www.example.org", "WWW.X", "…", "...", "word", "İ", "ß",
                                     ":", " ", "\n", "_", "#1", "#tag…"]), max_size=12).map(" ".join)


@settings(max_examples=500, deadline=None)
@given(text=st.one_of(TWEETISH, st.text(max_size=40)))
def test_duplicate_keys_and_hashtags_are_those_of_the_plain_expressions(text):
    assert duplicate_key(text) == _plain_duplicate_key(text)
    if "#" not in text and "＃" not in text:  # where the expression is skipped, it would find nothing
        assert not list(text_module._twitter_pattern().finditer(text)) and extract_hashtags(text, "twitter") == []


@pytest.mark.parametrize("rows", [0, 1, 7, 85, 2731])  # 2731 x 768 values are converted on every core
def test_float16_rows_convert_as_numpy_converts_them(rows):
    import numpy as np

    from hicl_retrieval.index.faiss_index import PARALLEL_VALUES, as_float32

    every = np.arange(65536, dtype=np.uint16).view(np.float16)  # subnormals, infinities and NaNs among them
    values = np.resize(every, rows * 768).reshape(rows, 768)
    converted = as_float32(values)
    assert converted.dtype == np.float32 and converted.shape == values.shape
    assert np.array_equal(converted, values.astype(np.float32), equal_nan=True)
    assert (rows * 768 >= PARALLEL_VALUES) == (rows == 2731)


def test_an_exact_search_of_millions_of_scores_answers_as_one_of_a_few():
    import numpy as np

    from hicl_retrieval.index.faiss_index import PARALLEL_VALUES, exact_search

    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((45_000, 16)).astype(np.float16)
    subset = np.sort(rng.choice(45_000, 40_000, replace=False))
    queries = rng.standard_normal((256, 16)).astype(np.float32)
    assert len(queries) * 9_000 >= PARALLEL_VALUES > 9_000  # all at once: torch; one at a time: numpy
    scores, ids = exact_search(vectors, subset, queries, 10, rows=9_000)
    exact = queries.astype(np.float64) @ vectors[subset].astype(np.float64).T
    assert (ids == subset[np.argsort(-exact, axis=1)[:, :10]]).all()
    for query, (some, some_ids) in enumerate(zip(scores, ids)):
        alone_scores, alone_ids = exact_search(vectors, subset, queries[query : query + 1], 10, rows=9_000)
        assert (alone_ids[0] == some_ids).all() and np.allclose(alone_scores[0], some, rtol=0, atol=1e-5)
