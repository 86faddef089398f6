"""The decoding stage: how a completion is generated, the same way in training, evaluation and serving.

- `prompting`: prompt + prefill ids and the recipe's generation settings (`prompt_ids`, `structured_output_regex`).
- `constraint`: the one decoding state machine (analysis -> label head -> lookup -> reply), as a logits
  processor, a step function and a regex; `states`: its states (`Analysis`, `LabelHead`, `FreeReply`) and the
  `Step` each gives; `constrained`: its first names (`LabelTrie`, `TrieLogitsProcessor`).
- `generation`: the generate loop for evaluation and labelling; `shared_prefix`: one prompt pass per GRPO group.
- `label_space`: exact expected reward over the closed label set (label_pg).

`rlft.decoding.prompt_ids` and the other names of the former `rlft/decoding.py` are read from `prompting`.
"""


from rlft._moved import reexport

__getattr__ = reexport(__name__, "prompting")
