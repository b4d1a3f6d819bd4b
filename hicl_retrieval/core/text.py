"""Post text: hashtags, BERTweet normalisation, hashtag stripping, duplicate keys.

Two hashtag rules; tags are lower-cased and listed once each, in order of first appearance,
and ``#`` inside a word (``C#``, ``abc#def``) or an HTML entity (``&#39;``) never starts one.

``twitter`` (the default) extracts hashtags as Twitter does (twitter-text): ``#`` or ``＃``
then letters, combining marks, digits and ``_`` of any script, with at least one letter or
mark (``#Covid_19``, ``#東京``, ``#हिन्दी``; not ``#2013``); a tag followed by another ``#``
or by ``://`` is none; a tag cut off by the Twitter API (followed by ``…`` or ``...``) is dropped.

``hicl`` reproduces the HICL reference code (`preprocess_match.py`) exactly, for experiments
that must match it:

- a candidate is ``#`` followed by non-space characters, at the start of the text or after a
  character that is not a letter, digit, ``_`` or ``&`` (the reference itself extracts ``#def``
  from ``abc#def``: the one change);
- it is at most 30 characters long, ``#`` included;
- its first character after ``#`` is a letter;
- a tag truncated by the Twitter API (ending in ``…`` or ``...``) is dropped;
- one trailing punctuation character is removed (``#flood,`` gives ``#flood``);
- what remains must be ASCII letters and digits only (``#yyc#flood``, ``#black_lives`` and
  tags in other scripts are dropped).

An index records the rule it was built with, and its queries are stripped by the same rule.
"""

from __future__ import annotations

import random
import re
import string
import sys
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

from .errors import HiclError

HASHTAG_RULES = ("twitter", "hicl")
DEFAULT_HASHTAG_RULE = "twitter"

_CANDIDATE = re.compile(r"(?<![\w&])#\S+")
_ASCII_TAG = re.compile(r"#[A-Za-z0-9]+")
_MAX_TAG_CHARS = 30
# twitter-text's hashtag characters besides letters, marks, digits and "_": joiners and the
# punctuation some scripts write inside words.
_TWITTER_EXTRA = "\u200c\u200d\ua67e\u05be\u05f3\u05f4\uff5e\u301c\u309b\u309c\u30a0\u30fb\u3003\u0f0b\u0f0c\u00b7"
# Planes that hold combining marks (0-3 and the variation selectors of plane 14).
_MARK_PLANES = (range(0, 0x32400), range(0xE0000, 0xE0200))

_RT_PREFIX = re.compile(r"^(?:rt\s+@\w+:?\s*)+", re.IGNORECASE)
_URL = re.compile(r"(?:https?://|www\.)\S*", re.IGNORECASE)
_MENTION = re.compile(r"@\w+")
_TRUNCATED_TAIL = re.compile(r"\s*\S*(?:…|\.\.\.)\s*$")
_NON_WORD = re.compile(r"[\W_]+")


_SURROGATE = re.compile("[\ud800-\udfff]")
"""Code points no UTF-8 text holds: bytes that were not UTF-8, as Python decodes file names and command-line
arguments (``\udcff`` for the byte 0xff), or a lone JSON escape such as ``\ud800``."""
_INVISIBLE_CATEGORIES = frozenset(("Cc", "Cf", "Zs", "Zl", "Zp"))
_BLANK_LETTERS = frozenset("\u115f\u1160\u3164\uffa0\u2800")  # fillers that show as a space


def is_unicode(value: str) -> bool:
    """Whether UTF-8 can hold `value` (see `_SURROGATE`)."""
    return _SURROGATE.search(value) is None


def check_unicode(value: str, what: str) -> str:
    """`value`, or a `HiclError` naming `what` when it is not text UTF-8 can hold (see `_SURROGATE`)."""
    found = _SURROGATE.search(value)
    if found:
        code = ord(found.group())
        held = f"the byte 0x{code - 0xDC00:02x}" if 0xDC80 <= code <= 0xDCFF else f"the lone surrogate \\u{code:04x}"
        raise HiclError(f"{what} is not valid UTF-8 (it holds {held})")
    return value


def is_blank(text: str) -> bool:
    """Whether `text` shows nothing: only spaces, zero-width and other format characters (``"\u200b \ufeff"``)."""
    return not any(char not in _BLANK_LETTERS and unicodedata.category(char) not in _INVISIBLE_CATEGORIES
                   for char in text)


def check_hashtag_rule(rule: str) -> str:
    if rule not in HASHTAG_RULES:
        raise HiclError(f"unknown hashtag rule {rule!r}; choose one of {', '.join(HASHTAG_RULES)}")
    return rule


@lru_cache(maxsize=1)
def _twitter_pattern() -> re.Pattern:
    """``#`` and a run of hashtag characters; Python's ``\\w`` has letters, digits and ``_``, not marks."""
    marks, start = [], None
    for plane in _MARK_PLANES:
        for code in [*plane, plane.stop]:
            is_mark = code < plane.stop and code <= sys.maxunicode and unicodedata.category(chr(code))[0] == "M"
            if is_mark and start is None:
                start = code
            elif not is_mark and start is not None:
                marks.append(f"{re.escape(chr(start))}-{re.escape(chr(code - 1))}")
                start = None
    word = "\\w" + "".join(marks) + re.escape(_TWITTER_EXTRA)
    return re.compile(f"(?<![{word}&])[#＃](?![\ufe0f\u20e3])([{word}]+)")


def _is_tag_letter(char: str) -> bool:
    return char.isalpha() or unicodedata.category(char)[0] == "M"


def _twitter_spans(text: str) -> list[tuple[int, int, str]]:
    if "#" not in text and "＃" not in text:  # most posts: no regular expression to run
        return []
    spans = []
    for match in _twitter_pattern().finditer(text):
        rest = text[match.end():match.end() + 3]
        if rest.startswith(("#", "＃", "://", "…", "...")) or not any(map(_is_tag_letter, match.group(1))):
            continue
        spans.append((match.start(), match.end(), "#" + match.group(1)))
    return spans


def _hashtag_spans(text: str, rule: str = DEFAULT_HASHTAG_RULE) -> list[tuple[int, int, str]]:
    """(start, end, tag as written) for every qualifying hashtag in `text`, by `rule`."""
    if rule == "twitter":
        return _twitter_spans(text)
    check_hashtag_rule(rule)
    spans = []
    for match in _CANDIDATE.finditer(text):
        tag = match.group()
        if len(tag) > _MAX_TAG_CHARS or not tag[1].isalpha():
            continue
        if tag.endswith("…") or tag.endswith("..."):
            continue
        if tag[-1] in string.punctuation:
            tag = tag[:-1]
        if _ASCII_TAG.fullmatch(tag):
            spans.append((match.start(), match.start() + len(tag), tag))
    return spans


def extract_hashtags(text: str, rule: str = DEFAULT_HASHTAG_RULE) -> list[str]:
    """Lower-cased hashtags of `text` (with ``#``), each once, in order of appearance."""
    seen: dict[str, None] = {}
    for _, _, tag in _hashtag_spans(text, rule):
        seen.setdefault("#" + tag[1:].lower(), None)
    return list(seen)


def strip_hashtags(text: str, rule: str = DEFAULT_HASHTAG_RULE) -> str:
    """`text` without its hashtags (as `extract_hashtags` finds them), spaces collapsed.

    Used on queries, so that retrieval matches the topic of a post rather than the tag
    string itself (the HICL ``--hashprocess remove`` option).
    """
    return drop_hashtags(text, 1.0, rule=rule)


def drop_hashtags(text: str, probability: float, rng: random.Random | None = None, *,
                  rule: str = DEFAULT_HASHTAG_RULE) -> str:
    """`text` with each hashtag removed with `probability` (independently), spaces collapsed.

    The hashtag noise of contrastive encoder training: a model that sees the tag string of
    its positive every time learns to match tags, not topics.
    """
    pieces, last = [], 0
    for start, end, _ in _hashtag_spans(text, rule):
        if probability >= 1.0 or (rng or random).random() < probability:
            pieces.append(text[last:start])
            last = end
    pieces.append(text[last:])
    return " ".join("".join(pieces).split())


_SPECIAL_PUNCTS = {"’": "'", "…": "..."}


@lru_cache(maxsize=1)
def _tweet_tokenizer():
    # BERTweet's own tweet tokenizer (a port of NLTK's), so normalisation matches the tokenizer
    # the hashencoder was trained with, token for token.
    from transformers.models.bertweet.tokenization_bertweet import TweetTokenizer

    return TweetTokenizer()


def _demojize(token: str) -> str:
    from emoji import demojize

    return demojize(token)


def _normalize_token(token: str) -> str:
    if token.startswith("@"):
        return "@USER"
    lowered = token.lower()
    if lowered.startswith("http") or lowered.startswith("www"):
        return "HTTPURL"
    if len(token) == 1:
        return _SPECIAL_PUNCTS.get(token) or _demojize(token)
    return token


def normalize_bertweet(text: str) -> str:
    """BERTweet normalisation: mentions to ``@USER``, links to ``HTTPURL``, emoji to text.

    The same steps, in the same order, as ``BertweetTokenizer.normalizeTweet`` (the tests
    compare the two on real tweets); done here once per post so that the tokenizer can run
    with ``normalization=False``.
    """
    for punct, replacement in _SPECIAL_PUNCTS.items():
        text = text.replace(punct, replacement)
    tokens = _tweet_tokenizer().tokenize(text)
    norm = " ".join(_normalize_token(token) for token in tokens)
    norm = (
        norm.replace("cannot ", "can not ")
        .replace("n't ", " n't ")
        .replace("n 't ", " n't ")
        .replace("ca n't", "can't")
        .replace("ai n't", "ain't")
    )
    norm = (
        norm.replace("'m ", " 'm ")
        .replace("'re ", " 're ")
        .replace("'s ", " 's ")
        .replace("'ll ", " 'll ")
        .replace("'d ", " 'd ")
        .replace("'ve ", " 've ")
    )
    norm = (
        norm.replace(" p . m .", "  p.m.")
        .replace(" p . m ", " p.m ")
        .replace(" a . m .", " a.m.")
        .replace(" a . m ", " a.m ")
    )
    return " ".join(norm.split())


def normalize(text: str, style: str) -> str:
    """Apply the text normalisation an encoder preset names (``none`` or ``bertweet``)."""
    if style == "none":
        return text
    if style == "bertweet":
        return normalize_bertweet(text)
    raise ValueError(f"unknown text normalisation {style!r}; known: none, bertweet")


def is_truncated(text: str) -> bool:
    """True when `text` ends the way the Twitter API truncates long retweets."""
    stripped = text.rstrip()
    return stripped.endswith("…") or stripped.endswith("...")


def duplicate_key(text: str) -> str:
    """A key equal for copies of the same post: retweets, re-posts with another link or mention.

    Lower-cased, without ``RT @user:`` prefixes, links, mentions, ``#`` signs, punctuation and
    extra spaces; a text truncated with ``…`` loses its cut-off last word, so that its key is
    a prefix of the full post's key (see `is_near_duplicate`).
    """
    key = text.strip()
    if key[:2].lower() == "rt":  # each expression runs only where it could match (1.2x as fast on tweets)
        key = _RT_PREFIX.sub("", key)
    if is_truncated(key):
        key = _TRUNCATED_TAIL.sub("", key)
    lowered = key.lower()
    if "http" in lowered or "www." in lowered:
        key = _URL.sub(" ", key)
    if "@" in key:
        key = _MENTION.sub(" ", key)
    return " ".join(_NON_WORD.sub(" ", key.lower()).split())


MIN_PREFIX_CHARS = 24


def is_near_duplicate(key_a: str, key_b: str) -> bool:
    """Whether two duplicate keys name the same post.

    Equal keys, or one a prefix of the other (a truncated retweet of a longer post) when the
    shorter has at least `MIN_PREFIX_CHARS` characters: a short generic post such as
    "thank you" is not a copy of every post that begins with it. Empty keys (posts of only
    links and mentions) are never duplicates of anything.
    """
    if not key_a or not key_b:
        return False
    if key_a == key_b:
        return True
    short, long_ = sorted((key_a, key_b), key=len)
    return len(short) >= MIN_PREFIX_CHARS and long_.startswith(short) and long_[len(short)] == " "


MIN_BARE_CHARS = 16


@dataclass(frozen=True)
class CopyKey:
    """What makes two posts copies: their duplicate keys with and without hashtags.

    Re-posts often differ only in their hashtags (a tag added or removed); a classifier fed such
    a copy as a demonstration sees its own example, sometimes with the very tag its label was
    made from (TweetEval emotion holds tweets both with and without their emotion hashtag).
    Without hashtags, only keys of at least `MIN_BARE_CHARS` characters count, so that
    "good morning #monday" is not a copy of "good morning #friday"; a generic text just above
    it ("thank you so much") may lose a neighbour that differs only in its tags, a smaller harm
    than a demonstration that repeats its example.
    """

    key: str
    bare: str

    @classmethod
    def of(cls, text: str, key: str | None = None, rule: str = DEFAULT_HASHTAG_RULE) -> CopyKey:
        """`text`'s keys; `key`: its `duplicate_key` when already known (stored with the post)."""
        key = duplicate_key(text) if key is None else key
        return cls(key, duplicate_key(strip_hashtags(text, rule)) if "#" in text or "＃" in text else key)

    def copies(self, other: CopyKey) -> bool:
        if is_near_duplicate(self.key, other.key):
            return True
        return min(len(self.bare), len(other.bare)) >= MIN_BARE_CHARS and is_near_duplicate(self.bare, other.bare)
