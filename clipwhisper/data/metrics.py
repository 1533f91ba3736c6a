"""Word and character error counts, with the text normalisation they are computed after.

Normalizers: ``whisper`` (openai-whisper's EnglishTextNormalizer: lower case,
punctuation removed, spellings and numbers standardised, e.g. "two" -> "2"),
``basic`` (lower case, punctuation removed), ``none`` (whitespace only).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class ErrorCounts:
    substitutions: int = 0
    deletions: int = 0
    insertions: int = 0
    reference_length: int = 0

    @property
    def errors(self) -> int:
        return self.substitutions + self.deletions + self.insertions

    def __add__(self, other: ErrorCounts) -> ErrorCounts:
        return ErrorCounts(self.substitutions + other.substitutions, self.deletions + other.deletions,
                           self.insertions + other.insertions, self.reference_length + other.reference_length)


def error_rate(counts: Iterable[ErrorCounts]) -> float:
    total = sum(counts, ErrorCounts())
    if total.reference_length == 0:
        return 0.0 if total.errors == 0 else float("inf")
    return total.errors / total.reference_length


@functools.cache
def normalizer(name: str) -> Callable[[str], str]:
    """The named normaliser, remembering what it normalised: Whisper's English one takes about a millisecond a
    sentence, and a decode grid normalises each reference once per cell and mostly hypotheses equal to it."""
    return functools.lru_cache(maxsize=2**16)(_normalizer(name))


def _normalizer(name: str) -> Callable[[str], str]:
    if name == "whisper":
        from whisper.normalizers import EnglishTextNormalizer

        english = EnglishTextNormalizer()
        return lambda text: " ".join(english(text).split())
    if name == "basic":
        from whisper.normalizers import BasicTextNormalizer

        basic = BasicTextNormalizer()
        return lambda text: " ".join(basic(text).split())
    if name == "none":
        return lambda text: " ".join(text.split())
    raise ValueError(f"unknown normalizer {name!r} (whisper, basic or none)")


def _counts(reference: str, hypothesis: str, units, process) -> ErrorCounts:
    """jiwer's alignment counts; jiwer refuses empty strings, whose counts are plain."""
    ref_len, hyp_len = len(units(reference)), len(units(hypothesis))
    if ref_len == 0:
        return ErrorCounts(insertions=hyp_len)
    if hyp_len == 0:
        return ErrorCounts(deletions=ref_len, reference_length=ref_len)
    out = process(reference, hypothesis)
    return ErrorCounts(out.substitutions, out.deletions, out.insertions, ref_len)


def word_errors(reference: str, hypothesis: str) -> ErrorCounts:
    import jiwer

    return _counts(reference, hypothesis, str.split, jiwer.process_words)


def char_errors(reference: str, hypothesis: str) -> ErrorCounts:
    import jiwer

    return _counts(reference, hypothesis, list, jiwer.process_characters)
