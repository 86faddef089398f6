"""Context distillation (`signal.teacher_lookup`): the support agent's policy moved into its weights.

The student (the model being trained) sees the customer's message only and writes ``<intent>X</intent>`` + a reply
from its weights: the deployed prompt holds nothing derived from a label. A **teacher** scores each of the
student's sampled replies token by token with the help-centre article of the row's **gold** label in its context,
inserted right after the student's head, where `decoding.lookup` puts a looked-up article
(`signal.teacher_lookup_template`, the lookup's format): an adapter trained with the lookup is a ready teacher. Per
reply token t of a completion,

    d_t = log π_T(y_t | prompt, head, article, y_<t) − log π_S(y_t | prompt, head, y_<t)

(minus the per-token reverse-KL estimate at the sampled token) and ``teacher_coef · clip(d_t, ±teacher_clip)`` is
added to that token's advantage, on top of the sampled rewards' (segment credit): on-policy distillation as a
dense reward (Agarwal et al. 2024, "GKD"; Thinking Machines 2025, "On-Policy Distillation"; context distillation:
Snell et al. 2022). Head tokens and padding get nothing from the teacher (the head has its own reward).

The teacher is `signal.teacher_adapter` (a LoRA folder merged into a frozen copy of the base, loaded once), or the
model being trained, run without gradient (self-distillation, as TRL's SDFTTrainer). Why not TRL's trainers:
`DistillationTrainer` and `SDFTTrainer` take no rewards and generate without a logits processor, so neither can
decode rlft's constrained head nor combine the distillation term with the intent and rubric rewards; the term is
GRPO's per-token advantage here instead, computed in one place (`apply`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import torch

from rlft.recipe.sections import DecodingConfig, SignalConfig


def article_text(labels: Sequence[str], signal: SignalConfig) -> Callable[[str], str]:
    """`label -> text` inserted after the head for the teacher (every label checked, as `decoding.lookup`)."""
    from rlft.decoding.prompting import lookup_text

    decoding = DecodingConfig(prefill="", constrain_labels=True, free_reply=True, lookup=signal.teacher_lookup,
                              lookup_template=signal.teacher_lookup_template)
    text = lookup_text(labels, decoding)
    assert text is not None
    return text


def teacher_rows(prompts: Sequence[Sequence[int]], completions: Sequence[Sequence[int]], head_lengths: Sequence[int],
                 articles: Sequence[Sequence[int]]) -> tuple[list[list[int]], list[list[int]], list[int], list[int]]:
    """Student and teacher token sequences of each rollout and where its reply starts in each:
    student = prompt + completion; teacher = prompt + head + article + reply. The article is in the teacher's ids
    only (tests pin it)."""
    students, teachers, s_start, t_start = [], [], [], []
    for prompt, completion, head, article in zip(prompts, completions, head_lengths, articles, strict=True):
        prompt, completion, article = list(prompt), list(completion), list(article)
        students.append(prompt + completion)
        teachers.append(prompt + completion[:head] + article + completion[head:])
        s_start.append(len(prompt) + head)
        t_start.append(len(prompt) + head + len(article))
    return students, teachers, s_start, t_start


@torch.no_grad()
def token_logprobs(model: Any, sequences: Sequence[Sequence[int]], starts: Sequence[int], counts: Sequence[int],
                   pad_token_id: int, batch_size: int = 8) -> list[torch.Tensor]:
    """log p(sequence[t] | sequence[:t]) for t in starts[i] .. starts[i] + counts[i] - 1, per sequence (right
    padding, `batch_size` sequences per forward)."""
    device = next(model.parameters()).device
    out: list[torch.Tensor] = []
    for lo in range(0, len(sequences), batch_size):
        chunk = sequences[lo:lo + batch_size]
        width = max(len(s) for s in chunk)
        ids = torch.full((len(chunk), width), pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for i, seq in enumerate(chunk):
            ids[i, :len(seq)] = torch.tensor(seq, dtype=torch.long)
            mask[i, :len(seq)] = 1
        logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
        for i in range(len(chunk)):  # the softmax over the vocabulary only where a scored token is predicted
            start, n = starts[lo + i], counts[lo + i]
            logp = torch.log_softmax(logits[i, start - 1:start - 1 + n].float(), dim=-1)
            targets = ids[i, start:start + n].to(logp.device)
            out.append(logp[torch.arange(n, device=logp.device), targets].cpu())
    return out


def distill_advantages(student: Sequence[torch.Tensor], teacher: Sequence[torch.Tensor], head_lengths: Sequence[int],
                       width: int, coef: float, clip: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, width) per-token terms coef * clip(log p_T - log p_S) on each completion's reply tokens (0 elsewhere),
    and the (B,) mean log-ratio per completion (0 without a reply)."""
    terms = torch.zeros(len(student), width)
    mean = torch.zeros(len(student))
    for i, (s, t, head) in enumerate(zip(student, teacher, head_lengths, strict=True)):
        if len(s):
            d = t - s
            terms[i, head:head + len(d)] = coef * d.clamp(-clip, clip)
            mean[i] = d.mean()
    return terms, mean


@functools.lru_cache(maxsize=2)
def _frozen_teacher(base_name: str, adapter: str, device: str) -> Any:
    """The base model with `adapter` merged in, frozen (loaded once per process)."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base_name, dtype=torch.float32)
    model = PeftModel.from_pretrained(model, adapter).merge_and_unload()
    model.requires_grad_(False)
    return model.to(device).eval()


class Teacher:
    """`signal.teacher_lookup` for one trainer: the gold article's token ids per label and the teacher model."""

    def __init__(self, signal: SignalConfig, labels: Sequence[str], label_column: str, tokenizer: Any):
        self.signal, self.label_column, self.tokenizer = signal, label_column, tokenizer
        text = article_text(labels, signal)
        self.article_ids = {label: tokenizer(text(label), add_special_tokens=False)["input_ids"] for label in labels}

    def model(self, trainer: Any) -> Any:
        student = trainer.accelerator.unwrap_model(trainer.model)
        if not self.signal.teacher_adapter:
            return student
        base = student.get_base_model() if hasattr(student, "get_base_model") else student
        name = getattr(base.config, "_name_or_path", None) or base.config.name_or_path
        return _frozen_teacher(name, self.signal.teacher_adapter, str(next(student.parameters()).device))

    def apply(self, trainer: Any, batch: dict[str, Any], inputs: Sequence[dict[str, Any]]) -> None:
        """Add the teacher's per-token terms to `batch['advantages']` (made (B, T) when it is (B,))."""
        from rlft.grpo.segments import head_lengths

        mask = batch["completion_mask"]
        completions = [ids[m.bool()].tolist() for ids, m in zip(batch["completion_ids"].cpu(), mask.cpu(),
                                                                strict=True)]
        prompts = [ids[m.bool()].tolist() for ids, m in zip(batch["prompt_ids"].cpu(), batch["prompt_mask"].cpu(),
                                                           strict=True)]
        heads, _ = head_lengths(completions, trainer.trie, trainer.processing_class, trainer.decoding.label_suffix)
        gold = [str(row[self.label_column]) for row in inputs]
        students, teachers, s_start, t_start = teacher_rows(prompts, completions, heads,
                                                            [self.article_ids[g] for g in gold])
        counts = [len(c) - h for c, h in zip(completions, heads, strict=True)]
        pad = trainer.processing_class.pad_token_id
        pad = trainer.processing_class.eos_token_id if pad is None else pad
        student_model, teacher_model = trainer.accelerator.unwrap_model(trainer.model), self.model(trainer)
        was_training = student_model.training
        student_model.eval()  # no dropout in either score
        try:
            s_lp = token_logprobs(student_model, students, s_start, counts, pad)
            t_lp = token_logprobs(teacher_model, teachers, t_start, counts, pad)
        finally:
            student_model.train(was_training)
        width = batch["completion_ids"].size(1)
        terms, mean = distill_advantages(s_lp, t_lp, heads, width, self.signal.teacher_coef, self.signal.teacher_clip)
        adv = batch["advantages"]
        if adv.dim() == 1:
            adv = adv.unsqueeze(1).expand(-1, width) * mask.to(adv.dtype)
        batch["advantages"] = adv + (terms * mask.cpu().float()).to(adv.device, adv.dtype)
        n_reply = sum(1 for c in counts if c > 0)
        trainer.log_signal_metric("teacher/log_ratio", float(mean.sum()) / max(n_reply, 1))
        trainer.log_signal_metric("teacher/advantage_abs",
                                  float(terms.abs().sum()) / max(sum(max(c, 0) for c in counts), 1))
