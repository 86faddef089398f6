"""`rlft check RECIPE [key=value ...]`: a dry run before paying for training.

In order: validate the recipe (as `rlft validate`), load the data (columns, label set), load the model, decode a few
real samples the way training and evaluation do (`rlft.evaluation.held_out.generate_with` with the recipe's `decoding:` section),
and call every reward on them twice: output types and length, None (abstain) count, determinism, latency per call.
For GRPO, the zero-variance forecast: `num_generations` completions per prompt at the recipe's temperature on a
sample of prompts, and the share of groups whose rewards all tie (no gradient). For a judge reward, the projection
of requests, tokens and cost for the whole run (max_steps x completions per step, before cache hits and in-batch
de-duplication, so an upper bound) against its `budget_usd` / `budget_tokens` (per process: see docs/scaling.md).
Last, peak memory (RSS; CUDA max allocated) and one timed forward+backward shaped like the trainer's (after an untimed
one-row warm-up; online algorithms: the loss over the sampled completion length only, GRPO's prompt once per group
with `signal.shared_prefix`), plus sampling timed on the sampler training uses, once per generation round
(`signal.refill_rounds`), giving a rough step time x max_steps (benchmarks/check_forecast.py compares it with a real
run).
A recipe whose prompt reads a gold-derived column (`rlft.data.oracle`) gets a warning line; the exit code is unchanged.

Exit codes: 0 ok; 2 a user error (recipe, data, a reward's params); 1 a reward that raises or returns the wrong
type or length; 4 a judge projection over its budget. The judge is really called (a few requests; cached).
Not here: a training step through the trainer (the estimate times the model, not TRL's bookkeeping).
"""

from __future__ import annotations

import asyncio
import inspect
import resource
import statistics
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import Tensor as torch_Tensor

from rlft.errors import UserError
from rlft.trainers import algorithm_spec

BROKEN_REWARD = 1
OVER_BUDGET = 4


@dataclass
class CheckReport:
    lines: list[str] = field(default_factory=list)
    broken: list[str] = field(default_factory=list)  # reward names that failed
    over_budget: list[str] = field(default_factory=list)
    step_s: float | None = None  # the step forecast (seconds), once timed

    def add(self, text: str) -> None:
        self.lines.append(text)
        print(f"[rlft check] {text}", flush=True)

    @property
    def exit_code(self) -> int:
        return BROKEN_REWARD if self.broken else OVER_BUDGET if self.over_budget else 0


def _call(reward: Any, prompts: list, completions: list, columns: dict[str, list]) -> list:
    out = reward.func(prompts=prompts, completions=completions, **columns)
    return asyncio.run(out) if inspect.isawaitable(out) else out


def _as_completions(prompts: list, texts: list[str]) -> list:
    """The shape TRL hands rewards: assistant messages after chat prompts, plain text after text prompts."""
    return [[{"role": "assistant", "content": t}] if isinstance(p, list) else t for p, t in zip(prompts, texts)]


def _columns(rows: list[dict], repeat: int = 1) -> dict[str, list]:
    keys = [k for k in rows[0] if k != "prompt"] if rows else []
    return {k: [r[k] for r in rows for _ in range(repeat)] for k in keys}


def check_rewards(report: CheckReport, rewards: list, rows: list[dict], texts: list[str]) -> None:
    prompts = [r["prompt"] for r in rows]
    completions = _as_completions(prompts, texts)
    columns = _columns(rows)
    for r in rewards:
        try:
            start = time.perf_counter()
            first = _call(r, prompts, completions, columns)
            latency = time.perf_counter() - start
            second = _call(r, prompts, completions, columns)
        except Exception as exc:  # noqa: BLE001 - any failure of the user's reward is the finding
            report.broken.append(r.name)
            report.add(f"reward '{r.name}': BROKEN: {type(exc).__name__}: {' '.join(str(exc).split())[:240]}")
            continue
        nones = sum(v is None for v in first)
        numbers = [v for v in first if v is not None]
        shown = f"min {min(numbers):.3g} mean {statistics.fmean(numbers):.3g} max {max(numbers):.3g}" if numbers else \
            "no numbers"
        same = "deterministic" if first == second else "NOT deterministic (two calls differ)"
        report.add(f"reward '{r.name}': ok, {len(first)} values ({shown}), {nones} None (abstain), {same}, "
                   f"{1000 * latency / max(len(first), 1):.1f} ms/completion")
        if nones == len(first):
            report.add(f"reward '{r.name}': warning: abstained on every sample (no learning signal from it)")


def forecast_zero_variance(report: CheckReport, recipe: Any, model: Any, tokenizer: Any, rewards: list,
                           rows: list[dict], labels: list[str]) -> tuple[float, float]:
    """Share of GRPO groups whose weighted reward is the same for every generation; returns (seconds/completion of
    this sampler, share of tied groups)."""
    from rlft.decoding.generation import Sampling, generate

    g = int(recipe.trainer.get("num_generations", 8))
    temperature = float(recipe.trainer.get("temperature", 1.0))
    prompts = [r["prompt"] for r in rows]
    start = time.perf_counter()
    texts = generate(model, tokenizer, prompts, recipe.decoding, labels,
                     max_new_tokens=int(recipe.trainer.get("max_completion_length", 256)),
                     sampling=Sampling(temperature=temperature, n=g, seed=recipe.seed))
    per_completion = (time.perf_counter() - start) / max(len(texts), 1)
    repeated = [p for p in prompts for _ in range(g)]
    totals = [0.0] * len(texts)
    try:
        for r in rewards:
            values = _call(r, repeated, _as_completions(repeated, texts), _columns(rows, g))
            totals = [t + r.weight * (v if v is not None else 0.0) for t, v in zip(totals, values)]
    except Exception:  # noqa: BLE001 - already reported by check_rewards
        return per_completion, 0.0
    groups = [totals[i:i + g] for i in range(0, len(totals), g)]
    tied = sum(max(grp) - min(grp) < 1e-9 for grp in groups)
    report.add(f"zero-variance forecast: {tied}/{len(groups)} groups ({100 * tied / max(len(groups), 1):.0f}%) of "
               f"{g} generations at temperature {temperature} have all-equal rewards (no gradient)")
    return per_completion, tied / max(len(groups), 1)


def generation_rounds(recipe: Any, tied_share: float) -> int:
    """Generation rounds per GRPO step: one, plus `signal.refill_rounds` fresh draws when some groups tie
    (drop_zero_std refills the batch; measured on intent_grpo: every step drew twice at a 25-75% tied share)."""
    sig = getattr(recipe, "signal", None)
    if sig is not None and sig.drop_zero_std and sig.refill_rounds and tied_share > 0:
        return 1 + int(sig.refill_rounds)
    return 1


def step_seconds(fwd_bwd_s: float, accumulation: int, gen_s: float, completions: int, rounds: int) -> float:
    """The step forecast: the timed forward+backward per micro-batch times gradient accumulation, plus sampling
    (seconds per completion of the sampler training uses) for every completion of every generation round."""
    return fwd_bwd_s * accumulation + gen_s * completions * rounds


def time_training_sampler(recipe: Any, model: Any, tokenizer: Any, rows: list[dict], labels: list[str]
                          ) -> tuple[float, float] | None:
    """(seconds per completion, mean completion tokens) of GRPO's own sampler with `signal.shared_prefix`
    (`rlft.decoding.shared_prefix.sample_shared_prefix`, as `rlft.grpo.rollout` calls it) on one step's prompts x
    num_generations. It is several times slower per completion than `rlft.decoding.generation.generate` (which the
    zero-variance forecast and evaluation use: 3.1 s vs 0.6 s for 4x8 on intent_grpo), so timing that one instead
    made the forecast wrong. None when training samples some other way (then the forecast's own timing stands)."""
    import torch

    from rlft.decoding.prompting import build_trie, prompt_ids
    from rlft.decoding.shared_prefix import sample_shared_prefix

    sig = getattr(recipe, "signal", None)
    if recipe.algorithm != "grpo" or sig is None or not sig.shared_prefix or not rows or "prompt" not in rows[0]:
        return None
    if recipe.decoding.stop_at_suffix and not recipe.decoding.constrain_labels:
        return None
    g = int(recipe.trainer.get("num_generations", 8))
    n_prompts = max(int(recipe.trainer.get("per_device_train_batch_size", 8)) // max(g, 1), 1)
    trie = build_trie(tokenizer, labels, recipe.decoding) if recipe.decoding.constrain_labels and labels else None
    if trie is not None and trie.lookup_lengths:
        return None
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    ids = [prompt_ids(tokenizer, r["prompt"], recipe.decoding) for r in rows[:n_prompts]]
    full = [x for x in ids for _ in range(g)]
    torch.manual_seed(recipe.seed)
    start = time.perf_counter()
    out = sample_shared_prefix(model, full, max_new_tokens=int(recipe.trainer.get("max_completion_length", 256)),
                               eos_token_ids=[tokenizer.eos_token_id], pad_token_id=pad,
                               temperature=float(recipe.trainer.get("temperature", 1.0)),
                               logits_processor=trie.processor(0, pad) if trie is not None else None)
    seconds = (time.perf_counter() - start) / max(len(out), 1)
    return seconds, statistics.fmean(len(x) for x in out) if out else 0.0


def completions_per_step(recipe: Any, labels: list[str]) -> int:
    t = recipe.trainer
    batch = int(t.get("per_device_train_batch_size", 8)) * int(t.get("gradient_accumulation_steps", 1))
    return algorithm_spec(recipe.algorithm).completions_per_step(batch, labels)


def project_judges(report: CheckReport, recipe: Any, rewards: list, labels: list[str]) -> None:
    steps = int(recipe.trainer.get("max_steps", -1))
    for r in rewards:
        budget = getattr(r.judge, "budget", None)
        if budget is None:
            continue
        u = budget.usage
        if steps < 1:
            report.add(f"judge '{r.name}': no projection (trainer.max_steps is not set)")
            continue
        calls = steps * completions_per_step(recipe, labels)
        if not u.requests:
            report.add(f"judge '{r.name}': {calls} judgments projected; no request reached the endpoint "
                       f"({u.cache_hits} cache hits), so no token or cost estimate")
            continue
        judged = u.requests + u.cache_hits
        tokens = calls * u.total_tokens / u.requests * (u.requests / judged)  # requests per judgment incl. votes
        cost = calls * u.cost_usd / u.requests * (u.requests / judged)
        line = (f"judge '{r.name}': projected for {steps} steps x {calls // steps} completions: {calls} judgments, "
                f"~{tokens:,.0f} tokens, ~${cost:.4f} (upper bound: no cache hits or de-duplication)")
        over = []
        if budget.budget_tokens is not None and tokens > budget.budget_tokens:
            over.append(f"budget_tokens={budget.budget_tokens}")
        if budget.budget_usd is not None and cost > budget.budget_usd:
            over.append(f"budget_usd={budget.budget_usd}")
        if over:
            report.over_budget.append(r.name)
            line += f"; OVER BUDGET ({', '.join(over)}): raise the budget, lower max_steps, or expect an early stop"
        report.add(line)


def _forward_backward(recipe: Any, model: Any, x: torch_Tensor, keep: int | None, groups: int) -> None:
    """One forward+backward shaped like the trainer's: a scalar head for seq_cls; else the loss over the last `keep`
    positions only (TRL's `logits_to_keep`), the prompt run once per group when `signal.shared_prefix` (rlft's
    shared-prefix scoring: the G rows of a group share one prompt forward); `keep` None = every position."""
    import torch

    if algorithm_spec(recipe.algorithm).task == "seq_cls":  # a scalar head: any loss over it costs the same backward
        model(input_ids=x).logits.float().mean().backward()
    elif keep is None:
        model(input_ids=x, labels=x).loss.backward()
    elif groups > 1 and x.size(1) - keep > 1 and x.size(0) % groups == 0:
        split = x.size(1) - keep - 1
        heads = x[::x.size(0) // groups, :split]
        cache = model(input_ids=heads, use_cache=True, logits_to_keep=1).past_key_values
        cache.reorder_cache(torch.arange(groups, device=x.device).repeat_interleave(x.size(0) // groups))
        logits = model(input_ids=x[:, split:], past_key_values=cache, logits_to_keep=keep + 1).logits
        torch.log_softmax(logits.float(), -1).mean().backward()
    else:
        logits = model(input_ids=x, logits_to_keep=keep + 1).logits
        torch.log_softmax(logits.float(), -1).mean().backward()


def time_step(report: CheckReport, recipe: Any, model: Any, tokenizer: Any, rows: list[dict], gen_s: float,
              labels: list[str], rounds: int = 1, completion_tokens: float | None = None) -> float:
    """Time one training-shaped forward+backward (after a one-row warm-up, which is not counted) and report the
    step forecast; returns its seconds. `completion_tokens`: the mean length the sampler produced (else
    max_completion_length, at most 256); `rounds`: generation rounds per step (`generation_rounds`)."""
    import torch

    from rlft.decoding.prompting import prompt_ids

    t = recipe.trainer
    spec = algorithm_spec(recipe.algorithm)
    batch = int(t.get("per_device_train_batch_size", 8))
    completion = int(t.get("max_completion_length", t.get("max_length", 64) or 64))
    ids = [prompt_ids(tokenizer, r["prompt"], recipe.decoding) for r in rows] if rows and "prompt" in rows[0] else []
    keep = max(round(completion_tokens), 1) if completion_tokens else min(completion, 256)
    length = (max(len(x) for x in ids) if ids else 64) + keep
    online = spec.online and spec.task == "causal_lm"  # the loss covers the completion only
    g = int(t.get("num_generations", 8))
    sig = getattr(recipe, "signal", None)
    groups = batch // g if spec.group_relative and sig is not None and sig.shared_prefix and batch % g == 0 else 0
    device = next(model.parameters()).device
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    x = torch.randint(0, len(tokenizer), (batch, length), device=device)
    model.train()
    # Warm-up (not timed): the first call pays one-time allocation and kernel selection (~10% on CPU).
    _forward_backward(recipe, model, x[:1], keep if online else None, 1)
    model.zero_grad(set_to_none=True)
    start = time.perf_counter()
    _forward_backward(recipe, model, x, keep if online else None, groups)
    fwd_bwd = time.perf_counter() - start
    model.zero_grad(set_to_none=True)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    mem = f"peak RSS {rss:,.0f} MiB"
    if device.type == "cuda":
        mem += f", CUDA max allocated {torch.cuda.max_memory_allocated() / 2**20:,.0f} MiB"
    step = step_seconds(fwd_bwd, int(t.get("gradient_accumulation_steps", 1)), gen_s if spec.online else 0.0,
                        completions_per_step(recipe, labels) if spec.online else 0, rounds)
    steps = int(t.get("max_steps", -1))
    total = f", ~{step * steps / 60:.1f} min for {steps} steps" if steps > 0 else ""
    sampled = f" + sampling {rounds} round(s) x {completions_per_step(recipe, labels)} completions" if spec.online \
        else ""
    report.add(f"memory: {mem}; one forward+backward on {batch}x{length} tokens: {fwd_bwd:.2f} s{sampled}; "
               f"step estimate ~{step:.2f} s{total} (rough: TRL's bookkeeping and evaluation not included)")
    report.step_s = step
    return step


def check(recipe_path: str, overrides: list[str] | tuple[str, ...] = (), samples: int = 4,
          forecast_prompts: int = 8) -> CheckReport:
    """Run the dry run and print its report; raises `UserError` for a recipe or data mistake."""
    from rlft.evaluation.held_out import generate_with
    from rlft.run.models import load_model, resolve_device
    from rlft.data.oracle import oracle_note
    from rlft.scoring.for_recipe import load_recipe_rewards
    from rlft.recipe.load import load_recipe

    report = CheckReport()
    recipe = load_recipe(recipe_path, overrides)
    report.add(f"recipe: ok ({recipe.algorithm}, {len(recipe.rewards)} reward(s), model {recipe.model.name})")
    oracle = oracle_note(recipe)
    if oracle:  # a warning, not a failure: the exit code does not change
        report.add(f"recipe: warning: {oracle}")
    from rlft.data.loading import prepare

    data = prepare(recipe.data, recipe.algorithm, recipe.seed)
    report.add(f"data: {len(data.train)} train / {len(data.eval)} held-out rows, columns "
               f"{sorted(data.train.column_names)}, {len(data.labels)} label(s)"
               + (f": {', '.join(data.labels[:8])}{' ...' if len(data.labels) > 8 else ''}" if data.labels else ""))
    rewards = load_recipe_rewards(recipe, data.labels, [data.train, data.eval]) if recipe.rewards else []
    device = resolve_device(recipe.model)
    from rlft.run.threads import use_run_threads

    use_run_threads(device)  # the count training will use, or the forecast times another machine
    spec = algorithm_spec(recipe.algorithm)
    task = spec.task
    start = time.perf_counter()
    model, tokenizer = load_model(recipe.model, recipe.adapter, device, task=task)
    report.add(f"model: loaded on {device} in {time.perf_counter() - start:.1f} s")
    has_prompts = "prompt" in data.train.column_names
    rows = [dict(data.train[i]) for i in range(min(samples, len(data.train)))]
    gen_s, rounds, completion_tokens = 0.0, 1, None
    if rewards and has_prompts and task == "causal_lm":
        if recipe.decoding.constrain_labels and not data.labels:
            raise UserError(f"{recipe.source_file or 'recipe'}: decoding.constrain_labels needs the label set "
                            "(data.labels or a label column in the data)")
        model.eval()
        start = time.perf_counter()
        texts = generate_with(model, tokenizer, [r["prompt"] for r in rows], recipe.decoding, data.labels,
                              max_new_tokens=int(recipe.trainer.get("max_completion_length", 32)))
        gen_s = (time.perf_counter() - start) / max(len(texts), 1)
        report.add(f"samples: {len(texts)} greedy replies, e.g. {texts[0][:80]!r}")
        check_rewards(report, rewards, rows, texts)
        if spec.group_relative and not report.broken:
            pool = [dict(data.train[i]) for i in range(min(forecast_prompts, len(data.train)))]
            gen_s, tied_share = forecast_zero_variance(report, recipe, model, tokenizer, rewards, pool, data.labels)
            rounds = generation_rounds(recipe, tied_share)
            sampler = time_training_sampler(recipe, model, tokenizer, pool, data.labels)
            if sampler is not None:
                gen_s, completion_tokens = sampler
        if not report.broken:
            project_judges(report, recipe, rewards, data.labels)
    time_step(report, recipe, model, tokenizer, rows, gen_s, data.labels, rounds, completion_tokens)
    verdict = {0: "ok", BROKEN_REWARD: f"broken reward(s): {', '.join(report.broken)}",
               OVER_BUDGET: f"judge projection over budget: {', '.join(report.over_budget)}"}[report.exit_code]
    report.add(f"result: {verdict} (exit {report.exit_code})")
    return report


def run_check(args: Any) -> int:
    """`rlft check` entry (argparse namespace with `recipe` and `overrides`)."""
    return check(args.recipe, args.overrides).exit_code
