import re
from pathlib import Path

import pytest

from hicl_retrieval import HiclError
from hicl_retrieval.core.text import (
    CopyKey,
    check_unicode,
    duplicate_key,
    extract_hashtags,
    is_blank,
    is_near_duplicate,
    normalize,
    normalize_bertweet,
    strip_hashtags,
)


@pytest.mark.parametrize(
    ("text", "tags"),
    [
        ("Flooding in #Calgary #yycflood!", ["#calgary", "#yycflood"]),
        ("#Flood, #flood and #FLOOD", ["#flood"]),  # lower-cased, listed once
        ("truncated #abflo… and #abflood...", []),  # cut off by the API
        ("#2013 #1direction", []),  # must start with a letter
        ("#yyc#flood #black_lives #été", []),  # ASCII letters and digits only
        ("#" + "a" * 29 + " #" + "b" * 30, ["#" + "a" * 29]),  # at most 30 characters with '#'
        ("C# and abc#def and &#39;quote", []),  # not inside a word or an HTML entity
        ("(#inParens) #double!! #ok.", ["#inparens", "#ok"]),  # one trailing punctuation character only
        ("", []),
    ],
)
def test_the_hicl_rule_follows_the_reference_code(text, tags):
    assert extract_hashtags(text, "hicl") == tags


@pytest.mark.parametrize(
    ("text", "tags"),
    [
        ("Flooding in #Calgary #yycflood!", ["#calgary", "#yycflood"]),
        ("#Flood, #flood and #FLOOD", ["#flood"]),
        ("#Covid_19 #東京 #हिन्दी #Ünïcödé ＃全角", ["#covid_19", "#東京", "#हिन्दी", "#ünïcödé", "#全角"]),  # 23
        ("#2013 #1direction #_", ["#1direction"]),  # a letter somewhere, digits alone are no tag
        ("truncated #abflo… and #abflood...", []),
        ("#yyc#flood and #link://x", []),  # followed by another # or by ://
        ("C# and abc#def and &#39;quote", []),
        ("(#inParens) #double!! #ok.", ["#inparens", "#double", "#ok"]),  # a tag ends where its characters do
        ("#" + "a" * 40, ["#" + "a" * 40]),  # no length limit
        ("", []),
    ],
)
def test_the_twitter_rule_is_the_default(text, tags):
    assert extract_hashtags(text) == extract_hashtags(text, "twitter") == tags


def test_strip_hashtags_removes_exactly_the_extracted_tags():
    assert strip_hashtags("Water everywhere #yycflood, stay safe #abflood") == "Water everywhere , stay safe"
    assert strip_hashtags("C# is not a tag #2013") == "C# is not a tag #2013"
    assert strip_hashtags("stay safe #Covid_19 #東京") == "stay safe"
    assert strip_hashtags("stay safe #Covid_19 #東京", "hicl") == "stay safe #Covid_19 #東京"


def test_duplicate_key_ignores_retweet_prefix_links_mentions_and_case():
    original = "Canmore declares state of emergency due to flooding http://t.co/abc #Alberta"
    retweet = "RT @CBCAlerts: canmore declares STATE of emergency due to flooding https://t.co/xyz #alberta"
    assert duplicate_key(original) == duplicate_key(retweet)
    assert duplicate_key("@user @other http://t.co/x") == ""


def test_truncated_retweet_is_a_near_duplicate_of_its_original():
    original = "Incredible photos of flooding around southern Alberta, including Canmore and Bragg Creek"
    truncated = "RT @GlobalCalgary: Incredible photos of flooding around southern Alberta, including Canm…"
    assert is_near_duplicate(duplicate_key(original), duplicate_key(truncated))
    # a short generic post is not a copy of every longer post that starts the same way
    assert not is_near_duplicate(duplicate_key("thank you"), duplicate_key("thank you all for the help"))
    # a prefix must end on a word boundary
    assert not is_near_duplicate("flooding around southern albert", "flooding around southern alberta canmore")
    assert not is_near_duplicate("", "")


def test_a_post_with_other_hashtags_is_a_copy_when_its_text_is_long_enough():
    # TweetEval emotion holds the same tweet with and without the hashtag its label came from
    tagged = CopyKey.of("What a fucking muppet.  @user #fuming #stalker.")
    assert tagged.copies(CopyKey.of("What a fucking muppet.  @user  #stalker. "))
    assert CopyKey.of("in my dream....They were trying to steal my kidney!!! #nightmare").copies(
        CopyKey.of("RT @x: in my dream....They were trying to steal my kidney!!!"))
    assert not CopyKey.of("good morning #monday").copies(CopyKey.of("good morning #friday"))
    assert not CopyKey.of("#flood #yyc").copies(CopyKey.of("#fire #yyc"))
    assert not tagged.copies(CopyKey.of("What a muppet, honestly #fuming #stalker"))
    stored = duplicate_key("Flooding in Calgary again today #yyc")
    assert CopyKey.of("Flooding in Calgary again today #yyc", stored) == CopyKey.of("Flooding in Calgary again today #yyc")


def test_normalize_bertweet_replaces_mentions_links_and_emoji():
    text = "@bob look at this 😀 https://t.co/x can't believe it’s here…"
    assert normalize_bertweet(text) == "@USER look at this :grinning_face: HTTPURL can't believe it 's here ..."
    assert normalize("unchanged @bob", "none") == "unchanged @bob"
    with pytest.raises(ValueError):
        normalize("x", "unknown")


def test_normalize_bertweet_matches_the_bertweet_tokenizer_on_real_tweets(shared_data, tiny_hashencoder):
    from transformers import BertweetTokenizer

    reference = BertweetTokenizer.from_pretrained(str(tiny_hashencoder), normalization=True)
    lines = []
    for name in ("emotion/train_text.txt", "irony/train_text.txt", "hate/train_text.txt"):
        lines += Path(shared_data, "tweeteval", "datasets", name).read_text(encoding="utf-8").splitlines()[:400]
    assert len(lines) == 1200
    mismatches = [line for line in lines if normalize_bertweet(line) != reference.normalizeTweet(line)]
    assert mismatches == []


@pytest.mark.parametrize("text, blank", [
    ("", True), (" \t\n", True), ("\u200b", True), ("\u200b \ufeff\u2060\u00a0", True), ("\u3164\u2800", True),
    ("a\u200b", False), ("東", False), ("\u0301", False), ("#", False),
])
def test_a_text_of_only_invisible_characters_is_blank(text, blank):
    assert is_blank(text) is blank


@pytest.mark.parametrize("value, held", [("flood \udcff", "the byte 0xff"), ("\ud800 x", "the lone surrogate \\ud800")])
def test_text_utf8_cannot_hold_is_refused_naming_what_it_holds(value, held):
    with pytest.raises(HiclError, match=f"the query is not valid UTF-8 \\(it holds {re.escape(held)}\\)"):
        check_unicode(value, "the query")
    assert check_unicode("flood ✓", "the query") == "flood ✓"
