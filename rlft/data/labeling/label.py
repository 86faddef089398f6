"""Label sampled completions with rewards and package them as KTO rows and DPO pairs.

Flow of `label_dataset`: prompts (`rlft.data.labeling.sources`) -> N samples each (`rlft.data.labeling.sample`,
decoded as the recipe decodes) -> scores from the recipe's rewards via `rlft.scoring.completions.score`, one prompt at
a time -> a record appended to `records.jsonl` (`rlft.data.labeling.record`) -> when every prompt is done,
`kto.jsonl`, `dpo.jsonl`, the UBIAI and Tinker exports and `summary.json` are rebuilt from the records. Because the
outputs are a pure function of the records, an interrupted-then-resumed run writes byte-identical files to an
uninterrupted one.

Labels:
- KTO: a completion is desirable when its score is >= `threshold`. The score is the weighted total of all rewards,
  or one reward's value with `label_reward` (e.g. a judge's 1/0 verdict). A score of None (every reward abstained)
  drops the completion, counted as `abstained`.
- DPO: per prompt, the best-scored completion is `chosen` and the worst `rejected` (first index wins ties
  for best/worst); `pairs="best_vs_rest"` pairs the best with every lower-scored sample instead. A pair is dropped,
  and counted, when the scores are equal (`tie`), closer than `min_margin` (`below_margin`), the chosen score is
  under `chosen_min_score`, the texts are identical (`identical`), or fewer than two completions were scored.

Scoring one prompt at a time keeps the resume window small: at most the prompt in flight is scored again.
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rlft.errors import UserError
from rlft.data.labeling.sources import PromptRow
from rlft.data.labeling.record import RecordLog, atomic_write, dumps
from rlft.data.labeling.sample import SamplingConfig
from rlft.scoring.loader import LoadedReward
from rlft.scoring.completions import score


PAIRINGS = ("best_vs_worst", "best_vs_rest")
KTO_PROMPTS = ("all", "contrast")


@dataclass
class LabelConfig:
    """How scores become labels and pairs (applied when outputs are rebuilt; not part of the resume key)."""

    threshold: float = field(default=0.5, metadata={"help": "KTO: score >= threshold is desirable (label true)."})
    label_reward: str | None = field(default=None, metadata={"help": "KTO: label by this reward's value (e.g. "
                                                                      "a judge verdict) instead of the total."})
    min_margin: float = field(default=0.0, metadata={"help": "DPO: keep a pair only if chosen - rejected >= this "
                                                             "(equal scores are ties and always dropped)."})
    pairs: str = field(default="best_vs_worst", metadata={"help": "DPO: best_vs_worst (one pair per prompt) or "
                                                                  "best_vs_rest (best against every lower sample)."})
    chosen_min_score: float | None = field(default=None, metadata={"help": "DPO: keep a pair only if the chosen "
                                                                           "score is >= this (e.g. only correct "
                                                                           "answers are chosen)."})
    kto_prompts: str = field(default="all", metadata={"help": "KTO: all prompts, or only prompts whose samples "
                                                               "hold both a desirable and an undesirable one "
                                                               "(contrast; the rest are dropped and counted)."})


@dataclass
class LabelResult:
    out_dir: Path
    files: dict[str, Path]
    summary: dict[str, Any]


def _reward_meta(rewards: list[LoadedReward]) -> dict[str, Any]:
    """Versions rewards declare about themselves (a judge's prompt/model fingerprint), for audit."""
    return {r.name: r.fingerprint for r in rewards if r.fingerprint is not None}


def _capturing(rewards: list[LoadedReward], sink: dict[str, list[Any]]) -> list[LoadedReward]:
    """Wrap rewards so what they pass to TRL's `log_extra` (e.g. judge rationales) is kept, per completion."""

    def keep(name: str):
        def log_extra(key: str, values: Any) -> None:
            sink[f"{name}/{key}" if not key.startswith(name) else key] = list(values)
        return log_extra

    wrapped = []
    for r in rewards:
        if r.is_async:
            async def func(prompts, completions, _f=r.func, _k=keep(r.name), **kw):
                kw["log_extra"] = _k
                return await _f(prompts=prompts, completions=completions, **kw)
        else:
            def func(prompts, completions, _f=r.func, _k=keep(r.name), **kw):
                kw["log_extra"] = _k
                return _f(prompts=prompts, completions=completions, **kw)
        wrapped.append(dataclasses.replace(r, func=func))
    return wrapped


def score_prompt(rewards: list[LoadedReward], row: PromptRow, completions: list[str]) -> dict[str, Any]:
    """One record: the prompt, its completions, every reward's value, the total and any rationales."""
    extras: dict[str, list[Any]] = {}
    n = len(completions)
    scores = score(_capturing(rewards, extras), [row.prompt] * n, completions,
                   {k: [v] * n for k, v in row.columns.items()})
    extras = {k: v for k, v in extras.items() if isinstance(v, list) and len(v) == n}
    record = {"key": row.key, "prompt": row.prompt, "columns": row.columns, "completions": completions,
              "scores": scores.per_reward, "total": scores.total}
    if extras:
        record["extras"] = extras
    return record


def _label_score(record: dict[str, Any], i: int, cfg: LabelConfig) -> float | None:
    if cfg.label_reward is None:
        return record["total"][i]
    if cfg.label_reward not in record["scores"]:
        raise UserError(f"label: --label-reward '{cfg.label_reward}' is not one of the rewards "
                        f"({', '.join(record['scores'])})")
    return record["scores"][cfg.label_reward][i]


def _row_meta(record: dict[str, Any], i: int, run_meta: dict[str, Any]) -> dict[str, Any]:
    meta: dict[str, Any] = {"key": record["key"], "sample": i,
                            "scores": {k: v[i] for k, v in record["scores"].items()}, "total": record["total"][i]}
    extras = {k: v[i] for k, v in record.get("extras", {}).items()}
    if extras:
        meta["extras"] = extras
    return {**meta, **run_meta}


def _columns(record: dict[str, Any]) -> dict[str, Any]:
    return dict(record["columns"])


def build_kto(records: list[dict[str, Any]], cfg: LabelConfig, run_meta: dict[str, Any] | None = None
              ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """KTO rows (`prompt, completion, label`, the source columns, `meta`) and a balance report."""
    if cfg.kto_prompts not in KTO_PROMPTS:
        raise UserError(f"kto_prompts must be one of {', '.join(KTO_PROMPTS)}, got {cfg.kto_prompts!r}")
    rows, dropped = [], Counter()
    for rec in records:
        kept = []
        for i, completion in enumerate(rec["completions"]):
            value = _label_score(rec, i, cfg)
            if value is None:
                dropped["abstained"] += 1
                continue
            if not completion.strip():
                dropped["empty_completion"] += 1
                continue
            meta = _row_meta(rec, i, {"label_score": value, "threshold": cfg.threshold,
                                      "label_by": cfg.label_reward or "total", **(run_meta or {})})
            kept.append({"prompt": rec["prompt"], "completion": completion, "label": value >= cfg.threshold,
                         **_columns(rec), "meta": meta})
        if cfg.kto_prompts == "contrast" and len({r["label"] for r in kept}) < 2:
            # every sample of this prompt got the same label: no contrast to learn from (the KTO analogue of a
            # zero-variance GRPO group); all-undesirable prompts otherwise push every label down at once
            dropped["no_contrast"] += len(kept)
            continue
        rows.extend(kept)
    return rows, kto_balance(rows, dropped)


def kto_balance(rows: list[dict[str, Any]], dropped: Counter | dict) -> dict[str, Any]:
    """Desirable/undesirable counts and the KTO weights that balance them (TRL's desirable_weight)."""
    pos = sum(1 for r in rows if r["label"] is True)
    neg = sum(1 for r in rows if r["label"] is False)
    report: dict[str, Any] = {"rows": len(rows), "desirable": pos, "undesirable": neg,
                              "desirable_fraction": round(pos / len(rows), 4) if rows else None,
                              "dropped": dict(sorted(dict(dropped).items()))}
    if pos and neg:
        # KTO paper: keep desirable_weight * n_desirable / (undesirable_weight * n_undesirable) in [1, 4/3];
        # these two (used together) make it 1 by up-weighting the rarer class.
        report["suggested_desirable_weight"] = round(neg / pos, 4) if neg > pos else 1.0
        report["suggested_undesirable_weight"] = round(pos / neg, 4) if pos > neg else 1.0
    return report


def _pair(rec: dict[str, Any], best: tuple[int, float], other: tuple[int, float], cfg: LabelConfig,
          run_meta: dict[str, Any] | None) -> tuple[dict[str, Any] | None, str | None]:
    """One DPO row (chosen = `best`, rejected = `other`) or the reason it is dropped."""
    margin = best[1] - other[1]
    if math.isclose(margin, 0.0, abs_tol=1e-12):
        return None, "tie"
    if margin < cfg.min_margin:
        return None, "below_margin"
    if cfg.chosen_min_score is not None and best[1] < cfg.chosen_min_score:
        return None, "chosen_below_min_score"
    chosen, rejected = rec["completions"][best[0]], rec["completions"][other[0]]
    if chosen.strip() == rejected.strip():
        return None, "identical"
    meta = {"key": rec["key"], "chosen_sample": best[0], "rejected_sample": other[0],
            "chosen_score": best[1], "rejected_score": other[1], "margin": margin, "min_margin": cfg.min_margin,
            "chosen_scores": {k: v[best[0]] for k, v in rec["scores"].items()},
            "rejected_scores": {k: v[other[0]] for k, v in rec["scores"].items()}}
    extras = rec.get("extras", {})
    if extras:
        meta["chosen_extras"] = {k: v[best[0]] for k, v in extras.items()}
        meta["rejected_extras"] = {k: v[other[0]] for k, v in extras.items()}
    return {"prompt": rec["prompt"], "chosen": chosen, "rejected": rejected, **_columns(rec),
            "meta": {**meta, **(run_meta or {})}}, None


def build_dpo(records: list[dict[str, Any]], cfg: LabelConfig, run_meta: dict[str, Any] | None = None
              ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """DPO pairs per prompt (`prompt, chosen, rejected`, source columns, `meta`) and drop counts.

    `best_vs_worst`: one pair, the best and the worst sample. `best_vs_rest`: the best sample against every
    lower-scored one (a rejected text sampled twice is paired once), so a correct answer is also contrasted with
    the plausible wrong ones, not only with the worst.
    """
    if cfg.pairs not in PAIRINGS:
        raise UserError(f"label: pairs must be one of {', '.join(PAIRINGS)}, got {cfg.pairs!r}")
    rows, dropped = [], Counter()
    for rec in records:
        scored = [(i, v) for i, v in enumerate(rec["total"])
                  if v is not None and rec["completions"][i].strip()]
        if len(scored) < len(rec["total"]):
            dropped["samples_unscored_or_empty"] += len(rec["total"]) - len(scored)
        if len(scored) < 2:
            dropped["too_few_scored"] += 1
            continue
        best = max(scored, key=lambda t: (t[1], -t[0]))
        if cfg.pairs == "best_vs_worst":
            others = [min(scored, key=lambda t: (t[1], t[0]))]
        else:
            seen = {rec["completions"][best[0]].strip()}
            others = []
            for item in scored:
                text = rec["completions"][item[0]].strip()
                if item[0] == best[0]:
                    continue
                if text in seen:
                    dropped["duplicate_rejected"] += 1
                    continue
                seen.add(text)
                others.append(item)
        for other in others:
            row, reason = _pair(rec, best, other, cfg, run_meta)
            if row is None:
                dropped[reason] += 1
            else:
                rows.append(row)
    return rows, {"pairs": len(rows), "prompts": len(records), "dropped": dict(sorted(dropped.items()))}


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    atomic_write(path, "".join(dumps(r) + "\n" for r in rows))


def _run_info(model: str, adapter: str | None, sampling: SamplingConfig, rewards: list[LoadedReward],
              reward_specs: list[dict[str, Any]], split: str, source: str, decoding: Any = None) -> dict[str, Any]:
    info = {"model": model, "adapter": adapter, "sampling": sampling.as_dict(),
            "rewards": reward_specs, "reward_versions": _reward_meta(rewards), "data": source, "split": split}
    changed = decoding_changes(decoding) if decoding is not None else {}
    if sampling.prefill:  # --prefill is recorded under sampling
        changed.pop("prefill", None)
    if changed:  # only a recipe that decodes its own way adds the key: plain runs keep their run.json
        info["decoding"] = changed
    return info


def completion_tokens(recipe: Any) -> int:
    """How long `rlft label` lets a completion run unless told (`--max-new-tokens`): the recipe's
    `trainer.max_completion_length`, where its rollouts are cut (a head + looked-up article + reply recipe needs
    ~160), else `SamplingConfig`'s default."""
    value = recipe.trainer.get("max_completion_length")
    if value is None:
        return SamplingConfig.max_new_tokens
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        where = recipe.source_file or "command line"
        raise UserError(f"{where}: trainer.max_completion_length: expected a whole number of tokens >= 1, got "
                        f"{value!r}")
    return value


def label_decoding(recipe_decoding: Any, prefill: str) -> Any:
    """How `rlft label` decodes: the recipe's `decoding:` section (the label constraint, the head-triggered lookup,
    the reply cap and stop: the completions GRPO would sample), with `--prefill` in place of its prefill when given."""
    return dataclasses.replace(recipe_decoding, prefill=prefill) if prefill else recipe_decoding


def decoding_changes(decoding: Any) -> dict[str, Any]:
    """The decoding settings that differ from the plain default (recorded in run.json: resuming with another
    decoding is refused)."""
    default = dataclasses.asdict(type(decoding)())
    return {k: v for k, v in dataclasses.asdict(decoding).items() if v != default[k]}


def label_prompts(load: Callable[[], tuple[Any, Any]], rows: list[PromptRow], rewards: list[LoadedReward],
                  sampling: SamplingConfig, out_dir: str | Path, run_info: dict[str, Any],
                  overwrite: bool = False, progress: bool = True, decoding: Any = None,
                  labels: Sequence[str] = ()) -> RecordLog:
    """Sample and score every prompt not yet in `out_dir/records.jsonl`; returns the complete log.

    `load()` returns (model, tokenizer); it is called only if some prompt still needs sampling, so rerunning a
    finished run loads no model. `decoding` (a `DecodingConfig`; `labels` for its label trie) is how completions
    are decoded; None: plain sampling with `sampling.prefill`.
    """
    from rlft.data.labeling.sample import sample_batch

    log = RecordLog(out_dir, run_info, [r.key for r in rows], overwrite)
    size = sampling.prompts_per_batch
    model = tokenizer = None
    for b in range(0, len(rows), size):
        batch = rows[b:b + size]
        if all(r.key in log.done for r in batch):
            continue
        if model is None:
            model, tokenizer = load()
        # The whole batch is re-sampled (cheap, and its seed reproduces the same text), only new prompts scored.
        samples = sample_batch(model, tokenizer, [r.prompt for r in batch], sampling, b // size, decoding, labels)
        for row, completions in zip(batch, samples, strict=True):
            if row.key not in log.done:
                log.append(score_prompt(rewards, row, completions))
        if progress:
            print(f"[rlft label] {len(log.done)}/{len(rows)} prompts", flush=True)
    return log


def write_outputs(out_dir: str | Path, records: list[dict[str, Any]], cfg: LabelConfig,
                  run_info: dict[str, Any], extra_summary: dict[str, Any] | None = None,
                  max_length: int | None = None, tokenizer: Any = None) -> LabelResult:
    """Rebuild kto/dpo/exports/summary from complete records (pure: same records -> same bytes)."""
    from rlft.data.labeling.formats import to_tinker, to_ubiai
    from rlft.data.labeling.row_checks import check_dpo_rows, check_kto_rows

    out = Path(out_dir)
    run_meta = {"sampling": run_info["sampling"], "model": run_info["model"], "adapter": run_info["adapter"]}
    if run_info.get("reward_versions"):
        run_meta["reward_versions"] = run_info["reward_versions"]
    kto, kto_report = build_kto(records, cfg, run_meta)
    dpo, dpo_report = build_dpo(records, cfg, run_meta)
    kto, kto_checks = check_kto_rows(kto, max_length=max_length, tokenizer=tokenizer, strict=False)
    dpo, dpo_checks = check_dpo_rows(dpo, max_length=max_length, tokenizer=tokenizer)
    kto_report = kto_balance(kto, {**kto_report["dropped"], **kto_checks.dropped})
    kto_report["problems"] = kto_checks.problems
    dpo_report["pairs"] = len(dpo)
    dpo_report["dropped"] = dict(sorted({**dpo_report["dropped"], **dpo_checks.dropped}.items()))
    files = {"records": out / "records.jsonl", "kto": out / "kto.jsonl", "dpo": out / "dpo.jsonl",
             "ubiai": out / "kto_ubiai.jsonl", "tinker": out / "dpo_tinker.jsonl", "summary": out / "summary.json"}
    write_jsonl(files["kto"], kto)
    write_jsonl(files["dpo"], dpo)
    write_jsonl(files["ubiai"], to_ubiai(kto))
    write_jsonl(files["tinker"], to_tinker(dpo))
    summary = {"prompts": len(records), "completions": sum(len(r["completions"]) for r in records),
               "label": dataclasses.asdict(cfg), "kto": kto_report, "dpo": dpo_report, **(extra_summary or {}),
               "run": run_info}
    atomic_write(files["summary"], dumps(summary) + "\n")
    return LabelResult(out, files, summary)


def label_dataset(recipe: Any, out_dir: str | Path, sampling: SamplingConfig | None = None,
                  label_cfg: LabelConfig | None = None, split: str = "all", limit: int | None = None,
                  adapter: str | None = None, max_prompt_tokens: int | None = None,
                  max_length: int | None = None, overwrite: bool = False, progress: bool = True) -> LabelResult:
    """Python API behind `rlft label`: sample, score and write KTO/DPO sets for a recipe's data and rewards.

    `recipe` is a `Recipe` (its model, `adapter.init_from`, data, rewards, decoding and seed are used: completions
    are decoded as the recipe decodes, `label_decoding`). Prompts longer than
    `max_prompt_tokens` are dropped before sampling and counted; `max_length` (prompt + completion tokens) is
    checked on the written rows.
    """
    from rlft.data.labeling.sources import load_prompts
    from rlft.data.holdout import recipe_select_fraction
    from rlft.data.labeling.sample import load_sampler, prompt_lengths, sampling_adapter
    from rlft.scoring.loader import load_rewards, with_data_labels

    sampling = sampling or SamplingConfig(seed=recipe.seed, max_new_tokens=completion_tokens(recipe))
    label_cfg = label_cfg or LabelConfig()
    sampling.check()
    if not recipe.rewards:
        raise UserError("label: the recipe has no rewards; add a rewards: list or pass --reward NAME")
    rows, labels = load_prompts(recipe.data, recipe.seed, split, limit,
                                recipe_select_fraction(recipe.evaluation, recipe.algorithm), recipe.algorithm)
    specs = with_data_labels(recipe.rewards, labels)
    rewards = load_rewards(specs)
    for r in rewards:
        missing = [c for c in r.columns if c not in rows[0].columns]
        if missing:
            raise UserError(f"{recipe.data.source}: reward '{r.name}' needs column(s) {', '.join(missing)}; "
                            f"columns are {', '.join(rows[0].columns)} (map yours with data.columns)")
    if label_cfg.label_reward and label_cfg.label_reward not in [r.name for r in rewards]:
        raise UserError(f"label: --label-reward '{label_cfg.label_reward}' is not one of the rewards "
                        f"({', '.join(r.name for r in rewards)})")
    adapter = sampling_adapter(recipe, adapter)
    tokenizer = None
    if max_prompt_tokens or max_length:
        from rlft.run.models import load_tokenizer, resolve_model_path

        tokenizer = load_tokenizer(resolve_model_path(recipe.model), recipe.model)
    dropped_long = 0
    if max_prompt_tokens:
        lengths = prompt_lengths(tokenizer, [r.prompt for r in rows])
        kept = [r for r, n in zip(rows, lengths, strict=True) if n <= max_prompt_tokens]
        dropped_long = len(rows) - len(kept)
        rows = kept
        if not rows:
            raise UserError(f"label: every prompt is longer than --max-prompt-tokens {max_prompt_tokens}")
    reward_specs = [dataclasses.asdict(s) for s in specs]
    decoding = label_decoding(recipe.decoding, sampling.prefill)
    info = _run_info(recipe.model.name, adapter, sampling, rewards, reward_specs, split, recipe.data.source, decoding)
    log = label_prompts(lambda: load_sampler(recipe, adapter), rows, rewards, sampling, out_dir, info, overwrite,
                        progress, decoding, labels)
    extra = {"dropped_prompts": {"prompt_too_long": dropped_long}} if max_prompt_tokens else {}
    return write_outputs(out_dir, log.records, label_cfg, info, extra, max_length, tokenizer)
