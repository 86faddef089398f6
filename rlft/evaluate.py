"""Held-out evaluation with the same reward endpoints used in training.

Greedy generation on the evaluation split, then: intent accuracy, format rate, macro-F1 and per-intent accuracy
(when the data has a label column), and the mean of every recipe reward. `decoding=` (the recipe's `decoding:`
section) decodes exactly as training samples: prefill ids, label trie, free reply, stop suffix. The scored rows are
kept as a `rlft.report.summary.ModelRun` (`EvalReport.run`), so a training run can write the same report files as
`rlft eval` without generating or scoring again.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from rlft.reward_loader import LoadedReward
from rlft.rewards.intent import IntentParser, normalize_label
from rlft.scoring import score


@dataclass
class EvalReport:
    n: int
    metrics: dict[str, float]
    per_intent: dict[str, float] = field(default_factory=dict)
    samples: list[dict[str, Any]] = field(default_factory=list)
    run: Any = None  # rlft.report.summary.ModelRun: every row's completion, parsed label and reward values
    rows: Any = None  # the evaluated rows (datasets.Dataset)


def generate(model: Any, tokenizer: Any, prompts: Sequence[Any], max_new_tokens: int = 32, batch_size: int = 16,
             prefill: str = "", logits_processor_factory: Callable[[int], Any] | None = None) -> list[str]:
    """Greedy completions for conversational (or plain-text) prompts; the prefill is part of the returned text.

    Kept for callers of the old signature; it runs `rlft.generation.generate` (the one loop). A factory from
    `rlft.decoding.logits_processor_factory` / `rlft.constrained.processor_factory` becomes the fast trie path;
    any other processor is called on the generated tokens only. New code: `generate_with(..., decoding, labels)`.
    """
    from rlft.config import DecodingConfig
    from rlft.constrained import TrieLogitsProcessor
    from rlft.generation import generate as run

    trie = processor = None
    if logits_processor_factory is not None:
        processor = logits_processor_factory(0)
        if isinstance(processor, TrieLogitsProcessor):
            trie, processor = processor.trie, None
    return run(model, tokenizer, prompts, DecodingConfig(prefill=prefill), max_new_tokens=max_new_tokens,
               batch_size=batch_size, trie=trie, logits_processor=processor)


def generate_with(model: Any, tokenizer: Any, prompts: Sequence[Any], decoding: Any, labels: Sequence[str] = (),
                  max_new_tokens: int = 32, batch_size: int = 32, progress: Callable[[int], None] | None = None
                  ) -> list[str]:
    """Greedy completions decoded as the recipe's `decoding:` section says (prefill ids, label trie, stop suffix)."""
    from rlft.generation import generate as run

    return run(model, tokenizer, prompts, decoding, labels, max_new_tokens=max_new_tokens, batch_size=batch_size,
               progress=progress)


def intent_parser(rewards: Sequence[LoadedReward]) -> IntentParser:
    """The parser of the recipe's intent reward (its pattern, aliases and prefix), so metrics read labels the way
    the reward does; the default `IntentParser()` when the recipe has no intent reward."""
    for r in rewards:
        if isinstance(parser := r.parser, IntentParser):
            return parser
    return IntentParser()


def policy_reward(rewards: Sequence[Any]) -> Any:
    """The recipe's judge reward that grades policy (binary or score mode), if any."""
    for r in rewards:
        if r.judge is not None and getattr(r.judge, "mode", None) in ("binary", "score"):
            return r
    return None


def policy_values(values: list[float | None], statuses: list[str] | None, inner: Any) -> list[float | None]:
    """Raw verdicts in [0, 1]: judged (ok) or flagged (injection) rows; skipped / failed rows abstain."""
    scale, offset = getattr(inner, "scale_reward", 1.0) or 1.0, getattr(inner, "offset", 0.0)
    out: list[float | None] = []
    for i, v in enumerate(values):
        status = statuses[i] if statuses else "ok"
        out.append(None if v is None or status not in ("ok", "flagged") else (v - offset) / scale)
    return out


def score_run(run: Any, rewards: Sequence[LoadedReward], prompts: Sequence[Any], columns: dict[str, list[Any]],
              parser: IntentParser) -> None:
    """Fill a run's parsed labels, reward values and judge verdicts."""
    parsed = [parser.parse(c) for c in run.completions]
    run.parse_status = [s for s, _ in parsed]
    run.predicted = [label for _, label in parsed]
    if not rewards:
        return
    scores = score(rewards, prompts, run.completions, columns)
    run.rewards = scores.per_reward
    policy = policy_reward(rewards)
    if policy is not None:
        statuses = scores.extras.get("judge_status")
        run.judge_status = [str(s) for s in statuses] if statuses else None
        run.judge_rationale = scores.extras.get("judge_rationale")
        run.policy = policy_values(scores.per_reward[policy.name], run.judge_status, policy.inner)
    elif (rubric := next((r for r in rewards if r.name == "rubric"), None)) is not None:
        # no judge: the rubric grades policy; a row passes only with every applicable requirement met (score 1.0)
        run.policy = [None if v is None else float(v >= 1.0) for v in scores.per_reward[rubric.name]]


# What `evaluate` reports, besides `reward/<name>` for each recipe reward: the names `evaluation.best_metric` may take.
EVAL_METRICS = ("intent_accuracy", "format_rate", "macro_f1", "policy_following", "system_accuracy")


def policy_metrics(run: Any, truths: Sequence[str] | None, aliases: dict | None = None) -> dict[str, float]:
    """`policy_following` (share of judged rows whose judge/rubric verdict passes) and, with gold labels,
    `system_accuracy` (intent right AND policy passed, among rows whose verdict is known) — when the recipe has a
    policy reward; NaN when every row abstained."""
    from rlft.report import metrics as m

    if run.policy is None:
        return {}
    nan = float("nan")
    rate = m.policy_following_rate(run.policy)["rate"]
    out = {"policy_following": nan if rate is None else rate}
    if truths is not None and run.predicted:
        gold = [normalize_label(t, aliases) for t in truths]
        right = [p is not None and p == g for p, g in zip(run.predicted, gold, strict=True)]
        acc = m.system_accuracy(right, m.passed(run.policy))["accuracy"]
        out["system_accuracy"] = nan if acc is None else acc
    return out


def intent_metrics(completions: Sequence[str], truths: Sequence[str], labels: Sequence[str],
                   parser: IntentParser | None = None) -> tuple[dict, dict]:
    """Exact-intent accuracy, format rate, macro-F1 over `labels`, and per-intent accuracy (`rlft.report.metrics`).

    `parser`: the recipe's intent parser (its pattern and aliases); default `IntentParser()`."""
    from rlft.report import metrics as m

    parser = parser or IntentParser()
    predicted = []
    for c in completions:
        status, label = parser.parse(c)
        predicted.append(label if status == "ok" else None)
    gold = [normalize_label(t, parser.aliases) for t in truths]
    classes = [normalize_label(x, parser.aliases) for x in labels]
    metrics = {"intent_accuracy": m.accuracy(predicted, gold) or 0.0, "format_rate": m.format_rate(predicted) or 0.0,
               "macro_f1": m.macro_f1(predicted, gold, classes) or 0.0}
    per_intent = {c: row["accuracy"] for c, row in m.per_intent_accuracy(predicted, gold).items()}
    return metrics, per_intent


def evaluate(model: Any, tokenizer: Any, dataset: Any, *, decoding: Any = None, label_column: str = "intent",
             labels: Sequence[str] = (), rewards: Sequence[LoadedReward] = (), max_samples: int = 64,
             max_new_tokens: int = 32, batch_size: int = 16, keep_samples: int = 8, name: str = "model",
             source: str = "model", progress: Callable[[int], None] | None = None) -> EvalReport:
    """Evaluate on the first `max_samples` rows of a dataset with a conversational `prompt` column, decoded as
    `decoding` (a `rlft.config.DecodingConfig`; default: plain greedy) says."""
    import dataclasses

    from rlft.config import DecodingConfig
    from rlft.report.summary import ModelRun

    decoding = decoding or DecodingConfig()
    rows = dataset.select(range(min(max_samples, len(dataset))))
    prompts = rows["prompt"]
    completions = generate_with(model, tokenizer, prompts, decoding, labels, max_new_tokens=max_new_tokens,
                                batch_size=batch_size, progress=progress)
    run = ModelRun(name, source, completions,
                   decoding={**dataclasses.asdict(decoding), "greedy": True, "max_new_tokens": max_new_tokens})
    columns = {c: rows[c] for c in rows.column_names if c != "prompt"}
    score_run(run, rewards, prompts, columns, intent_parser(rewards))
    metrics: dict[str, float] = {}
    per_intent: dict[str, float] = {}
    if label_column in rows.column_names:
        metrics, per_intent = intent_metrics(completions, rows[label_column], labels, intent_parser(rewards))
    for reward_name, values in run.rewards.items():
        present = [v for v in values if v is not None]
        metrics[f"reward/{reward_name}"] = sum(present) / len(present) if present else float("nan")
    metrics.update(policy_metrics(run, rows[label_column] if label_column in rows.column_names else None,
                                  intent_parser(rewards).aliases))
    samples = [{"prompt": p[-1]["content"] if isinstance(p, list) else p, "completion": c,
                **({label_column: rows[label_column][i]} if label_column in rows.column_names else {})}
               for i, (p, c) in enumerate(zip(prompts[:keep_samples], completions[:keep_samples], strict=True))]
    return EvalReport(len(rows), metrics, per_intent, samples, run, rows)
