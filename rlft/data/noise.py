"""Rule-based colloquial noise for customer messages, and `data.augment_noise`'s noisy training copies.

Why: a model trained on tidy utterances loses points on the way customers actually write (lower case, typos,
"u"/"pls", "hey so", an angry word). Bitext's own flags show the gap: its training sample carries colloquial (Q)
and typo (Z) variants for only 14 of its 27 intents. `noisy` rewrites a message the way such traffic looks, with
rules, so a training set can hold a noisy copy of every row whatever intent it has; the label never changes.

Each rule fires with probability `rate` per opportunity (per matching phrase, per word, once per message), in a
fixed order: abbreviations and contractions ("you" -> "u", "please" -> "pls", "I am" -> "im"), typos (a
neighbouring QWERTY key, a dropped letter, a doubled letter, two letters swapped; words of 3+ letters), a filler
("hey", "um", "so" in front; "like" inside), optional mild profanity ("damn", "freaking", ...) before a word, and
casing / end punctuation (lower case mostly, sometimes upper case; a final "." or "?" dropped). Placeholders such
as ``{{Order Number}}`` and words with digits are never touched. Deterministic: one `random.Random(seed)` drives
every choice, so the same (text, seed, rate) always gives the same output; rate 0 returns the text unchanged.

Not here: paraphrases (`rlft generate` with a model does that), other languages, keyboard layouts but QWERTY.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from typing import Any

# (pattern, replacements): whole words, case-insensitive; one replacement is picked per match.
ABBREVIATIONS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (r"i am", ("im", "i'm")),
    (r"i would like to", ("i wanna", "id like to")),
    (r"want to", ("wanna",)),
    (r"going to", ("gonna",)),
    (r"do not", ("dont", "don't")),
    (r"cannot|can not|can't", ("cant", "cannt")),
    (r"please", ("pls", "plz")),
    (r"thanks|thank you", ("thx", "ty")),
    (r"you", ("u",)),
    (r"your", ("ur",)),
    (r"are", ("r",)),
    (r"because", ("cuz", "bc")),
    (r"information", ("info",)),
    (r"okay", ("ok", "k")),
    (r"what", ("wat", "wht")),
)
FILLERS_FRONT = ("hey", "um", "so", "hi", "hello", "ok so", "uh")
FILLER_INSIDE = ("like", "um", "just")
PROFANITY = ("damn", "freaking", "bloody", "stupid")
KEYBOARD = ("qwertyuiop", "asdfghjkl", "zxcvbnm")


def _neighbours(rows: Sequence[str] = KEYBOARD) -> dict[str, str]:
    """Each key's neighbours on a staggered keyboard: left/right, and the two touching keys above and below."""
    out = {}
    for r, row in enumerate(rows):
        for c, key in enumerate(row):
            near = [row[j] for j in (c - 1, c + 1) if 0 <= j < len(row)]
            near += [rows[o][j] for o in (r - 1, r + 1) if 0 <= o < len(rows)
                     for j in (c, c + (1 if o < r else -1)) if 0 <= j < len(rows[o])]
            out[key] = "".join(near)
    return out


NEIGHBOURS = _neighbours()
_PLACEHOLDER = re.compile(r"\{\{.*?\}\}")
_ABBREVIATIONS = tuple((re.compile(rf"\b(?:{p})\b", re.IGNORECASE), r) for p, r in ABBREVIATIONS)


def _typo(word: str, rng: random.Random) -> str:
    """One keyboard slip in a word of 3+ letters: neighbouring key, dropped, doubled or swapped letter."""
    i = rng.randrange(len(word))
    kind = rng.choice(("neighbour", "drop", "double", "swap"))
    if kind == "neighbour" and word[i].lower() in NEIGHBOURS:
        return word[:i] + rng.choice(NEIGHBOURS[word[i].lower()]) + word[i + 1:]
    if kind == "drop":
        return word[:i] + word[i + 1:]
    if kind == "swap" and i + 1 < len(word):
        return word[:i] + word[i + 1] + word[i] + word[i + 2:]
    return word[:i] + word[i] + word[i:]  # double (and the fallback of the other kinds)


_WORD = re.compile(r"^([A-Za-z]{3,})([.,!?;:]*)$")


def _plain(word: str) -> bool:
    """A word of 3+ letters, maybe followed by punctuation (no digits, no placeholders)."""
    return _WORD.match(word) is not None


def _typo_word(word: str, rng: random.Random) -> str:
    core, tail = _WORD.match(word).groups()  # type: ignore[union-attr]
    return _typo(core, rng) + tail


def _hide(text: str) -> tuple[str, list[str]]:
    """Placeholders -> private-use characters, which no rule touches (not letters, not words)."""
    holders = _PLACEHOLDER.findall(text)
    for i, h in enumerate(holders):
        text = text.replace(h, chr(0xE000 + i), 1)
    return text, holders


def _show(text: str, holders: list[str]) -> str:
    for i, h in enumerate(holders):
        text = text.replace(chr(0xE000 + i), h, 1)
    return text


def noisy(text: str, seed: int | str, rate: float = 0.3, profanity: bool = False) -> str:
    """`text` rewritten with colloquial noise (module doc); the same arguments always give the same output.

    >>> noisy("Please cancel my order", seed=0, rate=0.0)
    'Please cancel my order'
    >>> noisy("Please cancel my order", seed=1, rate=1.0) == noisy("Please cancel my order", seed=1, rate=1.0)
    True
    """
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"rate must be in [0, 1], got {rate}")
    if rate == 0.0 or not text:
        return text
    rng = random.Random(f"rlft.noise:{seed}")  # str seeds hash with SHA-512: stable across runs and processes
    text, holders = _hide(text)
    for pattern, replacements in _ABBREVIATIONS:
        text = pattern.sub(lambda m: rng.choice(replacements) if rng.random() < rate else m.group(0), text)
    words = [_typo_word(w, rng) if _plain(w) and rng.random() < rate else w for w in text.split(" ")]
    if len(words) > 2 and rng.random() < rate:
        words.insert(rng.randrange(1, len(words)), rng.choice(FILLER_INSIDE))
    if profanity and rng.random() < rate:
        spots = [i for i, w in enumerate(words) if i > 0 and _plain(w)]
        if spots:
            words.insert(rng.choice(spots), rng.choice(PROFANITY))
    if words and rng.random() < rate:
        words.insert(0, rng.choice(FILLERS_FRONT))
    text = " ".join(words)
    if rng.random() < rate:
        text = text.upper() if rng.random() < 0.15 else text.lower()
    if text[-1:] in ".?!" and rng.random() < rate:
        text = text[:-1]
    return _show(text, holders)


def noisy_rows(rows: Sequence[dict[str, Any]], fields: Sequence[str], seed: int, rate: float,
               profanity: bool = False) -> list[dict[str, Any]]:
    """A noisy copy of each row: the text `fields` rewritten (row i with seed ``f"{seed}:{i}:{field}"``), every
    other column, the label included, kept as is. Non-text values are copied unchanged."""
    out = []
    for i, row in enumerate(rows):
        copy = dict(row)
        for name in fields:
            if isinstance(copy.get(name), str):
                copy[name] = noisy(copy[name], f"{seed}:{i}:{name}", rate, profanity)
        out.append(copy)
    return out
