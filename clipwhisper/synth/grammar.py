"""GRID-style sentences: command colour preposition letter digit adverb (51 words)."""

from __future__ import annotations

import random

COMMANDS = ("bin", "lay", "place", "set")
COLOURS = ("blue", "green", "red", "white")
PREPOSITIONS = ("at", "by", "in", "with")
LETTERS = tuple("abcdefghijklmnopqrstuvxyz")  # GRID leaves out w
DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
ADVERBS = ("again", "now", "please", "soon")
SLOTS = (COMMANDS, COLOURS, PREPOSITIONS, LETTERS, DIGITS, ADVERBS)
VOCABULARY = tuple(word for slot in SLOTS for word in slot)

# eSpeak reads a lone "a" as the article; its letter name must be given as phonemes.
_SPOKEN_FORM = {"a": "[[eI]]"}


def sample_sentence(rng: random.Random) -> str:
    return " ".join(rng.choice(slot) for slot in SLOTS)


def spoken_text(sentence: str) -> str:
    """The text handed to eSpeak (with phoneme input enabled) for a transcript."""
    return " ".join(_SPOKEN_FORM.get(word, word) for word in sentence.split())
