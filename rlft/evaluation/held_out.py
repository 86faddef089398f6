"""Held-out evaluation with the same reward endpoints used in training.

Greedy generation on the evaluation split, then the headline metrics the recipe's rewards declare
(`eval_metrics`, computed by `rlft.report.headline`): intent accuracy, format rate, macro-F1 and per-intent accuracy
(when the data has a label column), policy following and system accuracy (a judge or rubric), and the mean of every
recipe reward. `decoding=` (the recipe's `decoding:`
section) decodes exactly as training samples: prefill ids, label trie, free reply, stop suffix. The scored rows are
kept as a `rlft.report.summary.ModelRun` (`EvalReport.run`), so a training run can write the same report files as
`rlft eval` without generating or scoring again.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from rlft.report.headline import (LABEL_METRICS, METRICS, SELECTIVE_EXTRA, SELECTIVE_METRICS, VERDICT_METRICS, flat,
                                 headline)
from rlft.scoring.loader import LoadedReward
from rlft.scoring.completions import score


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

    Kept for callers of the old signature; it runs `rlft.decoding.generation.generate` (the one loop). A factory from
    `rlft.decoding.prompting.logits_processor_factory` / `rlft.decoding.constrained.processor_factory` becomes the fast trie path;
    any other processor is called on the generated tokens only. New code: `generate_with(..., decoding, labels)`.
    """
    from rlft.recipe.sections import DecodingConfig
    from rlft.decoding.constrained import TrieLogitsProcessor
    from rlft.decoding.generation import generate as run

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
    from rlft.decoding.generation import generate as run

    return run(model, tokenizer, prompts, decoding, labels, max_new_tokens=max_new_tokens, batch_size=batch_size,
               progress=progress)


def default_parser(aliases: dict[str, str] | None = None) -> Any:
    """How labels are read when no recipe reward declares a label metric: the intent reward's default parser
    (`<intent>label</intent>`), so a recipe graded by a judge or rubric alone still reports label metrics."""
    from rlft.rewards.intent import IntentParser

    return IntentParser(aliases=aliases)


def _declares(reward: Any, names: Sequence[str]) -> bool:
    return any(m in names for m in reward.eval_metrics)


def intent_parser(rewards: Sequence[LoadedReward]) -> Any:
    """The parser of the first recipe reward declaring a label metric (`rlft.report.headline.LABEL_METRICS`; the
    intent reward: its pattern, aliases and prefix), so metrics read labels the way the reward does;
    `default_parser()` when none does."""
    for r in rewards:
        if _declares(r, LABEL_METRICS) and r.parser is not None:
            return r.parser
    return default_parser()


def selective_grading(rewards: Sequence[LoadedReward]) -> Any:
    """The hand-off grading (`selective` declaration) of the first recipe reward declaring a selective metric
    (`rlft.report.headline.SELECTIVE_METRICS`: the intent reward with `handoff`), or None."""
    for r in rewards:
        if _declares(r, SELECTIVE_METRICS) and r.selective is not None:
            return r.selective
    return None


def policy_reward(rewards: Sequence[Any]) -> Any:
    """The recipe's judge reward that grades policy (one declaring a verdict metric: binary or score mode), if any."""
    for r in rewards:
        if r.judge is not None and _declares(r, VERDICT_METRICS):
            return r
    return None


def verdict_reward(rewards: Sequence[Any]) -> Any:
    """The reward whose values are evaluation's pass/fail verdicts: `policy_reward`, else the first other reward
    declaring a verdict metric (the rubric)."""
    return policy_reward(rewards) or next((r for r in rewards if _declares(r, VERDICT_METRICS)), None)


def policy_values(values: list[float | None], statuses: list[str] | None, inner: Any) -> list[float | None]:
    """Raw verdicts in [0, 1]: judged (ok) or flagged (injection) rows; skipped / failed rows abstain."""
    scale, offset = getattr(inner, "scale_reward", 1.0) or 1.0, getattr(inner, "offset", 0.0)
    out: list[float | None] = []
    for i, v in enumerate(values):
        status = statuses[i] if statuses else "ok"
        out.append(None if v is None or status not in ("ok", "flagged") else (v - offset) / scale)
    return out


def score_run(run: Any, rewards: Sequence[LoadedReward], prompts: Sequence[Any], columns: dict[str, list[Any]],
              parser: Any) -> None:
    """Fill a run's parsed labels, reward values and verdicts (from the rewards' `eval_metrics` declarations)."""
    parsed = [parser.parse(c) for c in run.completions]
    run.parse_status = [s for s, _ in parsed]
    run.predicted = [label for _, label in parsed]
    run.selective = selective_grading(rewards)
    if not rewards:
        return
    scores = score(rewards, prompts, run.completions, columns)
    run.rewards = scores.per_reward
    grader = verdict_reward(rewards)
    if grader is None:
        return
    if grader.judge is not None:
        statuses = scores.extras.get("judge_status")
        run.judge_status = [str(s) for s in statuses] if statuses else None
        run.judge_rationale = scores.extras.get("judge_rationale")
        run.policy = policy_values(scores.per_reward[grader.name], run.judge_status, grader.inner)
    else:  # no judge (the rubric): a row passes only with its full score (every applicable requirement met)
        run.policy = [None if v is None else float(v >= 1.0) for v in scores.per_reward[grader.name]]


# What `evaluate` reports, besides `reward/<name>` for each recipe reward: the names `evaluation.best_metric` may take.
EVAL_METRICS = METRICS


def policy_metrics(run: Any, truths: Sequence[str] | None, aliases: dict | None = None) -> dict[str, float]:
    """`policy_following` (share of judged rows whose judge/rubric verdict passes) and, with gold labels,
    `system_accuracy` (intent right AND policy passed, among rows whose verdict is known) — when the recipe has a
    policy reward; NaN when every row abstained."""
    if run.policy is None:
        return {}
    gold = None if truths is None else [default_parser(aliases).normalize(t) for t in truths]
    return flat(headline(run.predicted, gold, (), run.policy, intervals=False), VERDICT_METRICS)


def intent_metrics(completions: Sequence[str], truths: Sequence[str], labels: Sequence[str],
                   parser: Any = None) -> tuple[dict, dict]:
    """Exact-intent accuracy, format rate, macro-F1 over `labels`, and per-intent accuracy (`rlft.report.headline`).

    `parser`: the recipe's intent parser (its pattern and aliases); default `default_parser()`."""
    parser = parser or default_parser()
    return label_metrics([parser.parse(c)[1] for c in completions], truths, labels, parser)


def label_metrics(predicted: Sequence[str | None], truths: Sequence[str], labels: Sequence[str],
                  parser: Any, selective: Any = None) -> tuple[dict, dict]:
    """(label metrics, per-label accuracy) of parsed labels against the gold column, both read by `parser`; with
    `selective` (a hand-off reward's declaration) the selective metrics too."""
    from rlft.report import metrics as m

    gold = [parser.normalize(t) for t in truths]
    classes = [parser.normalize(x) for x in labels]
    values = flat(headline(predicted, gold, classes, None, intervals=False, selective=selective),
                  (*LABEL_METRICS, *SELECTIVE_METRICS, *SELECTIVE_EXTRA))
    return values, {c: row["accuracy"] for c, row in m.per_intent_accuracy(predicted, gold).items()}


def evaluate(model: Any, tokenizer: Any, dataset: Any, *, decoding: Any = None, label_column: str = "intent",
             labels: Sequence[str] = (), rewards: Sequence[LoadedReward] = (), max_samples: int = 64,
             max_new_tokens: int = 32, batch_size: int = 16, keep_samples: int = 8, name: str = "model",
             source: str = "model", progress: Callable[[int], None] | None = None) -> EvalReport:
    """Evaluate on the first `max_samples` rows of a dataset with a conversational `prompt` column, decoded as
    `decoding` (a `rlft.recipe.sections.DecodingConfig`; default: plain greedy) says."""
    import dataclasses
    import time

    from rlft.recipe.sections import DecodingConfig
    from rlft.report.summary import ModelRun

    decoding = decoding or DecodingConfig()
    rows = dataset.select(range(min(max_samples, len(dataset))))
    prompts = rows["prompt"]
    start = time.perf_counter()
    completions = generate_with(model, tokenizer, prompts, decoding, labels, max_new_tokens=max_new_tokens,
                                batch_size=batch_size, progress=progress)
    run = ModelRun(name, source, completions, seconds=time.perf_counter() - start,  # report.md's rows/s
                   decoding={**dataclasses.asdict(decoding), "greedy": True, "max_new_tokens": max_new_tokens})
    columns = {c: rows[c] for c in rows.column_names if c != "prompt"}
    parser = intent_parser(rewards)
    score_run(run, rewards, prompts, columns, parser)
    truths = rows[label_column] if label_column in rows.column_names else None
    metrics: dict[str, float] = {}
    per_intent: dict[str, float] = {}
    if truths is not None:
        metrics, per_intent = label_metrics(run.predicted, truths, labels, parser, run.selective)
    for reward_name, values in run.rewards.items():
        present = [v for v in values if v is not None]
        metrics[f"reward/{reward_name}"] = sum(present) / len(present) if present else float("nan")
    if run.policy is not None:
        gold = None if truths is None else [parser.normalize(t) for t in truths]
        metrics.update(flat(headline(run.predicted, gold, (), run.policy, intervals=False), VERDICT_METRICS))
    samples = [{"prompt": p[-1]["content"] if isinstance(p, list) else p, "completion": c,
                **({label_column: rows[label_column][i]} if label_column in rows.column_names else {})}
               for i, (p, c) in enumerate(zip(prompts[:keep_samples], completions[:keep_samples], strict=True))]
    return EvalReport(len(rows), metrics, per_intent, samples, run, rows)
