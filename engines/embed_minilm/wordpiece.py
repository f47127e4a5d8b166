"""BERT uncased WordPiece tokenisation in pure Python, as Hugging Face ``tokenizers`` does it.

Reproduces the ``tokenizer.json`` of all-MiniLM-L6-v2 (BertNormalizer with clean_text,
handle_chinese_chars, lowercase and accent stripping; BertPreTokenizer; WordPiece with
``##`` continuations, ``[UNK]`` for words over 100 characters or with no split; the
``[CLS] A [SEP]`` template), so the engine needs no compiled tokenizer library and the
tokeniser is part of the measured code. Steps and their order follow ``tokenizers``'
``normalizers/bert.rs`` and ``pre_tokenizers/bert.rs``; notably lower-casing is per
character (no final-sigma rule), as in Rust's ``char::to_lowercase``.
"""

from __future__ import annotations

import string
import unicodedata
from pathlib import Path

UNK, CLS, SEP = "[UNK]", "[CLS]", "[SEP]"
MAX_CHARS_PER_WORD = 100
_ASCII_PUNCTUATION = frozenset(string.punctuation)
_CJK_RANGES = (
    (0x4E00, 0x9FFF),
    (0x3400, 0x4DBF),
    (0x20000, 0x2A6DF),
    (0x2A700, 0x2B73F),
    (0x2B740, 0x2B81F),
    (0x2B820, 0x2CEAF),
    (0xF900, 0xFAFF),
    (0x2F800, 0x2FA1F),
)


def _is_control(char: str) -> bool:
    # tokenizers: everything in Cc, Cf, Cs, Co, Cn except tab, newline, carriage return
    return char not in "\t\n\r" and unicodedata.category(char).startswith("C")


def _is_whitespace(char: str) -> bool:
    return char in "\t\n\r" or char.isspace()


def _is_chinese(char: str) -> bool:
    cp = ord(char)
    return any(lo <= cp <= hi for lo, hi in _CJK_RANGES)


def _is_punctuation(char: str) -> bool:
    return char in _ASCII_PUNCTUATION or unicodedata.category(char).startswith("P")


def normalize(text: str) -> str:
    """BertNormalizer(clean_text, handle_chinese_chars, strip_accents, lowercase)."""
    out = []
    for char in text:
        if char in ("\x00", "\ufffd") or _is_control(char):
            continue
        if _is_whitespace(char):
            out.append(" ")
        elif _is_chinese(char):
            out.append(f" {char} ")
        else:
            out.append(char)
    decomposed = unicodedata.normalize("NFD", "".join(out))
    stripped = "".join(c for c in decomposed if unicodedata.category(c) != "Mn")
    return "".join(c.lower() for c in stripped)


def pre_tokenize(text: str) -> list[str]:
    """BertPreTokenizer: split on whitespace, and isolate every punctuation character."""
    words: list[str] = []
    for chunk in text.split():
        current = []
        for char in chunk:
            if _is_punctuation(char):
                if current:
                    words.append("".join(current))
                    current = []
                words.append(char)
            else:
                current.append(char)
        if current:
            words.append("".join(current))
    return words


class WordPieceTokenizer:
    """Text -> token ids for a BERT uncased vocabulary (one token per line of vocab.txt)."""

    def __init__(self, vocab_path: Path) -> None:
        tokens = vocab_path.read_text("utf-8").split("\n")
        if tokens and tokens[-1] == "":
            tokens.pop()
        self.vocab = {token: index for index, token in enumerate(tokens)}
        for special in (UNK, CLS, SEP):
            if special not in self.vocab:
                raise ValueError(f"vocabulary lacks {special}")

    def _word_pieces(self, word: str) -> list[str]:
        if len(word) > MAX_CHARS_PER_WORD:
            return [UNK]
        pieces = []
        start = 0
        while start < len(word):
            end = len(word)
            piece = None
            while start < end:
                candidate = word[start:end] if start == 0 else "##" + word[start:end]
                if candidate in self.vocab:
                    piece = candidate
                    break
                end -= 1
            if piece is None:
                return [UNK]
            pieces.append(piece)
            start = end
        return pieces

    def encode(self, text: str, max_length: int) -> tuple[list[int], bool]:
        """Token ids ``[CLS] ... [SEP]`` truncated to ``max_length``, and whether it was cut."""
        pieces = [p for word in pre_tokenize(normalize(text)) for p in self._word_pieces(word)]
        room = max_length - 2
        truncated = len(pieces) > room
        ids = [self.vocab[p] for p in pieces[:room]]
        return [self.vocab[CLS], *ids, self.vocab[SEP]], truncated
