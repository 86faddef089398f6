"""Held-out evaluation with the same reward endpoints used in training.

Greedy generation on the evaluation split, then: intent accuracy, format rate, macro-F1 and per-intent accuracy
(when the data has a label column), and the mean of every recipe reward. Generation hooks (`prefill`,
`logits_processor`) let constrained-output recipes evaluate exactly as they sample.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from rlft.reward import LoadedReward
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
    """Greedy completions for conversational (or plain-text) prompts; the prefill is part of the returned text."""
    import torch

    device = next(model.parameters()).device
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    outputs: list[str] = []
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(prompts), batch_size):
            batch = prompts[start:start + batch_size]
            texts = [tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True)
                     if isinstance(p, list) else p for p in batch]
            texts = [t + prefill for t in texts]
            enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
            kwargs: dict[str, Any] = {}
            if logits_processor_factory is not None:
                kwargs["logits_processor"] = [logits_processor_factory(enc["input_ids"].shape[1])]
            with torch.no_grad():
                out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                                     pad_token_id=tokenizer.pad_token_id, **kwargs)
            new = out[:, enc["input_ids"].shape[1]:]
            outputs.extend(prefill + t for t in tokenizer.batch_decode(new, skip_special_tokens=True))
    finally:
        tokenizer.padding_side = side
        model.train(was_training)
    return outputs


def intent_metrics(completions: Sequence[str], truths: Sequence[str], labels: Sequence[str]) -> tuple[dict, dict]:
    """Exact-intent accuracy, format rate, macro-F1 over `labels`, and per-intent accuracy."""
    parser = IntentParser()
    predicted = []
    formatted = 0
    for c in completions:
        status, label = parser.parse(c)
        formatted += status == "ok"
        predicted.append(label)
    gold = [normalize_label(t) for t in truths]
    n = max(len(gold), 1)
    classes = sorted({normalize_label(x) for x in labels} | set(gold))
    f1s = []
    for c in classes:
        tp = sum(p == c and g == c for p, g in zip(predicted, gold, strict=True))
        fp = sum(p == c and g != c for p, g in zip(predicted, gold, strict=True))
        fn = sum(p != c and g == c for p, g in zip(predicted, gold, strict=True))
        if tp + fp + fn:
            f1s.append(2 * tp / (2 * tp + fp + fn))
    per_intent = {}
    for c in sorted(set(gold)):
        idx = [i for i, g in enumerate(gold) if g == c]
        per_intent[c] = sum(predicted[i] == c for i in idx) / len(idx)
    metrics = {"intent_accuracy": sum(p == g for p, g in zip(predicted, gold, strict=True)) / n,
               "format_rate": formatted / n, "macro_f1": sum(f1s) / len(f1s) if f1s else 0.0}
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
        metrics, per_intent = intent_metrics(completions, rows[label_column], labels)
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
