"""The report files one evaluation writes into its output folder.

* `report.json` — for machines: settings, per-model summaries (headline metrics with intervals, confusion,
  per-intent accuracy, `breakdown` per `data.breakdown_columns` value, reward means with abstention counts,
  canaries), win rate, judge calibration.
* `report.md` — for people: the headline table per model with 95% intervals, rewards, canaries, per intent, per
  column value (`rlft.report.breakdown`); under the title, `extra["oracle"]` (`rlft.data.oracle.oracle_note`) when
  the recipe's prompt read gold-derived text.
* `traces.jsonl` — one record per (sample, model), shaped like inspect_ai sample records:
  `{"id", "epoch", "input", "target", "output": {"model", "completion", "choices"}, "scores": {name: {"value",
  "answer", "explanation"}}, "metadata": {...}}`; an abstained reward has `"value": null`.
* `traces.html` — the static browser (`rlft.report.html`); `curve_<name>.png` when a run's log history is given.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rlft.report import breakdown as breakdown_mod
from rlft.report import curves as curves_mod
from rlft.report import html as html_mod
from rlft.report.summary import ModelRun, decoding_text, disagreements, headline_rows, label_only

REPORT_FILES = ("report.json", "report.md", "traces.jsonl", "traces.html")


def _user_text(prompt: Any) -> str:
    if isinstance(prompt, list):
        users = [m.get("content", "") for m in prompt if isinstance(m, dict) and m.get("role") == "user"]
        return str(users[-1]) if users else ""
    return str(prompt)


def samples(prompts: list[Any], gold: list[str] | None, runs: list[ModelRun], ids: list[str] | None = None,
            columns: dict[str, list[Any]] | None = None) -> list[dict[str, Any]]:
    """Per eval row: input, target, disagreement/failure flags and each model's completion, label, rewards, judge."""
    differ = disagreements(runs)
    out = []
    for i, prompt in enumerate(prompts):
        target = gold[i] if gold is not None else None
        per_model = []
        for r in runs:
            predicted = r.predicted[i] if r.predicted else None
            correct = (predicted is not None and predicted == target) if target is not None and r.predicted else None
            policy = r.policy[i] if r.policy is not None else None
            fail = correct is False or (policy is not None and policy < 0.5)
            per_model.append({
                "name": r.name, "completion": r.completions[i], "predicted": predicted,
                "parse_status": r.parse_status[i] if r.parse_status else None, "correct": correct,
                "rewards": {k: v[i] for k, v in r.rewards.items()}, "policy": policy,
                "judge_status": r.judge_status[i] if r.judge_status else None,
                "rationale": r.judge_rationale[i] if r.judge_rationale else None, "fail": fail})
        out.append({"index": i, "id": ids[i] if ids else str(i), "input": prompt, "target": target,
                    "intent": target, "disagree": differ[i], "fail": any(m["fail"] for m in per_model),
                    "columns": {k: v[i] for k, v in (columns or {}).items()}, "models": per_model})
    return out


def trace_records(sample_rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """inspect_ai-shaped records, one per (sample, model)."""
    records = []
    for s in sample_rows:
        for m in s["models"]:
            scores: dict[str, dict[str, Any]] = {}
            for name, value in m["rewards"].items():
                scores[name] = {"value": value}
            if m["predicted"] is not None or m["parse_status"] is not None:
                scores["intent_match"] = {"value": None if m["correct"] is None else float(m["correct"]),
                                          "answer": m["predicted"], "explanation": m["parse_status"]}
            if m["judge_status"] is not None:
                scores["policy"] = {"value": m["policy"], "answer": m["judge_status"],
                                    "explanation": m["rationale"] or ""}
            records.append({
                "id": f"{s['id']}/{m['name']}", "epoch": 1, "input": s["input"], "target": s["target"] or "",
                "output": {"model": m["name"], "completion": m["completion"],
                           "choices": [{"message": {"role": "assistant", "content": m["completion"]}}]},
                "scores": scores,
                "metadata": {"row": s["index"], "sample_id": s["id"], "model": m["name"],
                             "disagree": s["disagree"], "fail": m["fail"], "columns": s["columns"]}})
    return records


def markdown(title: str, models: list[dict], extra: dict[str, Any],
             intervals: str = "1000 resamples, seed 0") -> str:
    header, rows = headline_rows(models)
    lines = [f"# {title}", ""]
    if extra.get("oracle"):  # rlft.data.oracle: the prompt showed gold-derived text; say so above every figure
        lines += [f"> **Warning:** {extra['oracle']}", ""]
    lines += [f"## Headline (95% bootstrap intervals: {intervals})", "",
              "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    lines += ["", "Abstained rewards are left out of each mean and counted; they are never zeros.", "",
              "## Models and decoding", ""]
    lines += [f"- **{m['name']}**: `{m['source']}`, decoding `{decoding_text(m['decoding'])}`"
              + (f", {m['rows_per_second']} rows/s" if m.get("rows_per_second") else "") for m in models]
    lines += ["", "## Reward-hacking canaries", ""]
    ckeys: list[str] = []
    for m in models:
        ckeys += [k for k in m["canaries"] if k not in ckeys]
    lines += ["| canary | " + " | ".join(m["name"] for m in models) + " |", "|" + "---|" * (len(models) + 1)]
    for k in ckeys:
        cells = []
        for m in models:
            v = m["canaries"].get(k)
            if isinstance(v, dict):
                v = ", ".join(f"{a}={_fmt(b)}" for a, b in v.items())
            cells.append("—" if v is None or v == "" else f"{v:.3f}" if isinstance(v, float) else str(v))
        lines.append(f"| {k} | " + " | ".join(cells) + " |")
    lines += ["", *canary_notes(ckeys, models)]
    if extra.get("paired"):
        first = extra["paired"][0]["against"]
        lines += ["", f"## Paired differences against {first} (the same rows)", "",
                  "| model | metric | rows | difference [95% interval] |", "|---|---|---:|---|"]
        for d in extra["paired"]:
            ci = d["ci"]
            lines.append(f"| {d['model']} | {d['metric']} | {d['rows']} | {d['difference']:+.3f}"
                         + (f" [{ci[0]:+.3f}, {ci[1]:+.3f}]" if ci else "") + " |")
    if extra.get("win_rate"):
        w = extra["win_rate"]
        ci = w.get("ci")
        lines += ["", f"## Win rate: {w['a']} vs {w['b']} (judge, both orders)", "",
                  f"- win rate of {w['a']}: {_fmt(w['win_rate_a'])}"
                  + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else ""),
                  f"- judgments {w['judgments']} on {w['items']} prompts: {w['a']} won {w['wins_a']}, "
                  f"{w['b']} won {w['wins_b']}, ties {w['ties']}, abstained {w['abstained']}",
                  f"- position bias (first answer wins beyond 50%): {_fmt(w['position_bias'])}; order flips "
                  f"{w['order_flips']} of {w['items_in_both_orders']}"]
    if extra.get("judge_calibration"):
        k = extra["judge_calibration"]
        lines += ["", "## Judge vs human labels", "", f"- n {k['n']}, agreement {_fmt(k['agreement'])}, "
                  f"Cohen's kappa {_fmt(k['kappa'])}", f"- confusion (human -> judge): {k['confusion']}"]
        if k.get("on_the_curve"):
            lines.append(f"- {k['on_the_curve']}")
    intents = sorted({i for m in models for i in m.get("per_intent", {})})
    if intents:
        lines += ["", "## Accuracy per intent", "", "| intent | n | " + " | ".join(m["name"] for m in models) + " |",
                  "|" + "---|" * (len(models) + 2)]
        for i in intents:
            n = next(m["per_intent"][i]["n"] for m in models if i in m.get("per_intent", {}))
            cells = [_fmt(m.get("per_intent", {}).get(i, {}).get("accuracy")) for m in models]
            lines.append(f"| {i} | {n} | " + " | ".join(cells) + " |")
    lines += breakdown_mod.markdown_section(models)  # data.breakdown_columns
    lines += ["", "Every sample: `traces.html` (open in a browser; no server) and `traces.jsonl`.", ""]
    return "\n".join(lines)


# What each canary reads, under the table; "—" is a value that is undefined for these rows.
CANARY_NOTES = {
    "mean_words": "mean completion length in words.",
    "repetition_rate_3gram": "share of word 3-grams that repeat an earlier one in the same completion "
                             "(— : no completion has 3 words).",
    "near_duplicate_share": "share of completions equal or nearly equal (word Jaccard >= 0.9) to another of the "
                            "same model: one canned reply for everything.",
    "score_length_correlation": "Pearson r between each reward and completion length per row (a judge that likes "
                                "long answers shows near 1); — where r is undefined: fewer than two scored rows, or "
                                "the reward or the length is the same on every row.",
    "length_drift_vs_base": "mean length / the base's mean length (1 = unchanged; padding shows above 1).",
    "kl_to_base": "mean summed log-ratio to the base on the model's own greedy completions (k1 estimate).",
}


def canary_notes(keys: list[str], models: list[dict]) -> list[str]:
    """One line per canary shown, saying what it reads; for label-only replies, why near-duplicates are expected."""
    notes = [f"- `{k}`: {CANARY_NOTES[k]}" for k in keys if k in CANARY_NOTES]
    label_only_models = [m["name"] for m in models if label_only(m.get("decoding"))]
    if label_only_models and "near_duplicate_share" in keys:
        notes.append(f"- {', '.join(label_only_models)}: every reply is one allowed label (decoding.constrain_labels "
                     "without a free reply), so replies repeat by construction: near_duplicate_share is near 1 and "
                     "length does not vary; these two canaries are for free-text replies.")
    return notes


def _fmt(v: Any) -> str:
    return "—" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)


def write_report(out_dir: str | Path, title: str, models: list[dict], sample_rows: list[dict], settings: dict,
                 extra: dict[str, Any] | None = None, log_history: list[dict] | None = None) -> dict[str, Path]:
    """Write report.json, report.md, traces.jsonl, traces.html (and curve PNGs); return {file name: path}."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    extra = extra or {}
    paths: dict[str, Path] = {}
    curves = curves_mod.series(log_history) if log_history else {}
    svgs = [curves_mod.svg(name, c["key"], c["points"]) for name, c in curves.items()]
    for p in curves_mod.write_pngs(curves, out):
        paths[p.name] = p
    report = {"title": title, "settings": settings, "models": models, **extra,
              "curves": {k: {"key": c["key"], "points": c["points"]} for k, c in curves.items()},
              "files": [*REPORT_FILES, *sorted(n for n in paths if n.endswith(".png"))]}
    paths["report.json"] = out / "report.json"
    paths["report.json"].write_text(json.dumps(report, indent=2, default=str), encoding="utf-8")
    paths["report.md"] = out / "report.md"
    paths["report.md"].write_text(markdown(title, models, extra, settings.get("bootstrap", "1000 resamples, seed 0")),
                                  encoding="utf-8")
    paths["traces.jsonl"] = out / "traces.jsonl"
    with paths["traces.jsonl"].open("w", encoding="utf-8") as f:
        for rec in trace_records(sample_rows):
            f.write(json.dumps(rec, default=str) + "\n")
    paths["traces.html"] = out / "traces.html"
    meta = {k: v for k, v in settings.items() if isinstance(v, (str, int, float))}
    if extra.get("oracle"):
        meta = {"warning": extra["oracle"], **meta}
    paths["traces.html"].write_text(html_mod.render(title, models, sample_rows, svgs, meta), encoding="utf-8")
    return paths
