"""Pins every private transformers / TRL member rlft overrides, calls or reads (one table, `SEAMS`), the
`rollout_func` contract rlft's rollout relies on, and the keys of the batch rlft filters. A transformers or TRL
upgrade that changes any of them fails here, loudly, instead of silently mis-training; a scan of rlft's source fails
when rlft starts using a private upstream member the table does not pin."""

from __future__ import annotations

import ast
import importlib
import inspect
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from datasets import Dataset
from transformers import Trainer
from trl import GRPOConfig, GRPOTrainer, RewardTrainer

from rlft.grpo import batch as grpo_batch
from rlft.grpo import trl_hooks
from tests.conftest import ROOT

REQ = "<required>"
UPSTREAM = ("transformers", "trl")


@dataclass(frozen=True)
class Seam:
    """One private upstream member: `owner` is the class rlft subclasses (the member is looked up there), `use` is
    override | call | attribute, `files` the rlft modules that use it, `signature` its parameters as installed
    (names, kinds and defaults; annotations dropped), None for an attribute."""

    owner: type
    name: str
    use: str
    files: tuple[str, ...]
    signature: str | None = None


HOOKS, PPO_CKPT = "rlft/grpo/trl_hooks.py", "rlft/ppo/checkpoint.py"
SEAMS = (  # exactly as TRL 1.16 / transformers 5.x declare them
    Seam(GRPOTrainer, "_generate_and_score_completions", "override", (HOOKS,), "(self, inputs)"),
    Seam(GRPOTrainer, "_calculate_rewards", "override", (HOOKS,),
         "(self, inputs, prompts, completions, completion_ids_list)"),
    Seam(GRPOTrainer, "_get_per_token_logps_and_entropies", "override", (HOOKS,),
         "(self, model, input_ids, attention_mask, logits_to_keep, batch_size=None, compute_entropy=False, "
         "compute_aux_loss=False, pixel_values=None, image_grid_thw=None, num_images=None, pixel_attention_mask=None, "
         "spatial_shapes=None, num_tiles=None, image_sizes=None, token_type_ids=None, mm_token_type_ids=None, "
         "image_position_ids=None)"),
    Seam(GRPOTrainer, "_generate_single_turn", "call", ("rlft/grpo/rollout.py",),
         "(self, prompt_ids, images, multimodal_fields, num_generations, has_tool_images=False)"),
    Seam(GRPOTrainer, "_metrics", "attribute", (HOOKS,)),
    Seam(GRPOTrainer, "_step", "attribute", (HOOKS,)),
    Seam(GRPOTrainer, "_buffered_inputs", "attribute", (HOOKS,)),
    Seam(Trainer, "_save", "override", ("rlft/ppo/ppo_trainer.py",), "(self, output_dir=None, state_dict=None)"),
    Seam(Trainer, "_save_optimizer_and_scheduler", "call", (PPO_CKPT,), "(self, output_dir)"),
    Seam(Trainer, "_save_rng_state", "call", (PPO_CKPT,), "(self, output_dir)"),
    Seam(Trainer, "_load_from_checkpoint", "call", (PPO_CKPT,), "(self, resume_from_checkpoint, model=None)"),
    Seam(Trainer, "_load_optimizer_and_scheduler", "call", (PPO_CKPT,), "(self, checkpoint)"),
    Seam(Trainer, "_load_rng_state", "call", (PPO_CKPT,), "(self, checkpoint)"),
    Seam(RewardTrainer, "_prepare_dataset", "call", ("rlft/trainers/reward_trainer.py",),
         "(self, dataset, processing_class, args, dataset_name)"),
)
METHODS = [s for s in SEAMS if s.signature is not None]


def _params(fn) -> list[tuple[str, object]]:
    return [(p.name, REQ if p.default is inspect.Parameter.empty else p.default)
            for p in inspect.signature(fn).parameters.values()]


def _plain_signature(fn) -> str:
    """Parameter names, kinds (`/`, `*`, `*args`, `**kwargs`) and defaults, without annotations."""
    sig = inspect.signature(fn)
    return str(sig.replace(parameters=[p.replace(annotation=inspect.Parameter.empty) for p in sig.parameters.values()],
                           return_annotation=inspect.Signature.empty))


@pytest.mark.parametrize("seam", METHODS, ids=lambda s: f"{s.owner.__name__}.{s.name}")
def test_private_method_signature_is_pinned(seam):
    assert _plain_signature(getattr(seam.owner, seam.name)) == seam.signature, \
        f"{seam.owner.__module__} changed {seam.owner.__name__}.{seam.name}, which {', '.join(seam.files)} relies on"


@pytest.mark.parametrize("seam", [s for s in SEAMS if s.signature is None], ids=lambda s: s.name)
def test_private_attribute_is_set_by_its_owner(seam):
    assert seam.name in _upstream_private(seam.owner), f"{seam.owner.__name__} no longer sets self.{seam.name}"


def test_signature_pin_sees_names_kinds_and_defaults():
    def f(self, a, b=None, *, c=1): ...

    def g(self, a, /, b=None, *, c=1, **kw): ...

    assert _plain_signature(f) == "(self, a, b=None, *, c=1)"
    assert _plain_signature(g) == "(self, a, /, b=None, *, c=1, **kw)"


def test_grpo_seams_match_what_trl_hooks_declares():
    grpo = {s.name: s.use for s in SEAMS if s.owner is GRPOTrainer}
    assert {n for n, u in grpo.items() if u == "override"} == set(trl_hooks.OVERRIDDEN)
    assert {n for n, u in grpo.items() if u == "call"} == set(trl_hooks.CALLED)
    assert {n for n, u in grpo.items() if u == "attribute"} == set(trl_hooks.ATTRIBUTES)
    for name in trl_hooks.OVERRIDDEN:
        assert name in vars(trl_hooks.TRLHooks)


# ----- the scan: every private upstream member rlft's source touches is in SEAMS -----

_ASSIGNED = re.compile(r"self\.(_[A-Za-z]\w*)\s*(?::[^=\n]+)?=(?!=)")


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _upstream_private(cls: type) -> set[str]:
    """Private names of the transformers / TRL classes in `cls`'s MRO: methods, class attributes and the
    `self._x = ...` instance attributes their source assigns."""
    names: set[str] = set()
    for klass in cls.__mro__:
        if klass.__module__.split(".")[0] not in UPSTREAM:
            continue
        names |= {n for n in vars(klass) if _private(n)}
        try:
            names |= set(_ASSIGNED.findall(inspect.getsource(klass)))
        except (OSError, TypeError):
            pass
    return names


def scan_private_uses(package_dir: Path) -> dict[str, tuple[str, tuple[str, ...]]]:
    """name -> (use, files) for every private transformers / TRL member the package's source overrides (a `def _x`
    in a class with an upstream base, or in a mixin of one), calls or reads (`self._x` in such a class, `super()._x`,
    `anything._x` anywhere when an upstream class rlft subclasses has `_x`)."""
    top = package_dir.parent
    classes: dict[tuple[str, str], set[str]] = {}  # (module, qualname) of an rlft class -> upstream private names
    everywhere: set[str] = set()
    files = sorted(p for p in package_dir.rglob("*.py") if p.name != "__main__.py")
    for path in files:
        module = importlib.import_module(".".join(path.relative_to(top).with_suffix("").parts))
        for obj in vars(module).values():
            if not (inspect.isclass(obj) and obj.__module__ == module.__name__):
                continue
            names = _upstream_private(obj)
            if not names:
                continue
            everywhere |= names
            for klass in obj.__mro__:  # the class and its rlft mixins (e.g. TRLHooks) act on the upstream object
                if klass.__module__.split(".")[0] not in UPSTREAM and klass is not object:
                    classes.setdefault((klass.__module__, klass.__qualname__), set()).update(names)
    found: dict[str, list] = {}

    def record(name: str, use: str, where: str) -> None:
        rank = ("attribute", "call", "override")
        use0, files0 = found.get(name, ("attribute", set()))
        found[name] = (max(use0, use, key=rank.index), files0 | {where})

    for path in files:
        where = path.relative_to(top).as_posix()
        module = ".".join(path.relative_to(top).with_suffix("").parts)
        tree = ast.parse(path.read_text(encoding="utf-8"))
        calls = {id(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}

        def visit(node: ast.AST, qualname: str, names: set[str]) -> None:
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.ClassDef):
                    inner = f"{qualname}.{child.name}" if qualname else child.name
                    visit(child, inner, classes.get((module, inner), set()))
                    continue
                if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) and child.name in names \
                        and isinstance(node, ast.ClassDef):
                    record(child.name, "override", where)
                if isinstance(child, ast.Attribute) and _private(child.attr):
                    on_self = (isinstance(child.value, ast.Name) and child.value.id == "self") or (
                        isinstance(child.value, ast.Call) and getattr(child.value.func, "id", None) == "super")
                    if child.attr in (names if on_self else everywhere):
                        record(child.attr, "call" if id(child) in calls else "attribute", where)
                visit(child, qualname, names)  # a nested function keeps its class's `self`

        visit(tree, "", set())
    return {name: (use, tuple(sorted(where))) for name, (use, where) in found.items()}


def test_every_private_upstream_member_rlft_touches_is_in_the_table():
    found = scan_private_uses(ROOT / "rlft")
    table = {s.name: (s.use, tuple(sorted(s.files))) for s in SEAMS}
    missing = {n: v for n, v in found.items() if n not in table}
    assert not missing, f"rlft uses private transformers/TRL members no test pins; add them to SEAMS: {missing}"
    assert found == table


def test_the_scan_catches_a_new_override_call_and_read(tmp_path, monkeypatch):
    package = tmp_path / "seamprobe"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "mod.py").write_text(
        "from transformers import Trainer\n\n\n"
        "class Mixin:\n    def _inner_training_loop(self, *a, **k):\n        return self._globalstep_last_logged\n\n\n"
        "class Sneaky(Mixin, Trainer):\n    def _own_helper(self):\n        return super()._get_train_sampler()\n\n\n"
        "def resume(trainer, recipe):\n    trainer._load_best_model()\n    return recipe._provenance\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        found = scan_private_uses(package)
    finally:
        for name in [m for m in sys.modules if m.split(".")[0] == "seamprobe"]:
            del sys.modules[name]
    where = ("seamprobe/mod.py",)
    assert found == {"_inner_training_loop": ("override", where), "_globalstep_last_logged": ("attribute", where),
                     "_get_train_sampler": ("call", where), "_load_best_model": ("call", where)}


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
    assert torch.is_tensor(plain_trainer.reward_weights)
