"""The one place replies are set up for decoding: prompt token ids + prefill ids, the label trie, and the same
constraint as a regular expression for servers with structured outputs.

Every generate loop (GRPO rollouts, PPO rollouts, evaluation, labelling, the label-space objective) builds its
prompt ids with `prompt_ids` so a prompt and prefill are the same tokens everywhere: the chat template is applied
and tokenized exactly as TRL's GRPOTrainer does, and the prefill is appended as its own token ids (appending it as
text would let the template's last token merge with the prefill's first). `decoding` is the recipe's
`DecodingConfig`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from rlft.config import DecodingConfig


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


def build_trie(tokenizer: Any, labels: Sequence[str], decoding: DecodingConfig) -> Any:
    """The label trie of `decoding.constrain_labels` (ids of label + suffix as they follow the prefill, then EOS;
    with `decoding.free_reply` no EOS: the trie releases each row after its head; with
    `decoding.analysis_max_tokens` a free reasoning block comes first; with `decoding.lookup` each head is followed
    by its label's looked-up text before the release)."""
    from rlft.constrained import Analysis, LabelTrie

    if not labels:
        raise ValueError("decoding.constrain_labels needs the label set (data.labels or a label column)")
    analysis = None
    if decoding.analysis_max_tokens:
        analysis = Analysis.from_tokenizer(tokenizer, decoding.analysis_max_tokens, decoding.analysis_close)
    return LabelTrie.from_labels(tokenizer, labels, decoding.prefill, decoding.label_suffix,
                                 release=decoding.free_reply, reply_max_tokens=decoding.reply_max_tokens,
                                 reply_min_tokens=decoding.reply_min_tokens, analysis=analysis,
                                 label_prefix=decoding.label_prefix, lookup=lookup_text(labels, decoding),
                                 reply_stop=decoding.reply_stop)


def lookup_text(labels: Sequence[str], decoding: DecodingConfig) -> Callable[[str], str] | None:
    """`label -> text` shown after the head (`decoding.lookup`), or None when off. Every label needs a text (or the
    file's `default:`), checked here so a missing article is a recipe error, not a silent empty lookup."""
    if not decoding.lookup:
        return None
    from rlft.errors import RecipeError
    from rlft.judge.policies import Guidelines

    try:
        table = Guidelines.from_params(None, decoding.lookup)
    except Exception as exc:  # a missing or malformed file: one line naming it
        raise RecipeError(f"decoding.lookup: {exc}") from None
    texts = {str(label): table.for_key(label) for label in labels}
    missing = [label for label, text in texts.items() if text is None]
    if missing:
        raise RecipeError(f"decoding.lookup: {decoding.lookup} has no text for label '{missing[0]}' (and no "
                          f"default:)")
    return lambda label: decoding.lookup_template.replace("{article}", texts[label])


def logits_processor_factory(tokenizer: Any, labels: Sequence[str], decoding: DecodingConfig
                             ) -> Callable[[int], Any] | None:
    """`prompt_length -> TrieLogitsProcessor` when the constraint is on, else None."""
    if not decoding.constrain_labels:
        return None
    from rlft.constrained import TrieLogitsProcessor

    trie = build_trie(tokenizer, labels, decoding)
    pad = tokenizer.pad_token_id

    def make(prompt_length: int) -> Any:
        return TrieLogitsProcessor(trie, prompt_length, pad)

    return make


def generation_kwargs(tokenizer: Any, labels: Sequence[str], decoding: DecodingConfig) -> dict[str, Any]:
    """Keyword arguments of `rlft.evaluate.generate` that decode the way training does."""
    return {"prefill": decoding.prefill,
            "logits_processor_factory": logits_processor_factory(tokenizer, labels, decoding)}


def structured_output_regex(labels: Sequence[str], decoding: DecodingConfig) -> str | None:
    """The constraint as a regex over the generated text (after the prefill), for vLLM structured outputs.

    With `decoding.free_reply`: the label alternation + suffix, then any text (`[\\s\\S]*`); the server's token
    limit and EOS end it (`reply_max_tokens` is a token count and is not expressed in the regex). With
    `decoding.analysis_max_tokens`: first at most 8 characters per analysis token, without ``<``, then the close
    and `label_prefix` (the token budget itself is not expressible in a regex). With `decoding.lookup`: each
    label's alternative carries its looked-up text, so one structured-outputs call fetches the article the head
    chose (the server picks that text's tokens itself; the reply is what follows the text). A one-character
    `decoding.reply_stop` keeps that character out of the reply (``[^\n]*``); a longer one is the request's `stop`
    (`rlft.export.serving_config`)."""
    if not decoding.constrain_labels:
        return None
    from rlft.constrained import label_regex

    close = decoding.analysis_close if decoding.analysis_max_tokens else ""
    return label_regex(labels, suffix=decoding.label_suffix, free_tail=decoding.free_reply, analysis_close=close,
                       analysis_max_chars=8 * decoding.analysis_max_tokens, label_prefix=decoding.label_prefix,
                       after_label=lookup_text(labels, decoding),
                       tail_without=decoding.reply_stop if len(decoding.reply_stop) == 1 else "")
