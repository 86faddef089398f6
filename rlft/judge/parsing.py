"""Reading a verdict out of a judge's reply, strictly.

Rules (they are what makes the judge hard to fool, see docs/judge.md#threat-model):

* Only the **last** ``VERDICT: …`` line of the reply counts. A verdict the judge quoted earlier (from the graded
  text, or while thinking aloud) is never used, and an off-menu last verdict is a `parse_error`: we do not fall
  back to an earlier, valid-looking one.
* The value must be exactly one allowed label (case-insensitive, after trimming quotes, markdown and a trailing
  period) or, for scores, one number inside the scale. Anything else is a `parse_error` and the sample abstains.
* Matching runs on the text's skeleton (`untrusted.skeleton`: invisible characters dropped, NFKD without marks,
  Cyrillic/Greek look-alikes as ASCII), the same one the neutraliser uses on graded text: whatever this parser would
  read as a verdict inside a completion has already been rewritten to ``VERDICT (quoted):``.
* A reply that is nothing but one allowed label (small judges often answer just ``Accurate``) is accepted.

Not here: talking to the judge (`client`), what a parse error does to the reward (`rlft.rewards.judge`).
"""

from __future__ import annotations

from dataclasses import dataclass

import regex

from rlft.judge.untrusted import skeleton, skeleton_with_index, strip_invisible

OK, PARSE_ERROR = "ok", "parse_error"
_TRIM = " \t*_`\"'“”‘’[](){}<>.!"
_NUMBER = regex.compile(r"^([+-]?\d+(?:\.\d+)?)(?:\s*/\s*(\d+(?:\.\d+)?))?$")


@dataclass(frozen=True)
class Parsed:
    """`value` in [0, 1] (binary: the label's value; score: mapped; pairwise: 1 = A wins) or None on error."""

    status: str
    label: str | None = None
    value: float | None = None
    rationale: str = ""


def last_verdict(reply: str, marker: str = "VERDICT") -> tuple[str | None, str]:
    """(raw value of the last `MARKER: value` line or None, text before it as rationale)."""
    text = strip_invisible(reply)
    folded, index = skeleton_with_index(text)
    # Anywhere in the reply, at a line start or mid-sentence ("... so VERDICT: X"), in markdown emphasis
    # ("**VERDICT**: X"); only the last one counts. The neutraliser's pattern is a superset of this one.
    matches = list(regex.finditer(r"(?i)\b" + regex.escape(marker) + r"[*_`~ \t]*[:=][ \t]*([^\n]*)", folded))
    if not matches:
        return None, text.strip()
    last = matches[-1]
    return last.group(1), text[: index[last.start()]].strip()


def _clean(value: str) -> str:
    return " ".join(value.strip().strip(_TRIM).split()).lower()


class VerdictParser:
    """Parses one mode's replies: `labels` maps each allowed label to its value in [0, 1]; or a numeric scale."""

    def __init__(self, labels: dict[str, float] | None = None, scale: tuple[float, float] | None = None,
                 marker: str = "VERDICT", integer_scale: bool = True):
        if (labels is None) == (scale is None):
            raise ValueError("give either labels or scale")
        self.labels = {_clean(skeleton(k)): (k, float(v)) for k, v in (labels or {}).items()}
        self.scale = scale
        self.marker = marker
        self.integer_scale = integer_scale

    def parse(self, reply: str) -> Parsed:
        raw, rationale = last_verdict(reply, self.marker)
        if raw is None:
            raw = skeleton(reply)  # a bare answer; a multi-line reply will not clean to a label or number
            rationale = ""
        return self._judge_value(raw, rationale)

    def _judge_value(self, raw: str, rationale: str) -> Parsed:
        cleaned = _clean(raw)
        if self.scale is None:
            hit = self.labels.get(cleaned)
            if hit is None:
                return Parsed(PARSE_ERROR, rationale=rationale)
            return Parsed(OK, hit[0], hit[1], rationale)
        m = _NUMBER.match(cleaned)
        if not m:
            return Parsed(PARSE_ERROR, rationale=rationale)
        lo, hi = self.scale
        number = float(m.group(1))
        if m.group(2) is not None and float(m.group(2)) != hi:  # "7/10" is fine on a 1-10 scale, "7/20" is not
            return Parsed(PARSE_ERROR, rationale=rationale)
        if not lo <= number <= hi or (self.integer_scale and not number.is_integer()):
            return Parsed(PARSE_ERROR, rationale=rationale)
        label = str(int(number)) if number.is_integer() else str(number)
        return Parsed(OK, label, (number - lo) / (hi - lo), rationale)
