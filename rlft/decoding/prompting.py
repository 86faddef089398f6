"""The one place replies are set up for decoding: prompt token ids + prefill ids, and the recipe's decoding
constraint (`rlft.decoding.constraint.Constraint`: label head, analysis block, lookup, free reply) with its logits processor
and its regular expression for servers with structured outputs.

Every generate loop (GRPO rollouts, PPO rollouts, evaluation, labelling, the label-space objective) builds its
prompt ids with `prompt_ids` so a prompt and prefill are the same tokens everywhere: the chat template is applied
and tokenized exactly as TRL's GRPOTrainer does, and the prefill is appended as its own token ids (appending it as
text would let the template's last token merge with the prefill's first). `decoding` is the recipe's
`DecodingConfig`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from rlft.recipe.sections import DecodingConfig
from rlft.decoding.constraint import Constraint
from rlft.decoding.states import lookup_text

__all__ = ["build_trie", "generation_kwargs", "logits_processor_factory", "lookup_text", "prefill_ids", "prompt_ids",
           "structured_output_regex", "template_ids"]


def prefill_ids(tokenizer: Any, decoding: DecodingConfig) -> list[int]:
    return tokenizer.encode(decoding.prefill, add_special_tokens=False) if decoding.prefill else []


def template_ids(tokenizer: Any, prompt: Any) -> list[int]:
    """Token ids of a conversational prompt (chat template + assistant header) or a plain-text prompt."""
    if isinstance(prompt, list):
        out = tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=True, return_dict=True)
        ids = out["input_ids"]
        return list(ids[0] if ids and isinstance(ids[0], list) else ids)
    return list(tokenizer(text=prompt)["input_ids"])


def prompt_ids(tokenizer: Any, prompt: Any, decoding: DecodingConfig) -> list[int]:
    """Prompt ids every generate loop decodes after: template ids + prefill ids."""
    return template_ids(tokenizer, prompt) + prefill_ids(tokenizer, decoding)


def build_trie(tokenizer: Any, labels: Sequence[str], decoding: DecodingConfig) -> Constraint:
    """The constraint of `decoding.constrain_labels` (`Constraint.from_recipe`): the label head (ids of label +
    suffix as they follow the prefill, then EOS; with `decoding.free_reply` no EOS: a free reply follows), with
    `decoding.analysis_max_tokens` a free reasoning block first, with `decoding.lookup` each head followed by its
    label's looked-up text before the reply."""
    return Constraint.from_recipe(tokenizer, labels, decoding)


def logits_processor_factory(tokenizer: Any, labels: Sequence[str], decoding: DecodingConfig
                             ) -> Callable[[int], Any] | None:
    """`prompt_length -> Constraint.processor(prompt_length)` when the constraint is on, else None."""
    if not decoding.constrain_labels:
        return None
    constraint = build_trie(tokenizer, labels, decoding)
    pad = tokenizer.pad_token_id

    def make(prompt_length: int) -> Any:
        return constraint.processor(prompt_length, pad)

    return make


def generation_kwargs(tokenizer: Any, labels: Sequence[str], decoding: DecodingConfig) -> dict[str, Any]:
    """Keyword arguments of `rlft.evaluation.held_out.generate` that decode the way training does."""
    return {"prefill": decoding.prefill,
            "logits_processor_factory": logits_processor_factory(tokenizer, labels, decoding)}


def structured_output_regex(labels: Sequence[str], decoding: DecodingConfig) -> str | None:
    """The constraint as a regex over the generated text (after the prefill), for vLLM structured outputs
    (`Constraint.regex`, built from text: no tokenizer needed).

    With `decoding.free_reply`: the label alternation + suffix, then any text (`[\\s\\S]*`); the server's token
    limit and EOS end it (`reply_max_tokens` is a token count and is not expressed in the regex). With
    `decoding.analysis_max_tokens`: first at most 8 characters per analysis token, without ``<``, then the close
    and `label_prefix` (the token budget itself is not expressible in a regex). With `decoding.lookup`: each
    label's alternative carries its looked-up text, so one structured-outputs call fetches the article the head
    chose (the server picks that text's tokens itself; the reply is what follows the text). A one-character
    `decoding.reply_stop` keeps that character out of the reply (``[^\n]*``); a longer one is the request's `stop`
    (`rlft.run.export.serving_config`)."""
    if not decoding.constrain_labels:
        return None
    return Constraint.from_recipe(None, labels, decoding).regex()
