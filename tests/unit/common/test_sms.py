"""SMS text: composing bodies, splitting for Cast's cap."""

from __future__ import annotations

import random
import re

import pytest

from castghl.common.errors import PermanentError
from castghl.common.sms import EmptyMessage, MessageTooLong, compose, split

EMOJI = "\U0001f600"  # 😀: outside the BMP, a surrogate pair in UTF-16

# --- compose ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "attachments", "expected"),
    [
        pytest.param("Hello", [], "Hello", id="text-only"),
        pytest.param("Hello  \n\n", [], "Hello", id="trailing-whitespace-dropped"),
        pytest.param("Hello", ["https://x.io/a.jpg"], "Hello\nhttps://x.io/a.jpg",
                     id="one-attachment"),
        pytest.param("Hi\n", ["https://x.io/a", " https://x.io/b \n"],
                     "Hi\nhttps://x.io/a\nhttps://x.io/b", id="two-attachments-stripped"),
        pytest.param("", ["https://x.io/a"], "https://x.io/a", id="attachments-only"),
        pytest.param("  \n ", ["https://x.io/a"], "https://x.io/a",
                     id="blank-text-attachments-only"),
        pytest.param("Hi", ["", "  "], "Hi", id="blank-attachments-ignored"),
        pytest.param("line 1\r\nline 2\rline 3", [], "line 1\nline 2\nline 3",
                     id="line-endings-normalised"),
        pytest.param("\n \n  indented\nnext", [], "  indented\nnext",
                     id="leading-blank-lines-dropped-indent-kept"),
        pytest.param("a\n\n\nb", [], "a\n\n\nb", id="inner-blank-lines-kept"),
    ],
)
def test_compose(message: str, attachments: list[str], expected: str) -> None:
    assert compose(message, attachments) == expected


@pytest.mark.parametrize(
    ("message", "attachments"),
    [
        pytest.param("", [], id="nothing"),
        pytest.param(" \n\t", [], id="whitespace"),
        pytest.param("", ["", " "], id="blank-attachments"),
    ],
)
def test_compose_refuses_an_empty_message(message: str, attachments: list[str]) -> None:
    with pytest.raises(EmptyMessage) as caught:
        compose(message, attachments)
    assert isinstance(caught.value, PermanentError)
    assert caught.value.code == "empty_message"
    assert caught.value.user_message == "Cast SMS: the message is empty"


# --- split --------------------------------------------------------------------------------


def _assert_only_break_whitespace_removed(text: str, chunks: list[str], limit: int) -> None:
    """The documented rule: chunks are `text.strip()` in order, minus break whitespace."""
    assert all(0 < len(chunk) <= limit for chunk in chunks)
    body, pos = text.strip(), 0
    for index, chunk in enumerate(chunks):
        if index:
            gap = re.match(r"\s*", body[pos:])
            assert gap is not None
            pos += gap.end()
        assert body.startswith(chunk, pos), (index, chunk[:20])
        pos += len(chunk)
    assert pos == len(body)


@pytest.mark.parametrize(
    ("text", "limit", "expected"),
    [
        pytest.param("", 10, [""], id="empty-fits"),
        pytest.param("hello", 10, ["hello"], id="short-fits"),
        pytest.param("0123456789", 10, ["0123456789"], id="exact-limit"),
        pytest.param("  padded  ", 10, ["  padded  "], id="fitting-text-untouched"),
        pytest.param("aaaa bbbb cccc", 10, ["aaaa bbbb", "cccc"], id="break-at-space"),
        pytest.param("aaaa bbbbb cccc", 10, ["aaaa bbbbb", "cccc"],
                     id="space-exactly-at-limit"),
        pytest.param("aaaa  \n  bbbb cccc", 10, ["aaaa", "bbbb cccc"],
                     id="whole-run-dropped"),
        pytest.param("aaaaaa\nbb cc dd", 10, ["aaaaaa", "bb cc dd"],
                     id="newline-in-second-half-preferred"),
        pytest.param("aa\nbbbb ccccc dd", 10, ["aa\nbbbb", "ccccc dd"],
                     id="newline-too-early-ignored"),
        pytest.param("abcdefghijklmnopqrstuvwxy", 10, ["abcdefghij", "klmnopqrst", "uvwxy"],
                     id="no-whitespace-hard-split"),
        pytest.param("ab cdefghijklmnop", 10, ["ab", "cdefghijkl", "mnop"],
                     id="long-word-after-short-one"),
        pytest.param("   aaaa bbbb cccc  ", 10, ["aaaa bbbb", "cccc"],
                     id="surrounding-whitespace-dropped-when-splitting"),
        pytest.param("aaaaaaaaa" + "e\u0301" + "bbb", 10, ["aaaaaaaaa", "e\u0301bbb"],
                     id="combining-accent-kept-with-its-letter"),
        pytest.param("aaaaaaaaa👍🏽bbb", 10, ["aaaaaaaaa", "👍🏽bbb"],
                     id="skin-tone-kept-with-its-emoji"),
        pytest.param("aaaaaaaa👩\u200d💻bb", 10, ["aaaaaaaa", "👩\u200d💻bb"],
                     id="zwj-sequence-kept-whole"),
        pytest.param("a" * 9 + EMOJI + "b" * 5, 10, ["a" * 9 + EMOJI, "b" * 5],
                     id="emoji-is-one-character"),
    ],
)
def test_split(text: str, limit: int, expected: list[str]) -> None:
    chunks = split(text, limit, max_parts=5)
    assert chunks == expected
    if len(text) > limit:
        _assert_only_break_whitespace_removed(text, chunks, limit)


def _words(total: int, seed: int = 7) -> str:
    """`total` characters of words and mixed whitespace, ending in a non-space."""
    rng = random.Random(seed)
    text = ""
    while len(text) < total:
        text += "x" * rng.randint(1, 12) + rng.choice([" ", " ", " ", "\n", ", "])
    text = text[:total]
    return text[:-1] + "z" if text[-1].isspace() else text


@pytest.mark.parametrize(
    ("length", "parts"),
    [
        pytest.param(450, 1, id="450-fits"),
        pytest.param(451, 2, id="451-splits"),
        pytest.param(600, 2, id="600-two-parts"),
        pytest.param(1000, 3, id="1000-three-parts"),
    ],
)
def test_split_at_cast_limit(length: int, parts: int) -> None:
    text = _words(length)
    assert len(text) == length
    chunks = split(text, 450, max_parts=3)
    assert len(chunks) == parts
    _assert_only_break_whitespace_removed(text, chunks, 450)


def test_split_450_plain_characters_exactly() -> None:
    assert split("a" * 450, 450, 3) == ["a" * 450]
    assert split("a" * 451, 450, 3) == ["a" * 450, "a"]
    assert split("a" * 600, 450, 3) == ["a" * 450, "a" * 150]


def test_split_newline_near_the_limit() -> None:
    text = "a" * 440 + "\n" + "b" * 5 + " " + "c" * 100
    # The space at 446 is later, but the newline at 440 is in the window's second half.
    assert split(text, 450, 3) == ["a" * 440, "b" * 5 + " " + "c" * 100]


@pytest.mark.parametrize("seed", range(40))
def test_split_keeps_every_character_but_break_whitespace(seed: int) -> None:
    rng = random.Random(seed)
    alphabet = "abcde fghij\n\t  " + EMOJI + "é€"
    text = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 400)))
    limit = rng.randint(1, 60)
    try:
        chunks = split(text, limit, max_parts=1000)
    except MessageTooLong:
        pytest.fail("1000 parts always suffice for 400 characters")
    if len(text) <= limit:
        assert chunks == [text]
    else:
        _assert_only_break_whitespace_removed(text, chunks, limit)


@pytest.mark.parametrize(
    ("text", "limit", "max_parts", "user_message"),
    [
        pytest.param("a" * 1351, 450, 3,
                     "Cast SMS: the message is too long (1,351 characters; "
                     "the limit is 1,350 in 3 parts)", id="over-cap-total"),
        pytest.param("a" * 451, 450, 1,
                     "Cast SMS: the message is too long (451 characters; "
                     "the limit is 450 in 1 part)", id="one-part-cap"),
        # Fits 3 x 10 by count, but breaking at whitespace needs four chunks.
        pytest.param("aaaaaa bbbbbb cccccc dddd", 10, 3,
                     "Cast SMS: the message is too long (25 characters; "
                     "the limit is 30 in 3 parts)", id="whitespace-breaks-need-more"),
    ],
)
def test_split_beyond_max_parts_is_too_long(
    text: str, limit: int, max_parts: int, user_message: str
) -> None:
    with pytest.raises(MessageTooLong) as caught:
        split(text, limit, max_parts)
    assert isinstance(caught.value, PermanentError)
    assert caught.value.code == "message_too_long"
    assert caught.value.user_message == user_message


def test_split_at_exactly_max_parts_is_fine() -> None:
    assert split("a" * 1350, 450, 3) == ["a" * 450] * 3


@pytest.mark.parametrize(
    ("limit", "max_parts"),
    [pytest.param(0, 3, id="limit-0"), pytest.param(450, 0, id="max-parts-0"),
     pytest.param(-1, -1, id="negative")],
)
def test_split_rejects_nonsense_limits(limit: int, max_parts: int) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        split("text", limit, max_parts)
