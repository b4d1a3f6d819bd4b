"""Post text: hashtags, BERTweet normalisation, hashtag stripping, duplicate keys.

Hashtag rules follow the HICL reference code (`preprocess_match.py`), with one change:

- a candidate is ``#`` followed by non-space characters, at the start of the text or after a
  character that is not a letter, digit, ``_`` or ``&`` (so ``C#``, ``abc#def`` and the HTML
  entity ``&#39;`` are not hashtags; the reference extracts ``#def`` from ``abc#def``);
- it is at most 30 characters long, ``#`` included;
- its first character after ``#`` is a letter;
- a tag truncated by the Twitter API (ending in ``…`` or ``...``) is dropped;
- one trailing punctuation character is removed (``#flood,`` gives ``#flood``);
- what remains must be ASCII letters and digits only (``#yyc#flood``, ``#black_lives`` and
  tags in other scripts are dropped, as in the reference);
- tags are lower-cased and each is listed once, in order of first appearance.
"""

from __future__ import annotations

import random
import re
import string
from dataclasses import dataclass
from functools import lru_cache

_CANDIDATE = re.compile(r"(?<![\w&])#\S+")
_ASCII_TAG = re.compile(r"#[A-Za-z0-9]+")
_MAX_TAG_CHARS = 30

_RT_PREFIX = re.compile(r"^(?:rt\s+@\w+:?\s*)+", re.IGNORECASE)
_URL = re.compile(r"(?:https?://|www\.)\S*", re.IGNORECASE)
_MENTION = re.compile(r"@\w+")
_TRUNCATED_TAIL = re.compile(r"\s*\S*(?:…|\.\.\.)\s*$")
_NON_WORD = re.compile(r"[\W_]+")


def _hashtag_spans(text: str) -> list[tuple[int, int, str]]:
    """(start, end, tag as written) for every qualifying hashtag in `text`."""
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


def extract_hashtags(text: str) -> list[str]:
    """Lower-cased hashtags of `text` (with ``#``), each once, in order of appearance."""
    seen: dict[str, None] = {}
    for _, _, tag in _hashtag_spans(text):
        seen.setdefault(tag.lower(), None)
    return list(seen)


def strip_hashtags(text: str) -> str:
    """`text` without its hashtags (as `extract_hashtags` finds them), spaces collapsed.

    Used on queries, so that retrieval matches the topic of a post rather than the tag
    string itself (the HICL ``--hashprocess remove`` option).
    """
    return drop_hashtags(text, 1.0)


def drop_hashtags(text: str, probability: float, rng: random.Random | None = None) -> str:
    """`text` with each hashtag removed with `probability` (independently), spaces collapsed.

    The hashtag noise of contrastive encoder training: a model that sees the tag string of
    its positive every time learns to match tags, not topics.
    """
    pieces, last = [], 0
    for start, end, _ in _hashtag_spans(text):
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
    key = _RT_PREFIX.sub("", text.strip())
    if is_truncated(key):
        key = _TRUNCATED_TAIL.sub("", key)
    key = _URL.sub(" ", key)
    key = _MENTION.sub(" ", key)
    key = _NON_WORD.sub(" ", key.lower())
    return " ".join(key.split())


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
    def of(cls, text: str, key: str | None = None) -> CopyKey:
        """`text`'s keys; `key`: its `duplicate_key` when already known (stored with the post)."""
        key = duplicate_key(text) if key is None else key
        return cls(key, duplicate_key(strip_hashtags(text)) if "#" in text else key)

    def copies(self, other: CopyKey) -> bool:
        if is_near_duplicate(self.key, other.key):
            return True
        return min(len(self.bare), len(other.bare)) >= MIN_BARE_CHARS and is_near_duplicate(self.bare, other.bare)
