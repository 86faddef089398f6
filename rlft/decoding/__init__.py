"""The decoding stage: how a completion is generated, the same way in training, evaluation and serving.

- `prompting`: prompt + prefill ids and the recipe's generation settings (`prompt_ids`, `structured_output_regex`).
- `constraint`: the one decoding state machine (analysis -> label head -> lookup -> reply), as a logits
  processor, a step function and a regex; `constrained`: its first names (`LabelTrie`, `TrieLogitsProcessor`).
- `generation`: the generate loop for evaluation and labelling; `shared_prefix`: one prompt pass per GRPO group.
- `label_space`: exact expected reward over the closed label set (label_pg).

`rlft.decoding.prompt_ids` and the other names of the former `rlft/decoding.py` are read from `prompting`.
"""


def __getattr__(name: str):  # noqa: ANN202 - PEP 562
    if not name.startswith("_"):
        import importlib

        module = importlib.import_module(f"{__name__}.prompting")  # not `from . import`: that would ask this hook again
        if hasattr(module, name):
            return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
