"""Deep recipe checks that need imports but no model: files exist, rewards resolve and accept their params,
trainer keys are real options of TRL's config class, and the combination makes sense for the algorithm."""

from __future__ import annotations

import dataclasses
import importlib.util
import math
import numbers
from pathlib import Path

from rlft.recipe.sections import LabelPGConfig, Recipe, RFTConfig, SignalConfig
from rlft.data.checks import check_label_text, check_sample, shown_label
from rlft.data.reading import check_source
from rlft.run.distributed import check_launch
from rlft.errors import RecipeError, UserError
from rlft.run.models import check_model_source, resolve_device
from rlft.run.outputs import check_output_path, folder_problem
from rlft.scoring.loader import check_params, resolve_target
from rlft.trainers.args import build_args, check_trainer_keys
from rlft.trainers import algorithm_spec, algorithms_where

TRAIN_CLOCKS = ("wall", "cpu")  # the keys of rlft.run.time_budget.CLOCKS (importing it would load transformers)


def _where(recipe: Recipe, key: str) -> str:
    prov = getattr(recipe, "_provenance", None)
    default = recipe.source_file or "recipe"
    return prov.origin(key, default) if prov is not None else default


def validate(recipe: Recipe) -> None:
    """Raise a one-line `UserError` for the first problem found; return None when the recipe is usable."""
    check_model_source(recipe.model, _where(recipe, "model.name"))
    check_source(recipe.data.source, _where(recipe, "data.source"))
    if recipe.data.eval_source:
        check_source(recipe.data.eval_source, _where(recipe, "data.eval_source"), "data.eval_source")
    if not 0.0 < recipe.data.eval_fraction < 1.0:
        raise RecipeError(f"{_where(recipe, 'data.eval_fraction')}: data.eval_fraction: expected a number between "
                          f"0 and 1 (exclusive), got {recipe.data.eval_fraction}")
    check_output_path(recipe.output_dir, f"{_where(recipe, 'output_dir')}")
    problem = folder_problem(recipe.output_dir)  # under a file, not writable: before any model loads
    _check(not problem, recipe, "output_dir", f"'{recipe.output_dir}' {problem}")
    if recipe.model.cache_dir:
        problem = folder_problem(recipe.model.cache_dir)
        _check(not problem, recipe, "model.cache_dir", f"'{recipe.model.cache_dir}' {problem}")
    if not 0.0 <= recipe.max_train_minutes < float("inf"):
        raise RecipeError(f"{_where(recipe, 'max_train_minutes')}: max_train_minutes: expected minutes >= 0 "
                          f"(0: no time limit), got {recipe.max_train_minutes}")
    _check(in_range(recipe.seed, SEED_RANGE), recipe, "seed", f"expected an integer in {SEED_RANGE}, got "
           f"{_shown(recipe.seed)}")
    if recipe.max_train_clock not in TRAIN_CLOCKS:
        raise RecipeError(f"{_where(recipe, 'max_train_clock')}: max_train_clock: expected one of "
                          f"{', '.join(TRAIN_CLOCKS)}, got {recipe.max_train_clock!r}")
    _validate_data(recipe)
    _validate_adapter(recipe)
    _validate_rewards(recipe)
    for key, value in recipe.trainer.items():  # one key at a time, so the error names the file that set it
        check_trainer_keys(dataclasses.replace(recipe, trainer={key: value}), _where(recipe, f"trainer.{key}"))
    _validate_trainer_values(recipe)
    algorithm_spec(recipe.algorithm).validate(recipe, _where)  # the algorithm's own rules (KTO's batch size)
    _validate_sections(recipe)
    warn_inert_keys(recipe)
    if (line := selection_on_reported_rows(recipe)) is not None:
        print(f"[rlft] warning: {line}", flush=True)
    check_launch(recipe, where=_where(recipe, "trainer"))
    check_sample(recipe, _where)
    # The checks below import transformers and TRL (seconds to tens of seconds): every check above stays cheap.
    from rlft.run.checkpoints import resolve_resume

    resolve_resume(recipe.trainer.get("resume_from_checkpoint"), recipe.output_dir,
                   _where(recipe, "trainer.resume_from_checkpoint"))
    build_args(recipe, resolve_device(recipe.model), where=_where(recipe, "trainer"))
    _validate_target_modules(recipe)


def _validate_target_modules(recipe: Recipe) -> None:
    """A list of `adapter.target_modules` must name layers of the model: checked on the model's skeleton (built on
    the meta device from a local folder's config.json, no weights read); other models are checked when loaded."""
    a, m = recipe.adapter, recipe.model
    path = Path(m.name).expanduser()
    if a.type == "none" or a.init_from or isinstance(a.target_modules, str) or m.gguf_file \
            or not (path / "config.json").is_file():
        return
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSequenceClassification

    try:
        config = AutoConfig.from_pretrained(path, trust_remote_code=m.trust_remote_code)
        with torch.device("meta"):
            model_cls = AutoModelForSequenceClassification if algorithm_spec(recipe.algorithm).task == "seq_cls" \
                else AutoModelForCausalLM
            skeleton = model_cls.from_config(config, trust_remote_code=m.trust_remote_code)
    except Exception:  # noqa: BLE001 - an unusual model: loading it says what is wrong
        return
    names = {name.rsplit(".", 1)[-1] for name, _ in skeleton.named_modules() if name}
    missing = [t for t in a.target_modules if t not in names and not any(n.endswith(t) for n in names)]
    if missing:
        linear = sorted({name.rsplit(".", 1)[-1] for name, module in skeleton.named_modules()
                         if isinstance(module, torch.nn.Linear) and name})
        _check(False, recipe, "adapter.target_modules", f"{', '.join(missing)} is not a layer of {m.name}; its "
               f"linear layers are {', '.join(linear)} (or use 'all-linear')")


# trainer key -> the values it accepts: "> x" / ">= x", or an interval "[a, b)" (brackets: a bound that is allowed).
# A key the algorithm's config class lacks never gets here (check_trainer_keys refused it). Every numeric trainer
# value, listed here or not, must also be finite: NaN/inf trained silently (a NaN adapter, clipping switched off).
TRAINER_RANGES = {
    "learning_rate": ">= 0.0", "per_device_train_batch_size": ">= 1", "per_device_eval_batch_size": ">= 1",
    "gradient_accumulation_steps": ">= 1", "temperature": "> 0.0", "num_train_epochs": "> 0.0",
    "num_generations": ">= 1", "max_completion_length": ">= 1", "save_steps": "> 0.0", "logging_steps": "> 0.0",
    "eval_steps": "> 0", "warmup_steps": ">= 0", "weight_decay": ">= 0", "max_grad_norm": ">= 0",
    "adam_beta1": "[0, 1)", "adam_beta2": "[0, 1)", "adam_epsilon": "> 0", "seed": "[0, 4294967295]",
    "data_seed": "[0, 4294967295]", "label_smoothing_factor": "[0, 1)",
    # sampling (GRPO, PPO)
    "top_p": "(0, 1]", "top_k": ">= 0", "min_p": "[0, 1]", "repetition_penalty": "> 0",
    # GRPO
    "beta": ">= 0", "epsilon": "> 0", "epsilon_high": "> 0", "num_iterations": ">= 1", "steps_per_generation": ">= 1",
    "generation_batch_size": ">= 1", "num_generations_eval": ">= 1", "vllm_gpu_memory_utilization": "(0, 1]",
    # DPO, KTO, reward model
    "max_length": ">= 1", "max_prompt_length": ">= 1", "label_smoothing": "[0, 0.5]", "desirable_weight": ">= 0",
    "undesirable_weight": ">= 0",
    # rlft's PPO
    "cliprange": "> 0", "cliprange_value": "> 0", "gamma": "[0, 1]", "lam": "[0, 1]", "vf_coef": ">= 0",
    "ppo_epochs": ">= 1", "num_mini_batches": ">= 1", "init_kl_coef": ">= 0", "kl_horizon": ">= 1",
}
# An algorithm that needs a stricter range than the table's declares it (`Algorithm.trainer_ranges`): DPO's and
# KTO's beta scales the whole loss (0: none).
MAX_STEPS_LIMIT = 10**9
SEED_RANGE = "[0, 4294967295]"  # numpy's seed range (transformers' set_seed)


def in_range(value: float, allowed: str) -> bool:
    """`value` is finite and inside `allowed` ("> 0", ">= 1", "[0, 1)", "(0, 1]"...)."""
    if not _finite(value):
        return False
    if allowed.startswith(">"):
        low = float(allowed.lstrip(">="))
        return value >= low if allowed.startswith(">=") else value > low
    low, high = (float(x) for x in allowed[1:-1].split(","))
    return (value >= low if allowed[0] == "[" else value > low) and (value <= high if allowed[-1] == "]"
                                                                      else value < high)


def _range_text(allowed: str) -> str:
    return f"a number {allowed}" if allowed.startswith(">") else f"a number in {allowed}"


def _shown(value: object) -> str:
    """A value for an error message (an integer too long for Python to print is described)."""
    if isinstance(value, int) and abs(value).bit_length() > 300:
        return f"a {int(abs(value).bit_length() * math.log10(2)) + 1}-digit number"
    return str(value)


def _finite(value: float) -> bool:
    return isinstance(value, int) or math.isfinite(value)  # math.isfinite overflows on a huge int


def _is_number(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _validate_trainer_values(recipe: Recipe) -> None:
    ranges = {**TRAINER_RANGES, **algorithm_spec(recipe.algorithm).trainer_ranges}
    for key, value in recipe.trainer.items():
        if key == "max_steps" and _is_number(value):
            _check(value == -1 or 1 <= value <= MAX_STEPS_LIMIT, recipe, "trainer.max_steps",
                   f"expected -1 (use num_train_epochs) or 1..{MAX_STEPS_LIMIT}, got {_shown(value)}")
        elif key in ranges and _is_number(value):
            _check(in_range(value, ranges[key]), recipe, f"trainer.{key}",
                   f"expected {_range_text(ranges[key])}, got {_shown(value)}")
        elif _is_number(value):
            _check(_finite(value), recipe, f"trainer.{key}", f"expected a finite number, got {value}")
        elif isinstance(value, (list, tuple)) and any(_is_number(v) and not _finite(v) for v in value):
            _check(False, recipe, f"trainer.{key}", f"expected finite numbers, got {list(value)}")


def _validate_data(recipe: Recipe) -> None:
    d = recipe.data
    for key in ("max_train_samples", "max_eval_samples", "max_prompt_tokens"):
        value = getattr(d, key)
        _check(value is None or value >= 1, recipe, f"data.{key}", f"expected >= 1 or null, got {value}")
    _check(d.demo_size >= 2, recipe, "data.demo_size", f"expected >= 2, got {d.demo_size}")
    problem = template_problem(d.prompt_template)
    _check(not problem, recipe, "data.prompt_template", f"{d.prompt_template!r}: {problem}")
    for label in d.labels or []:
        problem = check_label_text(label, recipe.decoding)
        _check(not problem, recipe, "data.labels", f"label {shown_label(label)} {problem}")


def template_problem(template: str) -> str | None:
    """Why `data.prompt_template` cannot build prompts with `str.format(**row)` (an unclosed brace, a positional
    field, a bad conversion or format spec), or None; checked with a text value for every field."""
    import string

    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    except ValueError as exc:
        return f"not a valid template ({exc}); fields are {{column}}, a literal brace is written {{{{ or }}}}"
    for field in fields:
        name = field.split(".")[0].split("[")[0]
        if not name.isidentifier():
            return f"field {{{field}}} is not a column name; fields are {{column}}, a literal brace is written " \
                "{{ or }}"
    try:
        template.format(**{f.split(".")[0].split("[")[0]: "text" for f in fields})
    except (ValueError, IndexError, KeyError, AttributeError, TypeError) as exc:
        return f"cannot be filled with text columns ({type(exc).__name__}: {exc})"
    return None


def _validate_adapter(recipe: Recipe) -> None:
    a, where = recipe.adapter, _where(recipe, "adapter")
    if a.type == "none":
        return
    if a.init_from:
        path = Path(a.init_from).expanduser()
        _check(path.exists(), recipe, "adapter.init_from", f"'{a.init_from}' does not exist")
        _check((path / "adapter_config.json").is_file(), recipe, "adapter.init_from", f"'{a.init_from}' is not a "
               f"PEFT adapter folder (no adapter_config.json); give the folder of a finished run or a checkpoint")
    modules = [a.target_modules] if isinstance(a.target_modules, str) else list(a.target_modules)
    _check(bool(modules) and all(isinstance(m, str) and m.strip() for m in modules), recipe, "adapter.target_modules",
           f"expected 'all-linear' or a list of module names, got {a.target_modules!r}")
    if a.r <= 0 or a.alpha <= 0:
        raise RecipeError(f"{where}: adapter.r and adapter.alpha must be positive, got r={a.r}, alpha={a.alpha}")
    if not 0.0 <= a.dropout < 1.0:
        raise RecipeError(f"{where}: adapter.dropout: expected 0 <= dropout < 1, got {a.dropout}")
    if a.type == "qlora" and importlib.util.find_spec("bitsandbytes") is None:
        raise RecipeError(f"{where}: adapter.type: qlora needs bitsandbytes (pip install bitsandbytes)")


def _validate_rewards(recipe: Recipe) -> None:
    if algorithm_spec(recipe.algorithm).needs_rewards and not recipe.rewards:
        raise RecipeError(f"{_where(recipe, 'rewards')}: rewards: algorithm '{recipe.algorithm}' needs at least "
                          f"one reward (e.g. - name: intent)")
    for i, spec in enumerate(recipe.rewards):
        if _is_number(spec.weight) and not _finite(spec.weight):  # NaN: loss 0 at every step, nothing learned
            raise RecipeError(f"{_where(recipe, f'rewards.{i}.weight')}: rewards[{i}].weight: expected a finite "
                              f"number, got {spec.weight}")
        if spec.timeout is not None and not (_is_number(spec.timeout) and in_range(spec.timeout, "> 0")):
            raise RecipeError(f"{_where(recipe, f'rewards.{i}.timeout')}: rewards[{i}].timeout: expected seconds > 0 "
                              f"(null: no limit), got {_shown(spec.timeout)}")
        where = f"{_where(recipe, f'rewards.{i}.name')}: rewards[{i}]"
        params_where = f"{_where(recipe, f'rewards.{i}.params')}: rewards[{i}]"
        try:
            target = resolve_target(spec.name, where)
            check_params(target, spec, params_where)
            _check_patterns(spec.params, params_where)
            hook = getattr(target, "validate_params", None)  # a reward class's own value checks (the judge's)
            if isinstance(target, type) and callable(hook):
                try:
                    hook(dict(spec.params))
                except (TypeError, ValueError) as exc:
                    raise RecipeError(f"{params_where}.params: {exc}") from None
        except UserError:
            raise
        except Exception as exc:  # a reward module that fails to import is the user's file: one line
            raise RecipeError(f"{where}: loading '{spec.name}' failed: {type(exc).__name__}: {exc}") from None


def _check_patterns(params: dict, where: str) -> None:
    """Regular expressions in reward params compile now, not at the first training step."""
    import regex

    for key, value in params.items():
        if isinstance(value, str) and (key == "pattern" or key.endswith(("_pattern", "_regex"))):
            try:
                regex.compile(value)
            except regex.error as exc:
                raise RecipeError(f"{where}.params.{key}: invalid regular expression {value!r}: {exc}") from None


def _check(ok: bool, recipe: Recipe, key: str, message: str) -> None:
    if not ok:
        raise RecipeError(f"{_where(recipe, key)}: {key}: {message}")


def _owners(section: str) -> str:
    """The algorithms a section of their own belongs to ("grpo" for signal:), for "only applies to" messages."""
    return " or ".join(algorithms_where(lambda a: section in a.sections))


def _validate_sections(recipe: Recipe) -> None:
    sig, ev, pg = recipe.signal, recipe.evaluation, recipe.label_pg
    algo = algorithm_spec(recipe.algorithm)
    if sig.segment_credit:
        _validate_segment_credit(recipe)
    if sig.exact_head:
        _validate_exact_head(recipe)
    if sig.teacher_lookup:
        _validate_teacher(recipe)
    if sig.reply_hints:
        _validate_hints(recipe)
    if sig != SignalConfig():
        _check("signal" in algo.sections, recipe, "signal",
               f"only applies to algorithm {_owners('signal')} (this recipe is {recipe.algorithm}); decoding "
               f"settings live in decoding:")
    _check(_finite(sig.success_threshold), recipe, "signal.success_threshold", f"expected a finite number, got "
           f"{sig.success_threshold}")
    _check(sig.refill_rounds >= 0, recipe, "signal.refill_rounds", f"expected >= 0, got {sig.refill_rounds}")
    _check(not sig.refill_rounds or sig.drop_zero_std, recipe, "signal.refill_rounds", "needs signal.drop_zero_std: true")
    _check(sig.warn_window >= 1, recipe, "signal.warn_window", f"expected >= 1, got {sig.warn_window}")
    _check(0.0 <= sig.warn_zero_std <= 1.0, recipe, "signal.warn_zero_std", f"expected 0..1, got {sig.warn_zero_std}")
    _check(sig.baseline in ("group", "prompt_ema"), recipe, "signal.baseline",
           f"expected group or prompt_ema, got {sig.baseline!r}")
    _check(0.0 < sig.baseline_ema <= 1.0, recipe, "signal.baseline_ema",
           f"expected 0 < x <= 1, got {sig.baseline_ema}")
    _check(not sig.adaptive or sig.refill_rounds, recipe, "signal.adaptive", "needs signal.refill_rounds >= 1 (it "
           "chooses the refill prompts)")
    _check(sig.adaptive_pool >= 1, recipe, "signal.adaptive_pool", f"expected >= 1, got {sig.adaptive_pool}")
    _check(0.0 <= sig.retest_solved <= 1.0, recipe, "signal.retest_solved", f"expected 0..1, got {sig.retest_solved}")
    _check(not sig.decision_tokens_only or recipe.decoding.constrain_labels, recipe, "signal.decision_tokens_only",
           "needs decoding.constrain_labels: true")
    _check(not (recipe.decoding.constrain_labels and recipe.decoding.stop_at_suffix), recipe,
           "decoding.stop_at_suffix", "has no effect with decoding.constrain_labels (the constraint already ends "
           "every reply after the suffix); set one of them")
    for key in ("max_samples", "max_new_tokens", "batch_size"):
        value = getattr(ev, key)
        _check(value >= 1, recipe, f"evaluation.{key}", f"expected >= 1, got {value}")
    _check(ev.every_steps >= 0, recipe, "evaluation.every_steps", f"expected >= 0 (0: off), got {ev.every_steps}")
    _check(not ev.keep_best or ev.every_steps, recipe, "evaluation.keep_best", "needs evaluation.every_steps > 0")
    _check(_finite(ev.select_fraction) and 0.0 <= ev.select_fraction < 1.0, recipe, "evaluation.select_fraction",
           f"expected a share of the training rows in [0, 1) (0: off), got {ev.select_fraction}")
    _check(_finite(recipe.adapter.ema_decay) and 0.0 <= recipe.adapter.ema_decay < 1.0, recipe, "adapter.ema_decay",
           f"expected a decay in [0, 1) (0: off), got {recipe.adapter.ema_decay}")
    if ev.keep_best:
        from rlft.errors import did_you_mean
        from rlft.evaluation.held_out import EVAL_METRICS

        known = [*EVAL_METRICS, *(f"reward/{spec.display_name}" for spec in recipe.rewards)]
        _check(ev.best_metric in known, recipe, "evaluation.best_metric", f"unknown metric {ev.best_metric!r}"
               f"{did_you_mean(ev.best_metric, known)}; evaluation reports {', '.join(known)}")
    _check(algo.lookup or not recipe.decoding.lookup, recipe, "decoding.lookup",
           f"not with algorithm {recipe.algorithm} (its rollouts would train on the looked-up text); use grpo")
    _check(not (recipe.decoding.lookup and recipe.trainer.get("use_vllm")), recipe, "decoding.lookup",
           "not with trainer.use_vllm (vLLM picks the looked-up text's tokens itself, so they cannot be kept out "
           "of the loss; serve with vLLM, train with the transformers sampler)")
    _check(algo.analysis or not recipe.decoding.analysis_max_tokens, recipe,
           "decoding.analysis_max_tokens", f"does not apply to algorithm {recipe.algorithm} (it scores each label "
           f"right after the prompt; an analysis block would have to be sampled: use grpo)")
    if pg != LabelPGConfig():
        _check("label_pg" in algo.sections or bool(sig.exact_head), recipe, "label_pg",
               f"only applies to algorithm {_owners('label_pg')} or signal.exact_head (this recipe is "
               f"{recipe.algorithm})")
    if recipe.rft != RFTConfig():
        _check("rft" in algo.sections, recipe, "rft", f"only applies to algorithm {_owners('rft')} (this recipe is "
               f"{recipe.algorithm})")
    _check(pg.maxrl_t >= 1, recipe, "label_pg.maxrl_t", f"expected >= 1, got {pg.maxrl_t}")
    _check(0.0 <= pg.free_weight <= 1.0, recipe, "label_pg.free_weight", f"expected 0..1, got {pg.free_weight}")
    _check(pg.validity_paths >= 0, recipe, "label_pg.validity_paths", f"expected >= 0 (0: off), got "
           f"{pg.validity_paths}")
    _check(pg.validity_weight >= 0.0, recipe, "label_pg.validity_weight", f"expected >= 0, got {pg.validity_weight}")


# Keys that only act together with another setting: (key, "does nothing here" test, the setting it needs).
INERT_KEYS = (
    ("label_pg.validity_weight", lambda r: not r.label_pg.validity_paths, "label_pg.validity_paths > 0 (validity "
     "is off)"),
    ("label_pg.free_weight", lambda r: r.label_pg.normaliser != "both", "label_pg.normaliser: both"),
    ("label_pg.maxrl_t", lambda r: r.label_pg.weighting != "maxrl", "label_pg.weighting: maxrl"),
    ("signal.exact_head_weight", lambda r: not r.signal.exact_head, "signal.exact_head"),
    ("signal.exact_head_extra_prompts", lambda r: not r.signal.exact_head, "signal.exact_head"),
    ("signal.baseline_ema", lambda r: r.signal.baseline != "prompt_ema", "signal.baseline: prompt_ema"),
    ("signal.teacher_lookup_template", lambda r: not r.signal.teacher_lookup, "signal.teacher_lookup"),
    ("signal.teacher_adapter", lambda r: not r.signal.teacher_lookup, "signal.teacher_lookup"),
    ("signal.teacher_coef", lambda r: not r.signal.teacher_lookup, "signal.teacher_lookup"),
    ("signal.teacher_clip", lambda r: not r.signal.teacher_lookup, "signal.teacher_lookup"),
    ("signal.hint_share", lambda r: not r.signal.reply_hints, "signal.reply_hints"),
    ("signal.adaptive_pool", lambda r: not r.signal.adaptive, "signal.adaptive: true"),
    ("signal.retest_solved", lambda r: not r.signal.adaptive, "signal.adaptive: true"),
    ("decoding.reply_max_tokens", lambda r: not r.decoding.free_reply, "decoding.free_reply: true"),
    ("decoding.reply_min_tokens", lambda r: not r.decoding.free_reply, "decoding.free_reply: true"),
    ("decoding.lookup_template", lambda r: not r.decoding.lookup, "decoding.lookup"),
    ("decoding.analysis_close", lambda r: not r.decoding.analysis_max_tokens, "decoding.analysis_max_tokens > 0"),
    ("evaluation.select_fraction", lambda r: not r.evaluation.every_steps or algorithm_spec(r.algorithm).task ==
     "seq_cls",
     "evaluation.every_steps > 0 and an algorithm that generates (not reward_model)"),
)


def selection_on_reported_rows(recipe: Recipe) -> str | None:
    """The warning line for `evaluation.keep_best` choosing output_dir/best on the held-out rows the final report
    is measured on (selection on the test set), or None."""
    ev = recipe.evaluation
    if not (ev.keep_best and ev.every_steps) or ev.select_fraction:
        return None
    return (f"{_where(recipe, 'evaluation.keep_best')}: evaluation.keep_best: chooses output_dir/best on the "
            f"held-out rows the final report is measured on (selection on the test set: its figure is optimistic); "
            f"set evaluation.select_fraction, e.g. 0.1, to choose on rows held back from training")


def inert_keys(recipe: Recipe) -> list[str]:
    """One warning per key the recipe file or the command line sets that does nothing in it (it needs another
    setting it lacks); keys inherited through `extends:` are the parent's business."""
    prov = getattr(recipe, "_provenance", None)
    out = []
    for key, inert, needs in INERT_KEYS:
        section, name = key.split(".")
        value = getattr(getattr(recipe, section), name)
        default = getattr(type(getattr(recipe, section))(), name)
        is_set = value != default or (prov is not None and key in prov)  # a file's section records no keys
        where = _where(recipe, key)
        inherited = where != "command line" and recipe.source_file and \
            Path(where).resolve() != Path(recipe.source_file).resolve()  # a parent's key (extends:) is no typo here
        if is_set and not inherited and inert(recipe):
            out.append(f"{where}: {key}: has no effect without {needs}")
    return out


def warn_inert_keys(recipe: Recipe) -> None:
    for line in inert_keys(recipe):
        print(f"[rlft] warning: {line}", flush=True)


def _check_head_then_reply(recipe: Recipe, key: str, algorithm_note: str, why: str) -> None:
    """A GRPO `signal.` option that works on a constrained head followed by a free reply."""
    _check("signal" in algorithm_spec(recipe.algorithm).sections, recipe, key, f"only applies to algorithm "
           f"{_owners('signal')} (this recipe is {recipe.algorithm}{algorithm_note})")
    _check(recipe.decoding.constrain_labels and recipe.decoding.free_reply, recipe, key, "needs "
           f"decoding.constrain_labels: true and decoding.free_reply: true ({why})")


def _validate_teacher(recipe: Recipe) -> None:
    sig, dec, key = recipe.signal, recipe.decoding, "signal.teacher_lookup"
    _check_head_then_reply(recipe, key, "", "the article goes after the head, before the reply")
    _check(not dec.lookup, recipe, key, "the student must not see a looked-up article: unset decoding.lookup (the "
           "teacher's article replaces it)")
    _check(not dec.analysis_max_tokens, recipe, key, "does not support decoding.analysis_max_tokens")
    _check("{article}" in sig.teacher_lookup_template, recipe, "signal.teacher_lookup_template",
           f"expected text containing {{article}}, got {sig.teacher_lookup_template!r}")
    _check(_finite(sig.teacher_coef) and sig.teacher_coef > 0, recipe, "signal.teacher_coef",
           f"expected a finite number > 0, got {sig.teacher_coef}")
    _check(_finite(sig.teacher_clip) and sig.teacher_clip > 0, recipe, "signal.teacher_clip",
           f"expected a finite number > 0, got {sig.teacher_clip}")
    if sig.teacher_adapter:
        _check((Path(sig.teacher_adapter) / "adapter_config.json").is_file(), recipe, "signal.teacher_adapter",
               f"expected a LoRA adapter folder (with adapter_config.json), got {sig.teacher_adapter!r}")


def _validate_hints(recipe: Recipe) -> None:
    sig, key = recipe.signal, "signal.reply_hints"
    _check_head_then_reply(recipe, key, "", "a hint goes after the reply the policy ended")
    for i, hint in enumerate(sig.reply_hints):
        _check(isinstance(hint, str) and hint.strip() != "", recipe, f"{key}[{i}]",
               f"expected a non-empty text, got {hint!r}")
    _check(_finite(sig.hint_share) and 0 < sig.hint_share <= 1, recipe, "signal.hint_share",
           f"expected a number in (0, 1], got {sig.hint_share}")
    _check(not recipe.trainer.get("use_vllm"), recipe, key, "not with trainer.use_vllm (the hinted continuation is "
           "sampled by the training model, and vLLM's log-probs would not cover it)")


def _validate_exact_head(recipe: Recipe) -> None:
    sig, dec, key = recipe.signal, recipe.decoding, "signal.exact_head"
    _check_head_then_reply(recipe, key, "; algorithm label_pg is the exact objective alone",
                           "the head is one allowed label, then the reply")
    _check(not dec.analysis_max_tokens, recipe, key, "does not support decoding.analysis_max_tokens (the exact "
           "objective scores each label right after the prompt; an analysis block would have to be sampled)")
    _check(sig.exact_head_weight > 0, recipe, "signal.exact_head_weight", f"expected > 0, got "
           f"{sig.exact_head_weight}")
    _check(sig.exact_head_extra_prompts >= 0, recipe, "signal.exact_head_extra_prompts", f"expected >= 0, got "
           f"{sig.exact_head_extra_prompts}")
    from rlft.grpo.exact_head import head_reward_indices

    try:
        head_reward_indices(sig.exact_head, [spec.display_name for spec in recipe.rewards])
    except ValueError as exc:
        raise RecipeError(f"{_where(recipe, key)}: {key}: {exc}") from None


def _validate_segment_credit(recipe: Recipe) -> None:
    sig, key = recipe.signal, "signal.segment_credit"
    _check("signal" in algorithm_spec(recipe.algorithm).sections, recipe, key, f"only applies to algorithm "
           f"{_owners('signal')} (this recipe is {recipe.algorithm})")
    _check(recipe.decoding.free_reply, recipe, key, "needs decoding.free_reply: true (the head ends where the "
           "constrained label + label_suffix ends)")
    _check(sig.baseline == "group", recipe, key, "needs signal.baseline: group (prompt_ema has one baseline per "
           "completion, not per reward)")
    from rlft.grpo.segments import reward_segments

    try:
        reward_segments(sig.segment_credit, [spec.display_name for spec in recipe.rewards])
    except ValueError as exc:
        raise RecipeError(f"{_where(recipe, key)}: {exc}") from None
