"""Token strings as the dashboard shows them: GPT-2 byte-level BPE decoded, other vocabularies' markers undone."""

from __future__ import annotations

import random

from interpedia.web.pages.dashboard import _BYTES, display_token


def _reference(token: str) -> str:
    """The plain per-character decoding (GPT-2's ``bytes_to_unicode`` inverse), for comparison."""
    if token and all(c in _BYTES for c in token):
        try:
            text = bytes(_BYTES[c] for c in token).decode("utf-8")
        except UnicodeDecodeError:
            text = token.translate(str.maketrans({"Ġ": " ", "Ċ": "\n", "ĉ": "\t", "▁": " "}))
    else:
        text = token.translate(str.maketrans({"Ġ": " ", "Ċ": "\n", "ĉ": "\t", "▁": " "}))
    return text.translate({c: chr(0x2400 + c) for c in range(32) if chr(c) not in "\n\t"} | {0x7F: "\u2421"})


def test_known_tokens() -> None:
    assert display_token("Ġcat") == " cat"
    assert display_token("Ċ") == "\n"
    assert display_token("âĢĻ") == "\u2019"  # a right single quote, three bytes
    assert display_token("▁the") == " the"  # SentencePiece
    assert display_token("<0x0A>") == "\n"
    assert display_token("a b") == "a b"  # a raw space is no byte-level character: left as it is
    assert display_token("") == ""


def test_random_tokens_decode_as_the_per_character_reference() -> None:
    rng = random.Random(0)
    byte_chars = sorted(_BYTES)
    others = [" ", "\x00", "\x7f", "\xad", "é", "▁", "Ġ", "中", "\U0001f600", "Ā"]
    for _ in range(20000):
        pool = byte_chars if rng.random() < 0.7 else byte_chars + others
        token = "".join(rng.choice(pool) for _ in range(rng.randint(0, 6)))
        assert display_token.__wrapped__(token) == _reference(token), repr(token)
