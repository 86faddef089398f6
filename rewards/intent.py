"""RLEF intent reward: parse `<intent>…</intent>` from a completion and compare it with the ground truth.

Outcome table (every value is a recipe parameter)::

    outcome      when                                                     default reward
    correct      exactly one tag, label == ground truth (after normalising)     1.0
    wrong        exactly one tag, label in the allowed set but not the truth    0.0
    invalid      exactly one tag, label outside the allowed set                -0.5
    multiple     two or more tags                                              -1.0
    malformed    an opening tag without a closing one, or an empty tag         -1.0
    missing      no tag at all                                                 -1.0
    timeout      the regex hit its time limit (hostile input)                  -1.0

Optional partial credit: a wrong or invalid label earns `partial_credit × (word overlap with the truth)`, e.g.
`track_refund` vs `get_refund` shares `refund`. Normalisation lower-cases, trims, and maps spaces/hyphens to `_`;
`aliases` maps other spellings to canonical labels. Matching uses the `regex` module with a timeout and clipped
input, so neither a hostile completion nor a user-supplied `pattern` can hang training.

Example::

    >>> r = IntentReward(labels=["cancel_order", "track_order"])
    >>> r(prompts=["p"] * 3, completions=["<intent>Cancel Order</intent>", "<intent>track_order</intent>", "hi"],
    ...   intent=["cancel_order"] * 3)
    [1.0, 0.0, -1.0]
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import regex

from rlft.reward_protocol import BaseReward, completion_text  # noqa: F401 - completion_text re-exported

DEFAULT_PATTERN = r"<intent>(.*?)</intent>"
OPEN_TAG = "<intent>"
OUTCOMES = ("correct", "wrong", "invalid", "multiple", "malformed", "missing", "timeout")


def normalize_label(text: str, aliases: dict[str, str] | None = None) -> str:
    label = regex.sub(r"[\s\-]+", "_", text.strip().lower()).strip("_")
    if aliases:
        label = aliases.get(label, label)
    return label


@dataclass(frozen=True)
class IntentParse:
    outcome: str  # correct | wrong | invalid | multiple | malformed | missing | timeout
    label: str | None


class IntentParser:
    """Extracts the single intent label of a completion with a time-limited regular expression."""

    def __init__(self, pattern: str = DEFAULT_PATTERN, timeout_s: float = 0.5, max_chars: int = 4000,
                 aliases: dict[str, str] | None = None, prefix: str = ""):
        try:
            self.pattern = regex.compile(pattern, regex.DOTALL)
        except regex.error as exc:
            raise ValueError(f"pattern {pattern!r} is not a valid regular expression: {exc}") from None
        if self.pattern.groups != 1:
            raise ValueError(f"pattern {pattern!r} must have exactly one capture group (the label)")
        self.timeout_s = timeout_s
        self.max_chars = max_chars
        self.aliases = {normalize_label(k): normalize_label(v) for k, v in (aliases or {}).items()}
        self.prefix = prefix

    def parse(self, completion: Any) -> tuple[str, str | None]:
        """('ok', label) | ('multiple'|'malformed'|'missing'|'timeout', None)."""
        text = (self.prefix + completion_text(completion))[: self.max_chars]
        try:
            found = self.pattern.findall(text, timeout=self.timeout_s)
        except TimeoutError:
            return "timeout", None
        if len(found) > 1:
            return "multiple", None
        if not found:
            return ("malformed" if OPEN_TAG in text else "missing"), None
        label = normalize_label(found[0], self.aliases)
        if not label:
            return "malformed", None
        return "ok", label

    def normalize(self, label: str) -> str:
        """A gold label as `parse` reads predicted ones (normalised, this parser's aliases applied)."""
        return normalize_label(label, self.aliases)


class IntentReward(BaseReward):
    """RLEF reward comparing the completion's `<intent>` label with the `intent` column (see module docstring)."""

    name = "intent"
    wants_labels = True  # rlft fills `labels` from the data's label set when the recipe does not give them
    metrics = ("intent/accuracy", "intent/format_rate", "intent/accuracy/<label>")
    eval_metrics = ("intent_accuracy", "format_rate", "macro_f1")  # its parser reads the labels evaluation scores

    def __init__(self, labels: Sequence[str] | None = None, correct: float = 1.0, wrong: float = 0.0,
                 invalid: float = -0.5, multiple: float = -1.0, malformed: float = -1.0, missing: float = -1.0,
                 timeout: float = -1.0, partial_credit: float = 0.0, label_column: str = "intent",
                 aliases: dict[str, str] | None = None, pattern: str = DEFAULT_PATTERN, timeout_s: float = 0.5,
                 max_chars: int = 4000, prefix: str = "", log_per_intent: bool = True):
        self.parser = IntentParser(pattern, timeout_s, max_chars, aliases, prefix)
        self.labels = {normalize_label(x, self.parser.aliases) for x in labels} if labels else None
        self.values = {"correct": correct, "wrong": wrong, "invalid": invalid, "multiple": multiple,
                       "malformed": malformed, "missing": missing, "timeout": timeout}
        if not 0.0 <= partial_credit <= 1.0:
            raise ValueError("partial_credit must be between 0 and 1")
        self.partial_credit = partial_credit
        self.label_column = label_column
        self.columns = (label_column,)
        self.log_per_intent = log_per_intent

    def classify(self, completion: Any, truth: str) -> IntentParse:
        status, label = self.parser.parse(completion)
        if status != "ok":
            return IntentParse(status, None)
        if label == normalize_label(truth, self.parser.aliases):
            return IntentParse("correct", label)
        if self.labels is not None and label not in self.labels:
            return IntentParse("invalid", label)
        return IntentParse("wrong", label)

    def _value(self, parsed: IntentParse, truth: str) -> float:
        value = self.values[parsed.outcome]
        if self.partial_credit and parsed.outcome in ("wrong", "invalid"):
            mine, gold = set(parsed.label.split("_")), set(normalize_label(truth).split("_"))
            value += self.partial_credit * len(mine & gold) / len(mine | gold)
        return value

    def __call__(self, prompts: list, completions: list, log_metric: Callable | None = None,
                 **kwargs: Any) -> list[float]:
        truths = kwargs.get(self.label_column)
        if truths is None:
            raise ValueError(f"intent reward needs the dataset column '{self.label_column}'")
        parsed = [self.classify(c, t) for c, t in zip(completions, truths, strict=True)]
        if log_metric is not None:
            log_intent_metrics(parsed, truths, log_metric, self.log_per_intent)
        return [self._value(p, t) for p, t in zip(parsed, truths, strict=True)]


def log_intent_metrics(parsed: list[IntentParse], truths: Sequence[str], log_metric: Callable,
                       per_intent: bool = True) -> None:
    counts = Counter(p.outcome for p in parsed)
    n = max(len(parsed), 1)
    log_metric("intent/accuracy", counts["correct"] / n)
    log_metric("intent/format_rate", sum(counts[o] for o in ("correct", "wrong", "invalid")) / n)
    if per_intent:
        hits: dict[str, list[int]] = defaultdict(list)
        for p, t in zip(parsed, truths, strict=True):
            hits[normalize_label(t)].append(p.outcome == "correct")
        for label, values in hits.items():
            log_metric(f"intent/accuracy/{label}", sum(values) / len(values))


class IntentFormatReward(BaseReward):
    """Format-only reward: `value` for exactly one well-formed tag with an allowed label, else 0.0."""

    name = "intent_format"
    wants_labels = True
    eval_metrics = ("format_rate",)  # listed first, its parser (no aliases) reads the labels evaluation scores

    def __init__(self, labels: Sequence[str] | None = None, value: float = 1.0, pattern: str = DEFAULT_PATTERN,
                 timeout_s: float = 0.5, max_chars: int = 4000, prefix: str = ""):
        self.parser = IntentParser(pattern, timeout_s, max_chars, None, prefix)
        self.labels = {normalize_label(x) for x in labels} if labels else None
        self.value = value

    def __call__(self, prompts: list, completions: list, **kwargs: Any) -> list[float]:
        out = []
        for c in completions:
            status, label = self.parser.parse(c)
            ok = status == "ok" and (self.labels is None or label in self.labels)
            out.append(self.value if ok else 0.0)
        return out
