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
    handoff      exactly one tag, the hand-off label (only with `handoff`)     handoff.reward

Optional partial credit: a wrong or invalid label earns `partial_credit × (word overlap with the truth)`, e.g.
`track_refund` vs `get_refund` shares `refund`. Normalisation lower-cases, trims, and maps spaces/hyphens to `_`;
`aliases` maps other spellings to canonical labels. Matching uses the `regex` module with a timeout and clipped
input, so neither a hostile completion nor a user-supplied `pattern` can hang training.

Optional hand-off (abstain) answer, for an agent that should pass a message it cannot place to a human rather than
guess: `handoff: {label: handoff, reward: 0.5}` names a label of the allowed set (`data.labels`; no row needs to
carry it) whose answer earns `reward` on every row whose truth is another label, strictly between `wrong` and
`correct`. `pair_rewards` overrides the reward of single (truth, predicted) pairs, a cost matrix over confusable
pairs (or a hand-off cost per truth): a CSV file with columns `truth,predicted,reward`, or a mapping
`{truth: {predicted: reward}}`. With a hand-off the reward also declares the selective metrics (coverage,
selective accuracy, hand-off rate, expected reward and cost per row; `rlft.report.headline`), graded by
`decision_value`. Under `algorithm: label_pg` a graded hand-off changes the optimum: with `weighting: expected`
the exact objective answers only where the model's belief in its best label exceeds the hand-off reward
(docs/rewards.md#handoff).

Example::

    >>> r = IntentReward(labels=["cancel_order", "track_order"])
    >>> r(prompts=["p"] * 3, completions=["<intent>Cancel Order</intent>", "<intent>track_order</intent>", "hi"],
    ...   intent=["cancel_order"] * 3)
    [1.0, 0.0, -1.0]
    >>> h = IntentReward(labels=["cancel_order", "track_order", "handoff"],
    ...                  handoff={"label": "handoff", "reward": 0.5})
    >>> h(prompts=["p"] * 3, completions=["<intent>cancel_order</intent>", "<intent>handoff</intent>",
    ...   "<intent>track_order</intent>"], intent=["cancel_order"] * 3)
    [1.0, 0.5, 0.0]
"""

from __future__ import annotations

import csv
import math
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import regex

from rlft.scoring.protocol import BaseReward, completion_text  # noqa: F401 - completion_text re-exported

DEFAULT_PATTERN = r"<intent>(.*?)</intent>"
OPEN_TAG = "<intent>"
OUTCOMES = ("correct", "wrong", "invalid", "multiple", "malformed", "missing", "timeout", "handoff")
HANDOFF_KEYS = ("label", "reward")
SELECTIVE_METRICS = ("coverage", "selective_accuracy", "expected_reward")  # = rlft.report.headline's (no import)


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


@dataclass(frozen=True)
class Selective:
    """What evaluation needs to grade hand-off decisions: the `selective` declaration of a reward with a hand-off
    answer, read by `rlft.report.headline` (coverage, selective accuracy, expected reward and cost per row)."""

    label: str  # the hand-off answer, normalised as parsed labels are
    best: float  # the value of a right answer: a row's cost is best − value
    value: Callable[[str | None, str], float]  # a parsed decision (None: no label) against the gold label


def _number(value: Any, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{key}: expected a finite number, got {value!r}")
    return float(value)


def read_pair_rewards(source: str | Path | dict, key: str = "pair_rewards") -> dict[tuple[str, str], float]:
    """{(truth, predicted): reward} from a CSV file with columns truth,predicted,reward or a mapping
    {truth: {predicted: reward}}; labels as written (normalise them before use)."""
    if isinstance(source, dict):
        out = {}
        for truth, row in source.items():
            if not isinstance(row, dict):
                raise ValueError(f"{key}.{truth}: expected a mapping {{predicted: reward}}, got {row!r}")
            for predicted, value in row.items():
                out[(str(truth), str(predicted))] = _number(value, f"{key}.{truth}.{predicted}")
        return out
    if not isinstance(source, (str, Path)):
        raise ValueError(f"{key}: expected a CSV file (truth,predicted,reward) or a mapping {{truth: {{predicted: "
                         f"reward}}}}, got {type(source).__name__}")
    path = Path(source)
    if not path.is_file():
        raise ValueError(f"{key}: file '{source}' does not exist (a CSV with columns truth,predicted,reward)")
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in ("truth", "predicted", "reward") if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{key}: '{source}' has no column {', '.join(missing)} (expected truth,predicted,reward; "
                             f"found {', '.join(reader.fieldnames or []) or 'nothing'})")
        out = {}
        for line, row in enumerate(reader, start=2):
            try:
                value = float(row["reward"])
            except (TypeError, ValueError):
                raise ValueError(f"{key}: '{source}' line {line}: reward {row['reward']!r} is not a number") from None
            pair = (row["truth"] or "", row["predicted"] or "")
            if pair in out:
                raise ValueError(f"{key}: '{source}' line {line}: the pair {pair[0]} -> {pair[1]} appears twice")
            out[pair] = _number(value, f"{key}: '{source}' line {line}: reward")
        return out


def check_handoff(handoff: Any, labels: set[str] | None, wrong: float, correct: float,
                  aliases: dict[str, str] | None = None) -> tuple[str | None, float]:
    """(normalised label, reward) of a `handoff` param, checked with one-line errors naming the key; `labels`
    None skips the membership check (the data's label set is not known yet)."""
    if handoff is None:
        return None, 0.0
    if not isinstance(handoff, dict):
        raise ValueError(f"handoff: expected a mapping {{label: handoff, reward: 0.5}}, got {handoff!r}")
    unknown = [k for k in handoff if k not in HANDOFF_KEYS]
    if unknown:
        raise ValueError(f"handoff: unknown key '{unknown[0]}'; expected {', '.join(HANDOFF_KEYS)}")
    if not isinstance(handoff.get("label"), str) or not handoff["label"].strip():
        raise ValueError(f"handoff.label: expected the hand-off answer's label (e.g. handoff), got "
                         f"{handoff.get('label')!r}")
    label = normalize_label(handoff["label"], aliases)
    if labels is not None and label not in labels:
        raise ValueError(f"handoff.label: '{label}' is not in the allowed labels; add it to data.labels (no row "
                         f"needs to carry it)")
    if "reward" not in handoff:
        raise ValueError("handoff.reward: missing; the hand-off answer's reward, between wrong and correct (e.g. 0.5)")
    value = _number(handoff["reward"], "handoff.reward")
    if not wrong < value < correct:
        raise ValueError(f"handoff.reward: expected a value strictly between wrong ({wrong:g}) and correct "
                         f"({correct:g}), got {value:g} (at or above correct every row would be handed off; at or "
                         f"below wrong, none)")
    return label, value


class IntentReward(BaseReward):
    """RLEF reward comparing the completion's `<intent>` label with the `intent` column (see module docstring)."""

    name = "intent"
    wants_labels = True  # rlft fills `labels` from the data's label set when the recipe does not give them
    metrics = ("intent/accuracy", "intent/format_rate", "intent/accuracy/<label>", "intent/handoff_rate")
    eval_metrics = ("intent_accuracy", "format_rate", "macro_f1")  # its parser reads the labels evaluation scores

    def __init__(self, labels: Sequence[str] | None = None, correct: float = 1.0, wrong: float = 0.0,
                 invalid: float = -0.5, multiple: float = -1.0, malformed: float = -1.0, missing: float = -1.0,
                 timeout: float = -1.0, partial_credit: float = 0.0, label_column: str = "intent",
                 aliases: dict[str, str] | None = None, pattern: str = DEFAULT_PATTERN, timeout_s: float = 0.5,
                 max_chars: int = 4000, prefix: str = "", log_per_intent: bool = True,
                 handoff: dict[str, Any] | None = None, pair_rewards: str | Path | dict | None = None):
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
        self.handoff_label, self.handoff_reward = self._handoff(handoff)
        self.pairs = self._pairs(pair_rewards) if pair_rewards is not None else {}
        self.selective = (Selective(self.handoff_label, correct, self.decision_value)
                          if self.handoff_label is not None else None)
        if self.selective is not None:  # evaluation reports coverage & co. beside the label metrics
            self.eval_metrics = (*type(self).eval_metrics, *SELECTIVE_METRICS)

    @classmethod
    def validate_params(cls, params: dict[str, Any]) -> None:
        """`rlft validate`'s value checks, before any data is read: every check of `__init__`; without a `labels`
        param, whether the hand-off and pair labels are in the data's label set is checked when the rewards load
        (train, eval: exit 2 before the model loads)."""
        if "labels" in params:
            cls(**params)
            return
        rest = {k: v for k, v in params.items() if k != "handoff"}
        made = cls(**rest)  # everything but the hand-off (pairs: format and values)
        check_handoff(params.get("handoff"), None, made.values["wrong"], made.values["correct"], made.parser.aliases)

    def _handoff(self, handoff: dict[str, Any] | None) -> tuple[str | None, float]:
        if handoff is None:
            return None, 0.0
        if self.labels is None:
            raise ValueError("handoff.label: needs the allowed label set (data.labels or the reward's labels "
                             "param) to include it")
        return check_handoff(handoff, self.labels, self.values["wrong"], self.values["correct"], self.parser.aliases)

    def _pairs(self, source: str | Path | dict) -> dict[tuple[str, str], float]:
        out = {}
        for (truth, predicted), value in read_pair_rewards(source).items():
            pair = (normalize_label(truth, self.parser.aliases), normalize_label(predicted, self.parser.aliases))
            for name, label in zip(("truth", "predicted"), pair, strict=True):
                if self.labels is not None and label not in self.labels:
                    raise ValueError(f"pair_rewards: {name} '{label}' is not an allowed label")
            if pair[0] == pair[1]:
                raise ValueError(f"pair_rewards: {pair[0]} -> {pair[1]} is the right answer (its reward is "
                                 f"`correct`); list only wrong pairs or hand-offs")
            out[pair] = value
        return out

    def decision_value(self, predicted: str | None, truth: str) -> float:
        """The reward of a parsed label against the truth, as `__call__` grades it: correct, a pair reward, the
        hand-off reward, invalid, else wrong (with partial credit). No label (None) is graded as wrong, as every
        label metric counts it (the reward itself gives such a reply `missing` / `malformed`). Evaluation's
        expected reward and cost average this over rows."""
        if predicted is None:
            return self.values["wrong"]
        return self._value(self._outcome(predicted, truth), truth)

    def _outcome(self, label: str, truth: str) -> IntentParse:
        if label == normalize_label(truth, self.parser.aliases):
            return IntentParse("correct", label)
        if label == self.handoff_label:
            return IntentParse("handoff", label)
        if self.labels is not None and label not in self.labels:
            return IntentParse("invalid", label)
        return IntentParse("wrong", label)

    def classify(self, completion: Any, truth: str) -> IntentParse:
        status, label = self.parser.parse(completion)
        if status != "ok":
            return IntentParse(status, None)
        return self._outcome(label, truth)

    def _value(self, parsed: IntentParse, truth: str) -> float:
        if parsed.label is not None and parsed.outcome in ("wrong", "handoff"):
            pair = (normalize_label(truth, self.parser.aliases), parsed.label)
            if pair in self.pairs:
                return self.pairs[pair]
        value = self.handoff_reward if parsed.outcome == "handoff" else self.values[parsed.outcome]
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
            log_intent_metrics(parsed, truths, log_metric, self.log_per_intent, self.handoff_label is not None)
        return [self._value(p, t) for p, t in zip(parsed, truths, strict=True)]


def log_intent_metrics(parsed: list[IntentParse], truths: Sequence[str], log_metric: Callable,
                       per_intent: bool = True, handoff: bool = False) -> None:
    counts = Counter(p.outcome for p in parsed)
    n = max(len(parsed), 1)
    log_metric("intent/accuracy", counts["correct"] / n)
    log_metric("intent/format_rate", sum(counts[o] for o in ("correct", "wrong", "invalid", "handoff")) / n)
    if handoff:
        log_metric("intent/handoff_rate", counts["handoff"] / n)
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
