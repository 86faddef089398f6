"""`rlft eval`: evaluate one or more models on a dataset with a recipe's rewards, and write the report files.

    rlft eval recipes/intent_grpo.yaml --model base --model runs/intent_grpo --out runs/eval
    rlft eval recipes/intent_grpo_bitext.yaml evaluation.batch_size=32 --model base --model runs/bitext --data test.csv
    rlft eval recipes/policy_grpo.yaml --model runs/policy_grpo \
        --model openai:http://127.0.0.1:8000/v1#Qwen2.5-7B-Instruct --api-key-env VLLM_KEY

A model is `base` (the recipe's base model), a PEFT adapter directory (loaded onto the recipe's base model), or
`openai:URL#MODEL` (any OpenAI-compatible endpoint, free decoding; the key is read from the variable named by
`--api-key-env` and never written). Every model answers the same prompts; the recipe's rewards score them exactly
as in training (`rlft.scoring.completions.score`), and labels are parsed with the recipe's intent reward parser when it has
one. Local models decode the way the recipe decodes (its `decoding:` section); with a local base and adapter models,
the KL canary is computed on each adapter's completions. With `--pairwise-judge`, the first two models are
compared by a judge in both A/B orders (win rate, ties, position bias). With `--human-labels FILE`, the recipe's
judge grades human-labelled completions and the report gives agreement, Cohen's kappa and the confusion table.

Writes report.json, report.md, traces.jsonl, traces.html (+ curve PNGs from an adapter run's metrics.json) into
`--out`; prints the headline table. Not here: the metrics (`rlft.report.metrics`) and the files (`rlft.report`).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rlft.errors import UserError
from rlft.evaluation.held_out import generate_with, intent_parser, policy_reward, policy_values, score_run
from rlft.data.oracle import oracle_note
from rlft.report.breakdown import model_breakdown, parse_spec
from rlft.report.files import samples as sample_rows
from rlft.report.files import write_report
from rlft.report.headline import paired_differences, row_outcomes
from rlft.report.metrics import PairJudgment, win_rate
from rlft.report.summary import ModelRun, headline_rows, summarise


class EvalError(UserError):
    """A bad `rlft eval` argument (model reference, data file, judge spec)."""


@dataclass(frozen=True)
class ModelRef:
    """A model to evaluate: kind `base` | `adapter` (path) | `openai` (base_url + model); `name` labels it."""

    kind: str
    name: str
    path: str | None = None
    base_url: str | None = None
    model: str | None = None
    api_key_env: str | None = None

    @property
    def source(self) -> str:
        return {"base": "recipe base model", "adapter": f"adapter {self.path}",
                "openai": f"openai {self.base_url} model {self.model}"}[self.kind]


def parse_model_ref(text: str, api_key_env: str | None = None) -> ModelRef:
    """`base`, an adapter directory, or `openai:URL#MODEL`; a name is `NAME=REF` or derived from the reference."""
    name = None
    if "=" in text and not text.startswith("openai:"):
        name, text = text.split("=", 1)
    if text == "base":
        return ModelRef("base", name or "base")
    if text.startswith("openai:"):
        url, _, model = text[len("openai:"):].partition("#")
        if not url.startswith(("http://", "https://")) or not model:
            raise EvalError(f"--model {text}: expected openai:http(s)://HOST/v1#MODEL_NAME")
        return ModelRef("openai", name or model, base_url=url, model=model, api_key_env=api_key_env)
    path = Path(text)
    if not (path / "adapter_config.json").is_file():
        raise EvalError(f"--model {text}: not 'base', an 'openai:URL#MODEL' endpoint, or an adapter directory "
                        f"(no adapter_config.json in it)")
    return ModelRef("adapter", name or path.name, path=str(path))


def decoding_settings(recipe: Any, labels: list[str]) -> dict[str, Any]:
    """The recipe's `decoding:` section as recorded in the report, checked against the label set — eval decodes with
    that section exactly as training rollouts do (`rlft.evaluation.held_out.generate_with`)."""
    if recipe.decoding.constrain_labels and not labels:
        raise EvalError(f"{recipe.source_file or 'recipe'}: decoding.constrain_labels needs the label set "
                        "(data.labels or a label column in the data)")
    return dataclasses.asdict(recipe.decoding)


def load_eval_rows(recipe: Any, data_file: str | None, max_samples: int | None) -> tuple[Any, list[str]]:
    """The rows to evaluate (conversational `prompt` + the data's columns) and the label set.

    Without `data_file`: the recipe's seeded held-out split. With it: every row of that file, prompts built by the
    recipe's template and system prompt, labels from the recipe (its `data.labels` or its training data).
    """
    from rlft.data.loading import prepare

    cfg = recipe.data
    if max_samples is not None and max_samples < 1:
        raise EvalError(f"--max-samples: expected a number of rows >= 1, got {max_samples}")
    if data_file:
        if not Path(data_file).is_file():
            raise EvalError(f"--data {data_file}: file does not exist")
        cfg = dataclasses.replace(cfg, eval_source=data_file, max_eval_samples=None)
    data = prepare(cfg, "grpo", recipe.seed)
    rows = data.eval
    if max_samples is not None:
        rows = rows.select(range(min(max_samples, len(rows))))
    return bound_prompts(rows, cfg, data_file), list(data.labels)


def bound_prompts(rows: Any, cfg: Any, data_file: str | None) -> Any:
    """Rows whose prompt is too long to ever fit `data.max_prompt_tokens` (more than 16 characters a token; without
    a limit, `MAX_PROMPT_CHARS`): an error naming the file and row for `--data` (one huge line hung generation),
    dropped and counted for the held-out split, as training drops them (`rlft.data.loading.drop_long_prompts`)."""
    from rlft.data.loading import MAX_PROMPT_CHARS

    tokens = cfg.max_prompt_tokens
    limit = 16 * tokens if tokens else MAX_PROMPT_CHARS
    sizes = [len(p) if isinstance(p, str) else sum(len(str(m.get("content", ""))) for m in p) for p in rows["prompt"]]
    long = [i for i, n in enumerate(sizes) if n > limit]
    if not long:
        return rows
    first = long[0]
    bound = (f"more than data.max_prompt_tokens={tokens} tokens can hold (16 characters a token at most)" if tokens
             else f"over the {MAX_PROMPT_CHARS} characters rlft reads for one prompt")
    if data_file:
        raise EvalError(f"{data_file}: row {first + 1}: the prompt is {sizes[first]} characters, {bound}; shorten or "
                        f"drop the row{', or raise data.max_prompt_tokens' if tokens else ''}")
    print(f"[rlft] {cfg.eval_source or cfg.source}: dropped {len(long)} held-out row(s) whose prompt is {bound}",
          flush=True)
    skip = set(long)
    return rows.select([i for i in range(len(rows)) if i not in skip])


def _progress(total: int, desc: str) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="row", file=sys.stderr, disable=None)


def generate_local(model: Any, tokenizer: Any, prompts: list[Any], decoding: Any, labels: list[str],
                   max_new_tokens: int, batch_size: int, desc: str) -> list[str]:
    """`rlft.evaluation.held_out.generate_with` (the one generate loop, the recipe's decoding), with a progress bar."""
    with _progress(len(prompts), desc) as bar:
        return generate_with(model, tokenizer, prompts, decoding, labels, max_new_tokens=max_new_tokens,
                             batch_size=batch_size, progress=bar.update)


def generate_openai(ref: ModelRef, prompts: list[Any], max_new_tokens: int, desc: str,
                    concurrency: int = 8) -> list[str]:
    """Greedy (temperature 0) chat completions from an OpenAI-compatible endpoint; failures become ''."""
    from concurrent.futures import ThreadPoolExecutor

    import openai

    key = "EMPTY"
    if ref.api_key_env:
        key = os.environ.get(ref.api_key_env, "")
        if not key:
            raise EvalError(f"--api-key-env {ref.api_key_env}: the variable is not set")
    client = openai.OpenAI(base_url=ref.base_url, api_key=key, timeout=60.0, max_retries=2)

    def one(prompt: Any) -> str:
        messages = prompt if isinstance(prompt, list) else [{"role": "user", "content": str(prompt)}]
        try:
            reply = client.chat.completions.create(model=ref.model, messages=messages, max_tokens=max_new_tokens,
                                                   temperature=0.0)
        except openai.OpenAIError as exc:
            print(f"[rlft] {ref.name}: request failed ({type(exc).__name__}); scored as an empty reply",
                  file=sys.stderr)
            return ""
        return reply.choices[0].message.content or ""

    out: list[str] = []
    with _progress(len(prompts), desc) as bar, ThreadPoolExecutor(concurrency) as pool:
        for text in pool.map(one, prompts):
            out.append(text)
            bar.update(1)
    return out


LOGITS_BYTES = 256 * 2**20  # fp32 logits one log-prob forward may hold (its memory peak; 64 agent rows at once
                            # held 2 x 5.7 GB: full-vocabulary logits for every prompt position, then their softmax)


def completion_logprobs(model: Any, tokenizer: Any, prompts: list[Any], completions: list[str], decoding: Any,
                        batch_size: int = 16, logits_bytes: int = LOGITS_BYTES) -> list[list[float]]:
    """Per-token log-probs of each completion (after the prefill) given its prompt + prefill ids, teacher-forced
    (prompt ids from `rlft.decoding.prompting.prompt_ids`, as in training).

    Memory: logits are computed only from the first completion position of a forward on (`logits_to_keep`), and a
    forward takes as many of `batch_size` rows as keep those logits under `logits_bytes`."""
    import torch
    from trl.trainer.utils import selective_log_softmax

    from rlft.decoding.prompting import prompt_ids

    prefill = decoding.prefill
    device = next(model.parameters()).device
    vocab = model.get_output_embeddings().weight.shape[0]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    rows: list[tuple[list[int], int, int]] = []  # (prompt + completion ids, prompt length, completion length)
    for p, c in zip(prompts, completions, strict=True):
        head = list(prompt_ids(tokenizer, p, decoding))
        tail = tokenizer(c[len(prefill):] if prefill and c.startswith(prefill) else c,
                         add_special_tokens=False)["input_ids"]
        rows.append((head + tail, len(head), len(tail)))
    out: list[list[float]] = []
    model.eval()
    start = 0
    while start < len(rows):
        stop = start + 1  # one row at least; more while the kept logits stay within the budget
        while stop < min(start + batch_size, len(rows)) and \
                _kept_logits(rows[start:stop + 1]) * vocab * 4 <= logits_bytes:
            stop += 1
        chunk = rows[start:stop]
        width = max(len(s) for s, _, _ in chunk)
        first = min(h for _, h, _ in chunk) - 1  # the first position whose logits are read
        ids = torch.tensor([s + [pad] * (width - len(s)) for s, _, _ in chunk], device=device)
        mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s, _, _ in chunk], device=device)
        with torch.no_grad():
            logits = model(input_ids=ids, attention_mask=mask,
                           logits_to_keep=torch.arange(first, width, device=device)).logits
        for row, (_, h, n) in enumerate(chunk):
            if not n:
                out.append([])
                continue
            span = logits[row, h - 1 - first:h - 1 - first + n].float()
            out.append([float(x) for x in selective_log_softmax(span, ids[row, h:h + n]).tolist()])
        start = stop
    return out


def _kept_logits(chunk: list[tuple[list[int], int, int]]) -> int:
    """Logit vectors one forward of `chunk` keeps: rows x positions from the earliest completion start on."""
    width = max(len(s) for s, _, _ in chunk)
    return len(chunk) * (width - min(h for _, h, _ in chunk) + 1)


def pairwise(judge: Any, prompts: list[Any], a: ModelRun, b: ModelRun, guideline: str) -> dict[str, Any]:
    """Judge a vs b on every prompt in both orders; `judge` is a `rlft.judge.judgment.Judge` in pairwise mode."""
    from rlft.judge.judgment import Sample
    from rlft.judge.prompt_templates import conversation_text

    batch = [Sample(conversation_text(p), ca, guideline, cb)
             for p, ca, cb in zip(prompts, a.completions, b.completions, strict=True)]
    judgments = asyncio.run(judge.judge_many(batch))
    pairs: list[PairJudgment] = []
    positions = {"a": "first", "b": "second"}
    for i, j in enumerate(judgments):
        # Judge votes: one raw label per order, A/B relative to that order; order 0 shows model a first
        for order, label in enumerate(j.votes[:2]):
            first = "a" if order == 0 else "b"
            key = None if label is None else str(label).lower()
            winner = None if key is None else "tie" if key == "tie" else positions.get(key)
            pairs.append(PairJudgment(str(i), first, winner))
    return {"a": a.name, "b": b.name, **win_rate(pairs)}


def build_pairwise_judge(spec: str, api_key_env: str | None) -> Any:
    """`local:MODEL` (in-process transformers judge) or `openai:URL#MODEL`, as a pairwise Judge asking both orders."""
    from rlft.judge.client import LocalChatClient, OpenAIChatClient
    from rlft.judge.judgment import Judge

    if spec.startswith("local:"):
        client = LocalChatClient(spec[len("local:"):], choices=["VERDICT: A", "VERDICT: B", "VERDICT: tie"])
    elif spec.startswith("openai:"):
        url, _, model = spec[len("openai:"):].partition("#")
        if not model:
            raise EvalError(f"--pairwise-judge {spec}: expected openai:URL#MODEL or local:MODEL")
        client = OpenAIChatClient(model, url, api_key_env)
    else:
        raise EvalError(f"--pairwise-judge {spec}: expected openai:URL#MODEL or local:MODEL")
    return Judge(client, "pairwise", order="both", max_tokens=128)


HUMAN_PASS = {"pass", "accurate", "true", "1", "yes", "good", "correct"}
HUMAN_FAIL = {"fail", "inaccurate", "false", "0", "no", "bad", "wrong"}


def judge_calibration(recipe: Any, rewards: Sequence[Any], human_file: str,
                      label_column: str = "human") -> dict[str, Any]:
    """Agreement and Cohen's kappa between the recipe's policy judge and human pass/fail labels.

    `human_file` has the recipe's prompt columns (e.g. utterance, intent), a `completion` column and a `human`
    column (pass/fail, Accurate/Inaccurate, true/false, 1/0). The judge grades each completion as in training;
    rows where it abstains are left out and counted.
    """
    from rlft.judge.quality import on_the_curve
    from rlft.report.metrics import cohen_kappa, passed
    from rlft.scoring.completions import score

    policy = policy_reward(rewards)
    if policy is None:
        raise EvalError(f"--human-labels {human_file}: the recipe has no judge reward (binary or score mode) to check")
    rows, _ = load_eval_rows(recipe, human_file, None)
    for column in ("completion", label_column):
        if column not in rows.column_names:
            raise EvalError(f"--human-labels {human_file}: needs a '{column}' column; has {rows.column_names}")
    human: list[str] = []
    for i, value in enumerate(rows[label_column]):
        key = str(value).strip().lower()
        if key not in HUMAN_PASS | HUMAN_FAIL:
            raise EvalError(f"--human-labels {human_file}: row {i + 1}: '{label_column}' must be pass/fail "
                            f"(or Accurate/Inaccurate, true/false, 1/0), got {value!r}")
        human.append("pass" if key in HUMAN_PASS else "fail")
    columns = {c: list(rows[c]) for c in rows.column_names if c not in ("prompt", "completion")}
    scores = score([policy], list(rows["prompt"]), list(rows["completion"]), columns)
    statuses = scores.extras.get("judge_status")
    verdicts = passed(policy_values(scores.per_reward[policy.name], statuses, policy.inner))
    keep = [i for i, v in enumerate(verdicts) if v is not None]
    out = cohen_kappa(["pass" if verdicts[i] else "fail" for i in keep], [human[i] for i in keep])
    return {"file": human_file, "reward": policy.name, "abstained": len(verdicts) - len(keep), **out,
            "on_the_curve": on_the_curve(out["kappa"])}


def evaluate_models(models: Sequence[ModelRef], recipe: Any, out_dir: str | Path, data_file: str | None = None,
                    max_samples: int | None = None, max_new_tokens: int | None = None,
                    batch_size: int | None = None, pairwise_judge: Any = None, human_labels: str | None = None,
                    guideline: str = "Which reply answers the customer's message better?",
                    title: str | None = None) -> dict[str, Any]:
    """Evaluate `models` on the recipe's eval rows (or `data_file`) and write the report files into `out_dir`.

    Returns {"models": per-model summaries, "paths": {file name: path}, "win_rate": ... (with a judge)}.
    """
    from rlft.run.models import load_model, resolve_device
    from rlft.scoring.for_recipe import load_recipe_rewards

    if not models:
        raise EvalError("rlft eval: give at least one --model (base, an adapter directory or openai:URL#MODEL)")
    names = [m.name for m in models]
    if len(set(names)) != len(names):
        raise EvalError(f"rlft eval: two models share a name {names}; name them NAME=REF")
    rows, labels = load_eval_rows(recipe, data_file, max_samples)
    prompts = list(rows["prompt"])
    columns = {c: list(rows[c]) for c in rows.column_names if c != "prompt"}
    rewards = load_recipe_rewards(recipe, labels, [rows]) if recipe.rewards else []
    parser = intent_parser(rewards)
    max_new = max_new_tokens or recipe.evaluation.max_new_tokens
    batch = batch_size or recipe.evaluation.batch_size
    device = resolve_device(recipe.model)
    no_adapter = dataclasses.replace(recipe.adapter, type="none")

    runs: list[ModelRun] = []
    for ref in models:
        start = time.time()
        if ref.kind == "openai":
            run = ModelRun(ref.name, ref.source, generate_openai(ref, prompts, max_new, ref.name),
                           decoding={"mode": "free (endpoint, temperature 0)", "max_new_tokens": max_new})
        else:
            model, tokenizer = load_model(recipe.model, no_adapter, device)
            settings = decoding_settings(recipe, labels)
            if ref.kind == "adapter":
                from peft import PeftModel

                model = PeftModel.from_pretrained(model, ref.path)
            start = time.time()  # generation speed, without loading
            completions = generate_local(model, tokenizer, prompts, recipe.decoding, labels, max_new, batch,
                                         ref.name)
            run = ModelRun(ref.name, ref.source, completions,
                           decoding={**settings, "greedy": True, "max_new_tokens": max_new})
            run.seconds = time.time() - start
            if ref.kind == "adapter":  # KL canary: the adapter's completions under itself and under its base
                run.logps = completion_logprobs(model, tokenizer, prompts, completions, recipe.decoding, batch)
                with model.disable_adapter():
                    run.base_logps = completion_logprobs(model, tokenizer, prompts, completions, recipe.decoding,
                                                         batch)
            del model
        if run.seconds is None:
            run.seconds = time.time() - start
        score_run(run, rewards, prompts, columns, parser)
        runs.append(run)
    extra: dict[str, Any] = {}
    if pairwise_judge is not None and len(runs) >= 2:
        extra["win_rate"] = pairwise(pairwise_judge, prompts, runs[0], runs[1], guideline)
    if human_labels:
        extra["judge_calibration"] = judge_calibration(recipe, rewards, human_labels)
    log_history = None
    for ref in models:
        metrics_file = Path(ref.path) / "metrics.json" if ref.kind == "adapter" else None
        if metrics_file is not None and metrics_file.is_file():
            log_history = json.loads(metrics_file.read_text(encoding="utf-8")).get("log_history")
            break
    result = write_eval_report(out_dir, recipe, rows, labels, runs, log_history, title=title or f"rlft eval: "
                               f"{', '.join(names)}", data_desc=data_file or f"{recipe.data.source} (eval split)",
                               extra=extra, settings={"max_new_tokens": max_new, "batch_size": batch,
                                                      "device": device})
    return {**result, "runs": runs, **extra}


def interval_groups(recipe: Any, prompts: list[Any], columns: dict[str, list[Any]],
                    gold: list[str] | None) -> list[int] | None:
    """The near-duplicate group of each evaluation row, within its gold label: the report's intervals resample
    whole groups (`rlft.data.splits.row_groups`); None: row by row. A row's text is what the customer wrote: the
    fields of `data.prompt_template` but the label column and `policy` (gold-derived context, shared by a label's
    rows), else its last user message."""
    from rlft.data.shapes import customer_fields
    from rlft.data.splits import row_groups

    fields = [f for f in customer_fields(recipe.data) if f in columns]
    if fields:
        texts = [" ".join(str(columns[f][i]) for f in fields) for i in range(len(prompts))]
    else:
        texts = [p if isinstance(p, str) else str(([m.get("content", "") for m in p if m.get("role") == "user"]
                                                     or [""])[-1]) for p in prompts]
    return row_groups(texts, gold)


def bootstrap_text(groups: list[int] | None, rows: int) -> str:
    """How the report's intervals were drawn (report.json `settings.bootstrap`, the report.md headline)."""
    if groups is None or len(set(groups)) == rows:
        return "percentile, 1000 resamples of rows, seed 0"
    return (f"percentile, 1000 resamples of the {len(set(groups))} groups of near-duplicate rows among the {rows} "
            f"(a group's rows together), seed 0")


def write_eval_report(out_dir: str | Path, recipe: Any, rows: Any, labels: list[str], runs: list[ModelRun],
                      log_history: list[dict] | None = None, *, title: str, data_desc: str,
                      extra: dict[str, Any] | None = None, settings: dict[str, Any] | None = None) -> dict[str, Any]:
    """Summarise scored runs (the base model's run, if any, is the canaries' reference) and write
    report.json/.md, traces.jsonl and traces.html into `out_dir`; used by `rlft eval` and at the end of training."""
    from rlft.rewards.intent import normalize_label

    prompts = list(rows["prompt"])
    label_col = recipe.data.label_column
    gold = [normalize_label(g) for g in rows[label_col]] if label_col in rows.column_names else None
    columns = {c: list(rows[c]) for c in rows.column_names if c != "prompt"}
    base_run = next((r for r in runs if r.source == "recipe base model"), None)
    groups = interval_groups(recipe, prompts, columns, gold)
    summaries = [summarise(r, gold, labels, base_run, groups=groups) for r in runs]
    specs = [parse_spec(c) for c in recipe.data.breakdown_columns]  # checked by rlft.data.loading already
    for summary, run in zip(summaries, runs, strict=True):  # data.breakdown_columns: metrics per column value
        per_value = model_breakdown(specs, columns, run.predicted, gold, run.policy)
        if per_value:
            summary["breakdown"] = per_value
    paired = paired_differences([(r.name, row_outcomes(r.predicted, gold, r.policy)) for r in runs], groups)
    recorded = {"recipe": recipe.source_file or "recipe", "data": data_desc, "rows": len(prompts), "labels": labels,
                "rewards": [r.display_name for r in recipe.rewards], **(settings or {}),
                "bootstrap": bootstrap_text(groups, len(prompts))}
    extra = dict(extra or {})
    if paired:
        extra["paired"] = paired
    oracle = oracle_note(recipe)
    if oracle:  # the prompts showed gold-derived text: the report says so in its header (and report.json)
        extra["oracle"] = oracle
    paths = write_report(out_dir, title, summaries, sample_rows(prompts, gold, runs, columns=columns), recorded,
                         extra, log_history)
    return {"models": summaries, "paths": paths}


def format_table(models: list[dict]) -> str:
    header, rows = headline_rows(models)
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    line = "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))
    body = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join([line, "  ".join("-" * w for w in widths), *body])


def _run(args: argparse.Namespace) -> int:
    from rlft.recipe.load import load_recipe

    recipe = load_recipe(args.recipe, args.overrides)
    refs = [parse_model_ref(m, args.api_key_env) for m in args.model]
    judge = build_pairwise_judge(args.pairwise_judge, args.api_key_env) if args.pairwise_judge else None
    out = args.out or str(Path(recipe.output_dir) / "eval")
    from rlft.run.outputs import folder_problem

    problem = folder_problem(out)
    if problem:
        raise EvalError(f"{'--out' if args.out else 'the report folder (output_dir/eval)'} '{out}' {problem}")
    result = evaluate_models(refs, recipe, out, args.data, args.max_samples, args.max_new_tokens, args.batch_size,
                             judge, args.human_labels)
    print(format_table(result["models"]))
    if "win_rate" in result:
        w = result["win_rate"]
        print(f"win rate {w['a']} vs {w['b']}: {w['win_rate_a']} (ties {w['ties']}, position bias "
              f"{w['position_bias']})")
    if "judge_calibration" in result:
        k = result["judge_calibration"]
        print(f"judge vs human labels ({k['n']} rows, {k['abstained']} abstained): agreement {k['agreement']}, "
              f"Cohen's kappa {k['kappa']}")
        print(k["on_the_curve"])
    print(f"[rlft] report.md, report.json, traces.jsonl and traces.html in {out}")
    return 0


def add_eval_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("eval", help="evaluate models with a recipe's rewards and write a report + trace browser",
                       description="Evaluate one or more models (base, adapter directories, OpenAI-compatible "
                                   "endpoints) on the recipe's held-out split or --data, scored by the recipe's "
                                   "rewards; writes report.json, report.md, traces.jsonl and traces.html.")
    p.add_argument("recipe", help="recipe YAML file")
    p.add_argument("overrides", nargs="*", help="section.key=value overrides, right after the recipe (before the "
                   "options), e.g. evaluation.batch_size=32")
    p.add_argument("--model", action="append", required=True, metavar="[NAME=]REF",
                   help="base | an adapter directory | openai:URL#MODEL (repeatable; the first two are compared)")
    p.add_argument("--data", help="CSV/JSON/JSONL file to evaluate on (default: the recipe's held-out split)")
    p.add_argument("--out", help="report folder (default: OUTPUT_DIR/eval)")
    p.add_argument("--max-samples", type=int, help="evaluate only the first N rows")
    p.add_argument("--max-new-tokens", type=int, help="default: evaluation.max_new_tokens")
    p.add_argument("--batch-size", type=int, help="default: evaluation.batch_size")
    p.add_argument("--api-key-env", help="NAME of the environment variable holding the endpoint's API key")
    p.add_argument("--pairwise-judge", metavar="SPEC",
                   help="compare the first two models with a judge in both orders: openai:URL#MODEL or local:MODEL")
    p.add_argument("--human-labels", metavar="FILE",
                   help="check the recipe's judge against human pass/fail labels (columns: the prompt columns, "
                        "completion, human): agreement, Cohen's kappa, confusion")
    p.set_defaults(func=_run)
    return p
