"""Rubric reward: per-intent checkable requirements read from the judge's policy file, scored 0..1, deterministic.

Built-in name `rubric`. The cheap policy check for tests and CPU runs, and the judge's pre-filter in production.
The requirements live in a `rubric:` section of the SAME policy file the judge reads (the judge ignores that
section), so one file drives both. Guide: docs/rewards.md#rubric. Example::

    # rewards/policies/demo_policies.yaml (excerpt)
    cancel_order: >-
      Confirm which order ... tell them about the $4.99 cancellation fee ...      # the judge reads this text
    rubric:
      cancel_order:
        must_mention:
          fee: ["$4.99", "4.99 dollars"]                        # id: phrases (any one is enough)
        must_ask_for:
          order_number: {any: ["order number", "order id"], unless_prompt: '#\\d{3,}'}
        must_not:
          waived: {regex: '\\bno\\s+(?:cancellation\\s+)?fee'}  # a bounded regular expression

    >>> r = RubricReward(policies={"rubric": {"cancel_order": {"must_mention": {"fee": ["$4.99"]},
    ...                                                         "must_ask_for": {"order": ["order number"]}}}})
    >>> r(prompts=["cancel it"] * 3, intent=["cancel_order", "cancel_order", "track_order"],
    ...   completions=["<intent>cancel_order</intent> There is a $4.99 fee. What is your order number?",
    ...                "<intent>cancel_order</intent> Done, your order is cancelled.", "Where is it?"])
    [1.0, 0.0, None]

What is checked, per completion:

1. **The reply** is the text after the last `</intent>` when there is one (the support agent writes
   `<intent>label</intent> reply`), otherwise the whole completion. Zero-width characters are removed, the text
   NFKC-normalised and curly quotes straightened first, so a keyword cannot be split or disguised past the check.
2. **The intent** whose rubric applies is the row's ground-truth column (`label_column`, default `intent`). Ground
   truth is the default because the rubric grades policy for the customer's REAL intent: a wrong `<intent>` cannot
   earn policy credit by following the wrong policy. `use_predicted_intent: true` uses the completion's own tag
   (for "does the reply match the head it wrote"): a missing or malformed tag, or one outside `labels`, scores 0.
3. **No rubric for that intent** (and no `default:` rubric) -> None: the row abstains, it never scores 0.
4. **Requirements.** `must_mention`: a phrase or pattern appears in the reply. `must_ask_for`: it appears in a
   question or request sentence (one ending in `?` or holding a cue such as "please", "could you", "what is",
   "let me know"; `ask_cues` overrides the list). `must_not`: a violation when it appears anywhere, negated or not
   (write the promise itself, e.g. "refund you immediately", or exclude "never …" with a lookbehind).
   `unless_prompt` (a regex on the customer's last message) makes a requirement not applicable to that row,
   e.g. "ask for the order number" when the customer already gave one.
5. **Score** = fraction of the applicable must_mention + must_ask_for requirements met (1.0 when none applies).
   A `must_not` violation zeroes it (`must_not_mode: zero`, default) or subtracts `must_not_penalty` per
   violation, floored at 0 (`must_not_mode: subtract`).
6. **Anti-hacking gates** (score 0, checked before 5): more than `max_words` words (default 80; a reply that
   lists every keyword of every intent is long), fewer than `min_words` (default 0 = off), or a keyword list
   ("stuffed"): matched phrases cover more than `max_match_share` (default 0.6) of the reply's non-space
   characters, or under `min_function_word_share` (default 0.15) of its words are English function words ("the",
   "you", "is", …; every demo reply has >= 0.30, "$4.99 cancellation fee, order number?" has 0; set null for
   other languages). An echo ("copied"): the reply repeats, verbatim for >= `copy_min_words` (default 6) words,
   a run of the prompt (any message: above all the policy shown as context) that holds one of `echo_cues` — the
   policy's words to the AGENT ("the customer", "ask for", "explain that", "mention the", "never ask", ...; null
   turns the check off). Measured: GRPO on the support agent learned to paste the policy's instructions ("Ask for
   the order number and which payment method was used; ... If the customer was charged twice, say ...") as its
   reply, which meets every requirement; the 35 passing tuned replies of that run are all echoes, while a reply
   that restates the policy's facts ("We accept credit and debit cards, PayPal and gift cards. Cash on delivery is
   not accepted.") is not one (docs/support_agent.md#echo). A regular expression that runs past `timeout_s` (the
   whole completion's budget, input clipped to `max_chars`) scores 0 as well. A label leak (`forbid_labels:
   true`): the reply shows the customer one of the data's labels that is an identifier rather than a word (it holds
   `_`, e.g. "delivery_period", "get_refunds"): measured, the Bitext agent's replies began "delivery_period takes 3 to 5
   business days" or "get_refunds go to the original payment method" on up to 28 of 270 held-out rows, and passed
   (docs/support_agent.md#label-leak). Off by default (the figures measured before it stay comparable).

Phrases match case-insensitively, on word boundaries, with any whitespace between words and an optional plural
`s`/`es` (`fee` finds "fees", not "feedback"). Patterns are compiled with the `regex` module, at most
`max_pattern_chars` long, matched case-insensitively under the timeout. The policy file is validated when the
reward loads; each mistake is a one-line `RubricError` naming the file, the intent and the key.

Logged through TRL's `log_metric`: `rubric/mean`, `rubric/pass_rate` (share of scored rows at 1.0: the
policy-following rate), `rubric/abstain_rate`, `rubric/<gate>_rate` for violation / too_long / too_short /
stuffed / timeout / no_intent, and `rubric/<intent>/<requirement id>` (pass rate among rows where it applied;
for must_not, the share without a violation). `log_extra` adds a `rubric` column: `ok`, `failed: id, id` or
the gate that fired.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import regex
import yaml

from rlft.scoring.echo import DEFAULT_ECHO_CUES, copied_runs
from rlft.errors import RewardError, did_you_mean
from rlft.judge.policies import DEFAULT_KEY, RUBRIC_KEY, SHIPPED_POLICY_FILES, normalize_key, shipped_policy_path
from rlft.judge.prompt_templates import conversation_text, prompt_text
from rlft.judge.untrusted import strip_invisible
from rlft.scoring.protocol import BaseReward, completion_text
from rlft.rewards.intent import IntentParser

logger = logging.getLogger("rlft.rubric")
KINDS = ("must_mention", "must_ask_for", "must_not")
POSITIVE = ("must_mention", "must_ask_for")
ITEM_KEYS = ("any", "regex", "unless_prompt")
GATES = ("violation", "too_long", "too_short", "copied", "stuffed", "label_leak", "timeout", "no_intent")
MUST_NOT_MODES = ("zero", "subtract")
CLOSE_TAG = "</intent>"
DEFAULT_ASK_CUES = ("please", "could you", "can you", "would you", "will you", "may i", "may we", "let me know",
                    "let us know", "tell me", "tell us", "i need", "we need", "i'll need", "we'll need", "need your",
                    "what is", "what's", "which", "provide", "share", "send me", "send us")
_REQ_ID = regex.compile(r"[a-z0-9_]+")
# Sentence ends: terminal punctuation followed by whitespace or the end, or a newline ("$4.99" does not end one).
_SENTENCE_END = regex.compile(r"[.!?]+(?=\s|$)|\n")
# English function words: a real reply is a sentence and holds some (every demo reply: >= 30 % of its words);
# a keyword list ("$4.99 cancellation fee, order number?") holds none.
FUNCTION_WORDS = frozenset(
    "a an the i i'm i'll we we'll we're you you'll you're your our it it's its is are was be been will can could "
    "would please to of for in on at by with and or if that this there what what's which how do does have has me "
    "us my so as from after before then not any all".split())
_QUOTES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"', "\u00a0": " "})


class RubricError(RewardError):
    """The rubric section of a policy file (or the reward's params) is malformed."""


def phrase_pattern(phrase: str) -> str:
    """A literal phrase as a regex: word boundaries, any whitespace between words, optional plural s/es."""
    words = phrase.split()
    body = r"\s+".join(regex.escape(w) for w in words)
    if regex.match(r"\w", words[0]):
        body = r"(?<!\w)" + body
    if regex.search(r"\w$", words[-1]):
        body += (r"(?:e?s)?" if regex.search(r"[^\W\d_]$", words[-1]) else "") + r"(?!\w)"
    return body


@dataclass(frozen=True)
class Requirement:
    """One checkable requirement: any of `patterns` counts; `unless_prompt` matching the customer skips it."""

    id: str
    kind: str
    patterns: tuple[regex.Pattern, ...]
    unless_prompt: regex.Pattern | None = None


@dataclass
class RubricResult:
    """What the rubric found for one completion. `checks[id]`: True passed, False failed, None not applicable."""

    score: float | None
    outcome: str  # ok | failed | abstain | one of GATES
    intent: str | None = None
    checks: dict[str, bool | None] = field(default_factory=dict)
    words: int = 0

    @property
    def passed(self) -> bool:
        return self.score == 1.0


@dataclass
class Rubric:
    """Per-intent requirements; `for_key(intent)` -> its requirements, the `default` ones, or None."""

    intents: dict[str, tuple[Requirement, ...]]
    default: tuple[Requirement, ...] | None = None
    source: str = "params.policies"

    def for_key(self, key: object) -> tuple[Requirement, ...] | None:
        if key is None:
            return self.default
        return self.intents.get(normalize_key(str(key)), self.default)


# ---- loading and validating the policy file ----------------------------------------------------------------------
def _read_policy_data(path: str | Path) -> dict:
    p = Path(path).expanduser()
    if not p.is_file():
        raise RubricError(f"rubric: policies file '{path}' does not exist")
    text = p.read_text(encoding="utf-8")
    suffix = p.suffix.lower()
    if suffix in (".md", ".markdown"):
        sections = regex.split(r"(?m)^##[ \t]+(.+?)[ \t]*$", text)
        bodies = [sections[i + 1] for i in range(1, len(sections) - 1, 2) if normalize_key(sections[i]) == RUBRIC_KEY]
        if not bodies:
            return {}
        text = regex.sub(r"(?m)^```[a-z]*[ \t]*$", "", bodies[0])  # the YAML may sit in a fenced block
        where = f"policies file '{path}' (## rubric)"
    elif suffix in (".yaml", ".yml"):
        where = f"policies file '{path}'"
    else:
        raise RubricError(f"rubric: policies file '{path}' must be .yaml, .yml or .md")
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        raise RubricError(f"rubric: {where} is not valid YAML{at}: {getattr(exc, 'problem', exc)}") from None
    if suffix in (".md", ".markdown"):
        return {RUBRIC_KEY: data}
    if not isinstance(data, dict):
        raise RubricError(f"rubric: {where} must be a mapping with a 'rubric:' section")
    return data


def _compile(pattern: str, where: str, max_chars: int) -> regex.Pattern:
    if not isinstance(pattern, str) or not pattern.strip():
        raise RubricError(f"{where}: expected a non-empty regular expression string, got {pattern!r}")
    if len(pattern) > max_chars:
        raise RubricError(f"{where}: pattern is {len(pattern)} characters; at most {max_chars} (keep it bounded)")
    try:
        return regex.compile(pattern, regex.IGNORECASE)
    except regex.error as exc:
        raise RubricError(f"{where}: invalid regular expression {pattern!r}: {exc}") from None


def _parse_item(spec: Any, kind: str, rid: str, where: str, max_chars: int) -> Requirement:
    if isinstance(spec, str):
        spec = {"any": [spec]}
    elif isinstance(spec, list):
        spec = {"any": spec}
    if not isinstance(spec, dict):
        raise RubricError(f"{where}: expected a phrase, a list of phrases or a mapping with any / regex / "
                          f"unless_prompt, got {type(spec).__name__}")
    for key in spec:
        if key not in ITEM_KEYS:
            raise RubricError(f"{where}: unknown key '{key}'{did_you_mean(str(key), ITEM_KEYS)}; allowed: "
                              f"{', '.join(ITEM_KEYS)}")
    phrases = spec.get("any") or []
    phrases = [phrases] if isinstance(phrases, str) else phrases
    regexes = spec.get("regex") or []
    regexes = [regexes] if isinstance(regexes, str) else regexes
    if not isinstance(phrases, list) or not isinstance(regexes, list):
        raise RubricError(f"{where}: 'any' and 'regex' take a string or a list of strings")
    if not phrases and not regexes:
        raise RubricError(f"{where}: give at least one phrase ('any') or pattern ('regex')")
    for p in phrases:
        if not isinstance(p, str) or not p.strip():
            raise RubricError(f"{where}.any: phrases must be non-empty strings, got {p!r}")
        if len(p) > max_chars:
            raise RubricError(f"{where}.any: phrase {p[:40]!r}… is {len(p)} characters; at most {max_chars}")
    patterns = []
    if phrases:  # one alternation for all literal phrases; each user regex alone (its group numbers stay its own)
        patterns.append(regex.compile("|".join(f"(?:{phrase_pattern(p)})" for p in phrases), regex.IGNORECASE))
    patterns += [_compile(r, f"{where}.regex", max_chars) for r in regexes]
    unless = spec.get("unless_prompt")
    unless_re = _compile(unless, f"{where}.unless_prompt", max_chars) if unless is not None else None
    return Requirement(rid, kind, tuple(patterns), unless_re)


def _parse_intent(entry: Any, where: str, max_chars: int) -> tuple[Requirement, ...]:
    if not isinstance(entry, dict) or not entry:
        raise RubricError(f"{where}: expected a mapping with {', '.join(KINDS)}, got {entry!r}")
    out: list[Requirement] = []
    seen: set[str] = set()
    for kind, items in entry.items():
        if kind not in KINDS:
            raise RubricError(f"{where}: unknown key '{kind}'{did_you_mean(str(kind), KINDS)}; allowed: "
                              f"{', '.join(KINDS)}")
        if not isinstance(items, dict) or not items:
            raise RubricError(f"{where}.{kind}: expected a mapping of requirement ids to phrases, e.g. "
                              f"fee: ['$4.99', 'cancellation fee']")
        for rid, spec in items.items():
            rid = str(rid)
            if not _REQ_ID.fullmatch(rid):
                raise RubricError(f"{where}.{kind}: requirement id '{rid}' must be lower-case letters, digits and _")
            if rid in seen:
                raise RubricError(f"{where}.{kind}.{rid}: requirement id used twice in this intent")
            seen.add(rid)
            out.append(_parse_item(spec, kind, rid, f"{where}.{kind}.{rid}", max_chars))
    return tuple(out)


def load_rubric(policies: str | Path | dict | None, max_pattern_chars: int = 300) -> Rubric:
    """The `rubric:` section of a policy file (`demo`, a .yaml/.md path, or the file's content as a mapping)."""
    if policies is None:
        raise RubricError("rubric: give params.policies (a YAML/Markdown policy file with a 'rubric:' section, or "
                          "'demo')")
    if isinstance(policies, dict):
        data, source = policies, "params.policies"
    elif str(policies) in SHIPPED_POLICY_FILES:
        data, source = _read_policy_data(shipped_policy_path(str(policies))), str(policies)
    else:
        data, source = _read_policy_data(policies), f"'{policies}'"
    section = data.get(RUBRIC_KEY)
    if section is None:
        raise RubricError(f"rubric: {source} has no 'rubric:' section mapping intents to must_mention / "
                          f"must_ask_for / must_not (see docs/rewards.md#rubric)")
    if not isinstance(section, dict) or not section:
        raise RubricError(f"rubric: {source}: 'rubric' must map each intent to its requirements")
    intents: dict[str, tuple[Requirement, ...]] = {}
    for key, entry in section.items():
        intent = normalize_key(key)
        if intent in intents:
            raise RubricError(f"rubric: {source}: rubric.{key}: intent given twice (after normalising to '{intent}')")
        intents[intent] = _parse_intent(entry, f"rubric: {source}: rubric.{key}", max_pattern_chars)
    default = intents.pop(DEFAULT_KEY, None)
    return Rubric(intents, default, source)


# ---- scoring ------------------------------------------------------------------------------------------------------
def reply_text(completion: Any) -> str:
    """The reply: the text after the last `</intent>`, or the whole completion when there is no closing tag."""
    text = completion_text(completion)
    cut = text.rfind(CLOSE_TAG)
    return text[cut + len(CLOSE_TAG):] if cut >= 0 else text


def _normalize(text: str) -> str:
    return strip_invisible(text).translate(_QUOTES)


def _sentence_spans(text: str) -> list[tuple[int, int]]:
    spans, start = [], 0
    for m in _SENTENCE_END.finditer(text):
        spans.append((start, m.end()))
        start = m.end()
    if start < len(text):
        spans.append((start, len(text)))
    return spans


def _covered_chars(text: str, spans: list[tuple[int, int]]) -> int:
    covered, end = 0, 0
    for s, e in sorted(spans):
        s = max(s, end)
        if e > s:
            covered += sum(not c.isspace() for c in text[s:e])
            end = e
    return covered


class RubricReward(BaseReward):
    """Deterministic policy check: per-intent must_mention / must_ask_for / must_not (see module docstring)."""

    name = "rubric"
    eval_metrics = ("policy_following", "system_accuracy")  # a row passes policy with every requirement met (1.0)
    wants_labels = True  # rlft fills `labels` from the data; used for use_predicted_intent and a coverage warning
    metrics = ("rubric/abstain_rate", "rubric/mean", "rubric/pass_rate", *(f"rubric/{g}_rate" for g in GATES),
               "rubric/<intent>/<requirement>")

    def __init__(self, policies: str | dict | None = None, label_column: str = "intent",
                 use_predicted_intent: bool = False, labels: Sequence[str] | None = None, max_words: int | None = 80,
                 min_words: int = 0, max_match_share: float | None = 0.6,
                 min_function_word_share: float | None = 0.15, echo_cues: Sequence[str] | None = DEFAULT_ECHO_CUES,
                 copy_min_words: int = 6, must_not_mode: str = "zero",
                 must_not_penalty: float = 0.5, ask_cues: Sequence[str] | None = None, forbid_labels: bool = False,
                 timeout_s: float = 0.5,
                 max_chars: int = 4000, max_pattern_chars: int = 300, log_per_requirement: bool = True):
        if must_not_mode not in MUST_NOT_MODES:
            raise ValueError(f"must_not_mode must be 'zero' or 'subtract', got {must_not_mode!r}")
        if max_words is not None and max_words < 1:
            raise ValueError("max_words must be >= 1 (or null for no limit)")
        if min_words < 0 or (max_words is not None and min_words > max_words):
            raise ValueError("min_words must be between 0 and max_words")
        if max_match_share is not None and not 0.0 < max_match_share <= 1.0:
            raise ValueError("max_match_share must be in (0, 1] (or null to turn the keyword-list check off)")
        if min_function_word_share is not None and not 0.0 <= min_function_word_share < 1.0:
            raise ValueError("min_function_word_share must be in [0, 1) (or null to turn it off)")
        if echo_cues is not None and not all(isinstance(c, str) and c.strip() for c in echo_cues):
            raise ValueError("echo_cues must be a list of phrases (or null to turn the echo check off)")
        if copy_min_words < 3:
            raise ValueError("copy_min_words must be >= 3")
        if not 0.0 <= must_not_penalty <= 1.0:
            raise ValueError("must_not_penalty must be within [0, 1]")
        if not 0 < timeout_s <= 60 or max_chars < 1:
            raise ValueError("timeout_s must be in (0, 60] seconds and max_chars positive")
        self.rubric = load_rubric(policies, max_pattern_chars)
        self.label_column, self.use_predicted_intent = label_column, bool(use_predicted_intent)
        self.labels = {normalize_key(x) for x in labels} if labels else None
        if forbid_labels and not labels:
            raise ValueError("forbid_labels needs the data's labels (rlft passes them; give params.labels otherwise)")
        identifiers = sorted({str(x) for x in labels if "_" in str(x)}, key=len, reverse=True) if forbid_labels else []
        self.label_leak = (regex.compile("|".join(f"(?:{phrase_pattern(x)})" for x in identifiers), regex.IGNORECASE)
                           if identifiers else None)
        self.max_words, self.min_words, self.max_match_share = max_words, int(min_words), max_match_share
        self.min_function_word_share = min_function_word_share
        self.echo_cue = (regex.compile("|".join(f"(?:{phrase_pattern(c)})" for c in echo_cues), regex.IGNORECASE)
                         if echo_cues else None)
        self.copy_min_words = int(copy_min_words)
        self.must_not_mode, self.must_not_penalty = must_not_mode, float(must_not_penalty)
        cues = DEFAULT_ASK_CUES if ask_cues is None else tuple(ask_cues)
        if not cues or not all(isinstance(c, str) and c.strip() for c in cues):
            raise ValueError("ask_cues must be a non-empty list of phrases")
        self.ask_cue = regex.compile("|".join(f"(?:{phrase_pattern(c)})" for c in cues), regex.IGNORECASE)
        self.timeout_s, self.max_chars = float(timeout_s), int(max_chars)
        self.log_per_requirement = log_per_requirement
        self.parser = IntentParser() if self.use_predicted_intent else None
        self.columns = () if self.use_predicted_intent else (label_column,)
        if self.labels and self.rubric.default is None:
            uncovered = sorted(self.labels - set(self.rubric.intents))
            if uncovered:
                logger.warning("rubric: %d of %d intents have no rubric in %s; their rows abstain: %s",
                               len(uncovered), len(self.labels), self.rubric.source, ", ".join(uncovered))

    def _intent(self, completion: Any, truth: Any) -> tuple[str | None, bool]:
        """(intent, usable): ground truth, or the completion's own tag with use_predicted_intent."""
        if not self.use_predicted_intent:
            return (normalize_key(str(truth)) if truth is not None else None), True
        status, label = self.parser.parse(completion)
        if status != "ok" or (self.labels is not None and normalize_key(label) not in self.labels):
            return None, False
        return normalize_key(label), True

    def check(self, prompt: Any, completion: Any, truth: Any = None) -> RubricResult:
        """Score one completion; `truth` is the row's ground-truth intent (ignored with use_predicted_intent)."""
        intent, usable = self._intent(completion, truth)
        if not usable:
            return RubricResult(0.0, "no_intent")
        reqs = self.rubric.for_key(intent)
        if reqs is None:
            return RubricResult(None, "abstain", intent)
        full = reply_text(completion)
        words = len(full.split())
        reply = _normalize(full[: self.max_chars])
        customer = _normalize(conversation_text(prompt)[: self.max_chars])
        deadline = time.perf_counter() + self.timeout_s
        try:
            checks, spans, violations = self._run(reqs, reply, customer, deadline)
            leaked = self.label_leak is not None and bool(self.label_leak.search(
                reply, timeout=max(deadline - time.perf_counter(), 1e-6)))
        except TimeoutError:
            return RubricResult(0.0, "timeout", intent, {}, words)
        positive = [checks[r.id] for r in reqs if r.kind in POSITIVE and checks[r.id] is not None]
        frac = sum(positive) / len(positive) if positive else 1.0
        result = RubricResult(frac, "ok" if frac == 1.0 else "failed", intent, checks, words)
        if self.max_words is not None and words > self.max_words:
            result.score, result.outcome = 0.0, "too_long"
        elif words < self.min_words:
            result.score, result.outcome = 0.0, "too_short"
        elif self._copied(prompt, reply):
            result.score, result.outcome = 0.0, "copied"
        elif self._stuffed(reply, spans):
            result.score, result.outcome = 0.0, "stuffed"
        elif leaked:
            result.score, result.outcome = 0.0, "label_leak"
        elif violations:
            penalty = 1.0 if self.must_not_mode == "zero" else self.must_not_penalty * violations
            result.score, result.outcome = max(0.0, frac - penalty), "violation"
        return result

    def _copied(self, prompt: Any, reply: str) -> bool:
        """An echo: the reply repeats the prompt's instructions to the agent (a verbatim run holding an echo cue)."""
        if self.echo_cue is None:
            return False
        source = _normalize(prompt_text(prompt)[: 4 * self.max_chars])
        return any(self.echo_cue.search(run) for run in copied_runs(reply, source, self.copy_min_words))

    def _stuffed(self, reply: str, spans: list[tuple[int, int]]) -> bool:
        """A keyword list: matched phrases cover too much of the reply, or it has (almost) no function words."""
        nonspace = sum(not c.isspace() for c in reply)
        if self.max_match_share is not None and nonspace and _covered_chars(reply, spans) / nonspace > \
                self.max_match_share:
            return True
        if self.min_function_word_share is not None and spans:
            words = [regex.sub(r"^\W+|\W+$", "", w.lower()) for w in reply.split()]
            return sum(w in FUNCTION_WORDS for w in words) / max(len(words), 1) < self.min_function_word_share
        return False

    def _run(self, reqs: Sequence[Requirement], reply: str, customer: str,
             deadline: float) -> tuple[dict[str, bool | None], list[tuple[int, int]], int]:
        def left() -> float:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                raise TimeoutError("rubric time budget spent")
            return remaining

        checks: dict[str, bool | None] = {}
        spans: list[tuple[int, int]] = []
        violations = 0
        sentences = None
        for req in reqs:
            if req.unless_prompt is not None and req.unless_prompt.search(customer, timeout=left()):
                checks[req.id] = None
                continue
            matches = [m.span() for p in req.patterns for m in p.finditer(reply, timeout=left())]
            if req.kind == "must_not":
                checks[req.id] = not matches
                violations += bool(matches)
                continue
            spans += matches
            if req.kind == "must_ask_for" and matches:
                sentences = sentences if sentences is not None else _sentence_spans(reply)
                asked = False
                for s, e in sentences:
                    if any(s <= ms < e for ms, _ in matches):
                        sentence = reply[s:e]
                        if "?" in sentence or self.ask_cue.search(sentence, timeout=left()):
                            asked = True
                            break
                checks[req.id] = asked
            else:
                checks[req.id] = bool(matches)
        return checks, spans, violations

    def __call__(self, prompts: list, completions: list, log_metric: Callable | None = None,
                 log_extra: Callable | None = None, **kwargs: Any) -> list[float | None]:
        if self.use_predicted_intent:
            truths: Sequence[Any] = [None] * len(completions)
        else:
            truths = kwargs.get(self.label_column)
            if truths is None:
                raise ValueError(f"rubric reward needs the dataset column '{self.label_column}'")
        results = [self.check(p, c, t) for p, c, t in zip(prompts, completions, truths, strict=True)]
        if log_metric is not None:
            self._log(results, log_metric)
        if log_extra is not None:
            log_extra("rubric", [_describe(r) for r in results])
        return [r.score for r in results]

    def _log(self, results: list[RubricResult], log_metric: Callable) -> None:
        n = max(len(results), 1)
        scored = [r for r in results if r.score is not None]
        counts = Counter(r.outcome for r in results)
        log_metric("rubric/abstain_rate", counts["abstain"] / n)
        if scored:
            log_metric("rubric/mean", sum(r.score for r in scored) / len(scored))
            log_metric("rubric/pass_rate", sum(r.passed for r in scored) / len(scored))
        for gate in GATES:
            log_metric(f"rubric/{gate}_rate", counts[gate] / n)
        if self.log_per_requirement:
            per: dict[str, list[bool]] = defaultdict(list)
            for r in results:
                for rid, ok in r.checks.items():
                    if ok is not None:
                        per[f"rubric/{r.intent}/{rid}"].append(ok)
            for name, values in sorted(per.items()):
                log_metric(name, sum(values) / len(values))


def _describe(result: RubricResult) -> str:
    if result.outcome == "failed":
        return "failed: " + ", ".join(rid for rid, ok in result.checks.items() if ok is False)
    return result.outcome
