"""Sampling and scoring an rft round's completions exactly as the recipe decodes them (steps 1-3 of
rlft.trainers.rft): samples, the greedy (deployed) reply, hinted continuations and the sentence cuts hints go
after."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def sentence_ends(token_texts: Sequence[str]) -> list[int]:
    """Indices of the tokens that end a sentence inside a reply (`token_texts`: each reply token's text), its last
    token excluded: the token's text ends with '.', '!' or '?' and the next token's text starts with whitespace (so
    '$4.99' is not cut after '$4.')."""
    return [i for i in range(len(token_texts) - 1)
            if token_texts[i].endswith((".", "!", "?")) and token_texts[i + 1][:1].isspace()]


class Sampler:
    """Samples and scores completions for prompts the way the recipe decodes them (see the module docstring)."""

    def __init__(self, model: Any, tokenizer: Any, decoding: Any, rewards: Sequence[Any], labels: Sequence[str],
                 args: Any):
        from rlft.decoding.generation import eos_token_ids
        from rlft.decoding.prompting import build_trie

        self.model, self.tokenizer, self.decoding, self.rewards, self.args = model, tokenizer, decoding, rewards, args
        self.trie = build_trie(tokenizer, labels, decoding) if decoding.constrain_labels else None
        self.eos = eos_token_ids(model, tokenizer)
        pad = tokenizer.pad_token_id
        self.pad = tokenizer.eos_token_id if pad is None else pad
        self.max_new_tokens = int(args.max_completion_length)
        reply_stops = self.trie.reply_stop_ids if self.trie is not None else ()
        self.stop_ids = sorted({*self.eos, *reply_stops})  # what ends a reply: EOS, or a reply stop token

    def sample(self, prompt_ids: list[list[int]], n: int, seed: int | None) -> list[list[int]]:
        """`n` completions per prompt (consecutive) with the trainer's sampling, or the greedy one (`seed` None); a
        row ends at its first EOS (`generate_ids` stops it there)."""
        import torch

        from rlft.decoding.generation import generate_ids

        with torch.no_grad():
            return generate_ids(self.model, prompt_ids, max_new_tokens=self.max_new_tokens, eos_token_ids=self.eos,
                                pad_token_id=self.pad, trie=self.trie, sampling=self._sampling(n, seed),
                                batch_size=32)

    def _sampling(self, n: int, seed: int | None) -> Any:  # a rlft.decoding.generation.Sampling
        from rlft.decoding.generation import Sampling

        return Sampling(n=n) if seed is None else Sampling.like(self.args, n, seed)  # Sampling(): greedy

    def hinted(self, prompt_ids: list[list[int]], completions: list[list[int]], hints: Sequence[str],
               hint_index: Sequence[int], seed: int | None) -> tuple[list[list[int]], list[int]]:
        """Each completion continued after its hint (`hints[hint_index[k]]` for completion k) with the trainer's
        sampling, or greedily (`seed` None); returns them and the indices actually hinted (a reply that did not end
        by itself, or has no room left, is not)."""
        import torch

        from rlft.decoding.generation import generate_ids
        from rlft.grpo.hints import extend_with_hints

        hint_ids = [self.tokenizer.encode(h, add_special_tokens=False) for h in hints]

        def continue_from(prefixes: list[list[int]], max_new: int, stop: Any) -> list[list[int]]:
            with torch.no_grad():
                return generate_ids(self.model, prefixes, max_new_tokens=max_new, eos_token_ids=self.eos,
                                    pad_token_id=self.pad, sampling=self._sampling(1, seed),
                                    batch_size=32, stop=stop)

        return extend_with_hints(completions, prompt_ids, range(len(completions)), hint_ids, hint_index.__getitem__,
                                 self.trie, self.eos, self.max_new_tokens, continue_from)

    def sentence_cuts(self, completion: Sequence[int]) -> list[list[int]]:
        """The completion cut after each sentence of its reply but the last, each ended by the completion's own EOS
        (the points `rft.hint_at: sentences` tries the hints at besides the reply's end; `sentence_ends`). [] for a
        completion that did not end by itself or whose reply never opened."""
        ids = list(completion)
        if not ids or ids[-1] not in self.eos:
            return []
        body = ids[:-1]
        state, start = self.trie.locate(body)
        if self.trie.states[state] is not self.trie.reply:
            return []
        texts = [self.tokenizer.decode([t]) for t in body[start:]]
        return [body[:start + i + 1] + [ids[-1]] for i in sentence_ends(texts)]

    def texts(self, completions: Sequence[Sequence[int]]) -> list[str]:
        from rlft.decoding.generation import completion_texts

        return completion_texts(self.tokenizer, completions, self.decoding, self.trie)

    def score(self, rows: Any, prompt_of: Sequence[int], texts: Sequence[str]) -> Any:  # rlft.scoring Scores
        from rlft.scoring.completions import score

        table = {c: list(rows[c]) for c in rows.column_names}
        columns = {c: [values[p] for p in prompt_of] for c, values in table.items() if c != "prompt"}
        return score(self.rewards, [table["prompt"][p] for p in prompt_of], texts, columns)

    def head_lengths(self, completions: Sequence[Sequence[int]]) -> list[int]:
        from rlft.grpo.segments import head_lengths

        return head_lengths(completions, self.trie, self.tokenizer, self.decoding.label_suffix)[0]
