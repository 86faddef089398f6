"""Held-out evaluation with the same reward endpoints used in training.

Greedy generation on the evaluation split, then: intent accuracy, format rate, macro-F1 and per-intent accuracy
(when the data has a label column), and the mean of every recipe reward. Generation hooks (`prefill`,
`logits_processor`) let constrained-output recipes evaluate exactly as they sample.
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


def recipe_parser(rewards: Sequence[LoadedReward]) -> IntentParser | None:
    """The parser of the recipe's intent reward (its pattern, aliases and prefix), so metrics read labels the way
    the reward does; None when the recipe has no intent reward."""
    for r in rewards:
        if isinstance(parser := r.parser, IntentParser):
            return parser
    return None


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


def evaluate(model: Any, tokenizer: Any, dataset: Any, *, label_column: str = "intent", labels: Sequence[str] = (),
             rewards: Sequence[LoadedReward] = (), max_samples: int = 64, max_new_tokens: int = 32,
             batch_size: int = 16, prefill: str = "", logits_processor_factory: Callable | None = None,
             keep_samples: int = 8) -> EvalReport:
    """Evaluate on the first `max_samples` rows of a dataset with a conversational `prompt` column."""
    rows = dataset.select(range(min(max_samples, len(dataset))))
    prompts = rows["prompt"]
    completions = generate(model, tokenizer, prompts, max_new_tokens, batch_size, prefill, logits_processor_factory)
    metrics: dict[str, float] = {}
    per_intent: dict[str, float] = {}
    if label_column in rows.column_names:
        metrics, per_intent = intent_metrics(completions, rows[label_column], labels, recipe_parser(rewards))
    if rewards:
        columns = {c: rows[c] for c in rows.column_names if c != "prompt"}
        scores = score(rewards, prompts, completions, columns)
        for name, values in scores.per_reward.items():
            present = [v for v in values if v is not None]
            metrics[f"reward/{name}"] = sum(present) / len(present) if present else float("nan")
    samples = [{"prompt": p[-1]["content"] if isinstance(p, list) else p, "completion": c,
                **({label_column: rows[label_column][i]} if label_column in rows.column_names else {})}
               for i, (p, c) in enumerate(zip(prompts[:keep_samples], completions[:keep_samples], strict=True))]
    return EvalReport(len(rows), metrics, per_intent, samples)
