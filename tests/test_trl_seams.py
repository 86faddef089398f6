"""Pins every private TRL `GRPOTrainer` member rlft overrides, calls or reads (`rlft.grpo.trl_hooks`), the
`rollout_func` contract rlft's rollout relies on, and the keys of the batch rlft filters. A TRL upgrade that
changes any of them fails here, loudly, instead of silently mis-training."""

from __future__ import annotations

import inspect
import re

import pytest
import torch
from datasets import Dataset
from trl import GRPOConfig, GRPOTrainer

from rlft.grpo import SignalGRPOTrainer
from rlft.grpo import batch as grpo_batch
from rlft.grpo import trl_hooks
from tests.conftest import ROOT

REQ = "<required>"
PINNED = {  # name -> [(parameter, default)] exactly as TRL 1.16 declares them
    "_generate_and_score_completions": [("self", REQ), ("inputs", REQ)],
    "_calculate_rewards": [("self", REQ), ("inputs", REQ), ("prompts", REQ), ("completions", REQ),
                           ("completion_ids_list", REQ)],
    "_get_per_token_logps_and_entropies": [
        ("self", REQ), ("model", REQ), ("input_ids", REQ), ("attention_mask", REQ), ("logits_to_keep", REQ),
        ("batch_size", None), ("compute_entropy", False), ("compute_aux_loss", False), ("pixel_values", None),
        ("image_grid_thw", None), ("num_images", None), ("pixel_attention_mask", None), ("spatial_shapes", None),
        ("num_tiles", None), ("image_sizes", None), ("token_type_ids", None), ("mm_token_type_ids", None),
        ("image_position_ids", None)],
    "_generate_single_turn": [("self", REQ), ("prompt_ids", REQ), ("images", REQ), ("multimodal_fields", REQ),
                              ("num_generations", REQ), ("has_tool_images", False)],
}


def _params(fn) -> list[tuple[str, object]]:
    return [(p.name, REQ if p.default is inspect.Parameter.empty else p.default)
            for p in inspect.signature(fn).parameters.values()]


def test_every_private_method_rlft_overrides_or_calls_is_pinned():
    assert set(PINNED) == set(trl_hooks.OVERRIDDEN) | set(trl_hooks.CALLED)
    for name, expected in PINNED.items():
        assert _params(getattr(GRPOTrainer, name)) == expected, f"TRL changed GRPOTrainer.{name}"


def test_overrides_live_only_in_trl_hooks():
    overridden = {name for cls in SignalGRPOTrainer.__mro__ if cls.__module__.startswith("rlft.")
                  for name in vars(cls) if name.startswith("_") and not name.startswith("__")
                  and hasattr(GRPOTrainer, name)}
    assert overridden == set(trl_hooks.OVERRIDDEN)
    for name in trl_hooks.OVERRIDDEN:
        assert name in vars(trl_hooks.TRLHooks)


def test_public_seams_rlft_uses_exist():
    init = dict(_params(GRPOTrainer.__init__))
    assert init["rollout_func"] is None and init["processing_class"] is None
    assert _params(GRPOTrainer.train)[:2] == [("self", REQ), ("resume_from_checkpoint", None)]
    source = inspect.getsource(GRPOTrainer._generate)
    assert "self.rollout_func(prompts, self)" in source
    assert 'required_keys = {"prompt_ids", "completion_ids", "logprobs"}' in source
    assert 'extra_fields.pop("env_mask", None)' in source  # env_mask becomes tool_mask


def _rows(n: int) -> Dataset:
    return Dataset.from_list([{"prompt": [{"role": "user", "content": f"question {i}"}]} for i in range(n)])


@pytest.fixture(scope="module")
def plain_trainer(tiny_model_dir, tmp_path_factory):
    """Plain TRL GRPOTrainer with a stub rollout_func that masks the last token of every completion."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)

    def stub_rollout(prompts, trainer):
        ids = [tok.apply_chat_template(p, add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"]
               for p in prompts]
        completions = [[100 + i % 3, 200, tok.eos_token_id] for i in range(len(prompts))]
        return {"prompt_ids": ids, "completion_ids": completions, "logprobs": None,
                "env_mask": [[1, 1, 0] for _ in prompts]}

    def reward(completions, **kwargs):
        return [float(i % 2) for i in range(len(completions))]

    args = GRPOConfig(output_dir=str(tmp_path_factory.mktemp("seams")), per_device_train_batch_size=4,
                      num_generations=2, max_completion_length=4, beta=0.1, num_iterations=2, report_to=[],
                      save_strategy="no", use_cpu=True, seed=0)
    trainer = GRPOTrainer(model=AutoModelForCausalLM.from_pretrained(tiny_model_dir), reward_funcs=[reward],
                          args=args, train_dataset=_rows(4), processing_class=tok, rollout_func=stub_rollout)
    trainer.model.train()
    return trainer


def test_rollout_func_contract_env_mask_becomes_tool_mask_and_logprobs_none_is_neutral(plain_trainer):
    batch = plain_trainer._generate_and_score_completions([dict(_rows(2)[i]) for i in (0, 0, 1, 1)])
    unknown = set(batch) - grpo_batch.BATCH_KEYS
    assert not unknown, f"new batch fields rlft cannot filter: {unknown}"
    assert {"old_per_token_logps", "ref_per_token_logps", "tool_mask"} <= set(batch)
    assert "sampling_per_token_logps" not in batch and "importance_sampling_ratio" not in batch
    assert batch["tool_mask"].tolist() == [[1, 1, 0]] * 4
    assert int(batch["num_items_in_batch"]) == 8  # completion_mask * tool_mask: TRL leaves env_mask 0 out
    assert batch["completion_ids"][:, 0].tolist() == [100, 101, 102, 100]
    source = inspect.getsource(GRPOTrainer._compute_loss)
    assert 'completion_mask * inputs["tool_mask"]' in source  # ... and out of the loss


def test_private_attributes_rlft_reads_are_pinned(plain_trainer):
    assert set(plain_trainer._metrics) == {"train", "eval"}
    plain_trainer._metrics["train"]["probe"].append(1.0)  # a defaultdict(list) per mode
    assert plain_trainer._metrics["train"].pop("probe") == [1.0]
    assert plain_trainer._step == 0 and plain_trainer._buffered_inputs is None
    for public in ("processing_class", "reward_weights", "eos_token_ids", "generation_config", "generation_kwargs",
                   "use_vllm", "max_completion_length", "temperature", "top_k", "top_p", "num_generations",
                   "num_generations_eval", "model_wrapped", "accelerator", "callback_handler"):
        assert hasattr(plain_trainer, public), public
    # every `self._x` / `trainer._x` in rlft/grpo that TRL defines is one of the pinned names
    used = set()
    for path in (ROOT / "rlft" / "grpo").glob("*.py"):
        used |= set(re.findall(r"(?:self|trainer)\.(_[a-z]\w*)", path.read_text()))
    from_trl = {n for n in used if hasattr(plain_trainer, n) or hasattr(GRPOTrainer, n)}
    pinned = set(trl_hooks.OVERRIDDEN) | set(trl_hooks.CALLED) | set(trl_hooks.ATTRIBUTES)
    assert from_trl <= pinned, f"unpinned TRL private members used by rlft: {from_trl - pinned}"
    assert torch.is_tensor(plain_trainer.reward_weights)
