"""Reading untrusted text (completions, customer messages) the way a judge would, before it reaches the judge.

A judge model reads look-alikes as the real thing: `</rеsponse>` with a Cyrillic `е`, `VER\u200bDICT` with a
zero-width space, `< /res\u034fponse >` with a combining grapheme joiner, `**VERDICT**:` in markdown bold. Filters
that compare code points miss all of them. Everything here therefore works on a **skeleton** of the text:

1. invisible characters removed: every format character (Unicode category Cf: U+200B-U+200F, U+2060-U+2064,
   U+FEFF, U+00AD, tag characters, ...) plus the default-ignorable marks and fillers that are not Cf (U+034F,
   variation selectors, Hangul fillers, Mongolian selectors);
2. NFKD, then combining marks dropped (full-width `＜` -> `<`, `é` -> `e`);
3. confusables mapped to ASCII, one character to one: Cyrillic and Greek letters that look like Latin ones,
   look-alike angle brackets, slashes and colons.

Functions: `skeleton` (detection and parsing; fast on 200,000 characters: all C-level passes), `scan_injection` /
`looks_like_injection` (the whole text, no window, with a timeout), `neutralize` (rewrite our tags and the verdict
marker wherever their skeleton appears, keeping the rest of the text as written), `clip` (the cap on what is sent
to the judge) and `count_words` (words with at least one letter or digit).

Not here: which completions are screened or what a flag is worth (`rlft.rewards.judge`), templates (`prompts`).
"""

from __future__ import annotations

import unicodedata

import regex

# Rendered as nothing, so they split keywords past filters. Cf covers the zero-width and bidi controls; the rest
# are default-ignorable characters of other categories (combining grapheme joiner, variation selectors, fillers).
_INVISIBLE = (r"\p{Cf}\u034f\u115f\u1160\u17b4\u17b5\u180b-\u180f\u3164\ufe00-\ufe0f\uffa0"
              r"\U000e0100-\U000e01ef")
INVISIBLE = regex.compile(f"[{_INVISIBLE}]")
_INVISIBLE_OR_MARK = regex.compile(f"[{_INVISIBLE}\\p{{M}}]+")

# One character -> one ASCII character (so a skeleton of already-NFKC text keeps its length where only these
# occur). Cyrillic and Greek letters drawn like Latin ones, plus a few Latin and Armenian look-alikes.
_LETTERS = {
    "A": "АΑ", "B": "ВΒ", "C": "СϹ", "E": "ЕΕ", "H": "НΗ", "I": "ІӀΙ", "J": "Ј", "K": "КΚ", "M": "МΜ", "N": "Ν",
    "O": "ОΟ", "P": "РΡ", "S": "Ѕ", "T": "ТΤ", "X": "ХΧ", "Y": "УҮΥ", "Z": "Ζ", "Q": "Ԛ", "W": "Ԝ",
    "a": "аα", "b": "Ь", "c": "сϲ", "d": "ԁ", "e": "еє", "h": "һհ", "i": "іιı", "j": "јϳȷ", "k": "кκ", "l": "ӏ",
    "m": "м", "n": "п", "o": "оοօ", "p": "рρ", "q": "ԛ", "s": "ѕ", "t": "т", "u": "υս", "v": "ν", "w": "ԝω",
    "x": "хχ", "y": "уүγ",
}
_PUNCT = {"<": "‹〈〈⟨❮˂ᐸ", ">": "›〉〉⟩❯˃ᐳ", "/": "∕⁄╱⧸", ":": "ː꞉∶׃", "=": "꓿"}
CONFUSABLES = {ord(c): ascii_ for ascii_, chars in (_LETTERS | _PUNCT).items() for c in chars}

# Our delimiters; `prompts` wraps untrusted text in exactly these tag names.
TAG_NAMES = ("policy", "customer_message", "response", "reference", "response_a", "response_b")
_TAG_RE = regex.compile(r"<(\s*/?\s*(?:" + "|".join(sorted(TAG_NAMES, key=len, reverse=True)) + r")(?![a-z_]))",
                        regex.IGNORECASE)
# Markdown emphasis and spacing a model may put between the marker and its colon: `**VERDICT**:`, `VERDICT :`.
EMPHASIS = r"[\s*_`~#>|\\]*"

# Text in a graded completion that addresses the grader rather than the customer. A customer-support reply has no
# reason to contain any of these; the judge reward scores such completions `injection_value` without asking.
INJECTION_PATTERNS = [
    r"\bignore\b.{0,40}\b(rubric|instructions?|guidelines?|polic(y|ies)|criteria)\b",
    r"\bas\s+(the|a|an|your)\s+(grader|judge|evaluator|reviewer)\b",
    r"\b(you|grader|judge)\s+(must|should|will|have\s+to)\s+(output|answer|respond|return|give|say|rate|score)\b",
    r"(?<![a-z0-9])(verdict|score|grade|rating)" + EMPHASIS + r"[:=]",  # `_` is emphasis here, not a letter
    r"\bend\s+of\s+(the\s+)?(data|response|input|conversation|transcript|answer)\b",
    r"\b(any|every|this)\s+(answer|response|reply)\s+(scores?|is\s+rated|gets|deserves|must\s+get)\b",
    r"\b(new|updated|revised)\s+(rubric|instructions|grading)\b",
    r"<\s*/?\s*(response|policy|customer_message|reference|response_[ab]|system|rubric|instructions?)\b",
]
_INJECTION_RE = regex.compile("|".join(f"(?:{p})" for p in INJECTION_PATTERNS), regex.IGNORECASE | regex.DOTALL)
_ALNUM = regex.compile(r"[\p{L}\p{N}]")
DEFAULT_MAX_CHARS = 4000  # of each untrusted field sent to a judge (`clip`)


def strip_invisible(text: str) -> str:
    """NFKC-normalise and drop invisible characters (so `VER\\u200bDICT` and full-width `＜` read as plain).

    This is the form the judge is sent; unlike `skeleton` it keeps accents and non-Latin letters.
    """
    return INVISIBLE.sub("", unicodedata.normalize("NFKC", INVISIBLE.sub("", text)))


def skeleton(text: str) -> str:
    """What a reader sees: invisibles dropped, NFKD without combining marks, confusables as ASCII."""
    if text.isascii():  # nothing to fold: no invisible characters, marks or look-alikes in ASCII
        return text
    return _INVISIBLE_OR_MARK.sub("", unicodedata.normalize("NFKD", text)).translate(CONFUSABLES)


def scan_injection(text: str, timeout_s: float = 0.5) -> bool | None:
    """Whether the skeleton of the **whole** text contains grader-directed phrasing; None when the scan timed out."""
    try:
        return _INJECTION_RE.search(skeleton(text), timeout=timeout_s) is not None
    except TimeoutError:
        return None


def looks_like_injection(text: str, timeout_s: float = 0.5) -> bool:
    """`scan_injection`, with a timed-out scan counted as suspicious (pathological input) rather than clean."""
    return scan_injection(text, timeout_s) is not False


def count_words(text: str, limit: int | None = None) -> int:
    """Whitespace-separated words holding a letter or digit (`:` and `.` are not words); stops past `limit`."""
    n = 0
    for word in text.split():
        if _ALNUM.search(word):
            n += 1
            if limit is not None and n > limit:
                break
    return n


def clip(text: str, max_chars: int | None) -> tuple[str, bool]:
    """(text cut to `max_chars` with a note saying how much was left out, whether it was cut)."""
    if max_chars is None or len(text) <= max_chars:
        return text, False
    return f"{text[:max_chars]}\n[... {len(text) - max_chars} more characters not shown]", True


def skeleton_with_index(text: str) -> tuple[str, list[int]]:
    """`skeleton(text)` char by char, and for each skeleton character the index of the text character it came from."""
    if text.isascii():
        return text, list(range(len(text)))
    out, index, memo = [], [], {}
    for i, c in enumerate(text):
        folded = memo.get(c)
        if folded is None:
            folded = memo[c] = skeleton(c) if not c.isascii() else c
        out.append(folded)
        index.extend([i] * len(folded))
    return "".join(out), index


def neutralize(text: str, marker: str = "VERDICT") -> str:
    """Make untrusted text unable to close our tags or write a verdict line the parser would read.

    Matching runs on the skeleton, so look-alike and split spellings are caught; only the matched spans are
    rewritten (to plain ASCII), the rest keeps its own letters. A tag opener becomes `[tag` (`</response>` ->
    `[/response>`: still legible, but no delimiter, and no look-alike of one: `‹` would read as `<`) and `MARKER:`
    in any emphasis becomes `MARKER (quoted):`, which the verdict parser (same skeleton, see `parsing`) does not
    accept.
    """
    text = strip_invisible(text)
    # (?<![a-z0-9]) rather than \b: `__VERDICT__:` is emphasis too; this is a superset of the parser's pattern
    marker_re = regex.compile(r"(?<![a-z0-9])" + regex.escape(marker) + EMPHASIS + r"[:=]", regex.IGNORECASE)
    folded, index = skeleton_with_index(text)
    edits = [(m.start(), m.end(), "[" + m.group(1)) for m in _TAG_RE.finditer(folded)]
    edits += [(m.start(), m.end(), f"{marker} (quoted):") for m in marker_re.finditer(folded)]
    if not edits:
        return text
    pieces, pos = [], 0
    for start, end, replacement in sorted(edits):
        a, b = index[start], index[end - 1] + 1
        if a < pos:  # overlapping matches cannot happen with these patterns; keep the first if they ever do
            continue
        pieces += [text[pos:a], replacement]
        pos = b
    pieces.append(text[pos:])
    return "".join(pieces)
