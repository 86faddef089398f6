"""RLEF intent accuracy on an honest split: every arm at the same CPU-time budget, same model, LoRA and prompt.

    python benchmarks/intent_rlef.py --arm label_pg --minutes 15      # one arm (arms can run as parallel processes)
    python benchmarks/intent_rlef.py --arm tfidf                       # the non-neural baseline (seconds)
    python benchmarks/intent_rlef.py --table                           # print the table of every arm run so far

Data: the grouped Bitext split (`benchmarks/data/bitext_grouped_{train,eval}.csv`, made by `rlft.data.splits`:
near-duplicate utterances stay on one side; TF-IDF scores ~1.00 on a random split of the CSV and well below
on this one). Held-out rows: `--eval-per-intent` per intent drawn from the grouped eval file with `--seed`; the
first half (the same number per intent) is scored during training, all of them at the end.

Arms (model SmolLM2-135M-Instruct, LoRA r16/alpha32 on all linear layers, fp32 on CPU):
- label_pg:   rlft's exact label-space policy gradient, `recipes/intent_label_pg.yaml` (pure RL: the only
              training signal is the `intent` reward, queried for every allowed label).
- grpo:       rlft's sampled GRPO, `recipes/intent_grpo_bitext_sampled.yaml` (prefill, label-constrained rollouts,
              zero-variance groups dropped and refilled).
- trl:        plain TRL GRPO with TRL's defaults (lr 1e-6, 8 generations, no prefill, no constraint), the system
              prompt listing every intent, rlft's `intent` reward; `max_completion_length` 32.
- supervised: a cross-entropy LoRA fine-tune on the gold labels (`benchmarks/supervised_reference.py`): a
              SUPERVISED REFERENCE, not RL.
- tfidf:      TF-IDF (word 1-2 + char 2-5) + logistic regression on the training CSV (scikit-learn).

label_pg, grpo and supervised share one system prompt, set here whatever the recipes say: the short SYSTEM, or
with --labels-in-prompt SYSTEM + the list of allowed intents (what recipes/intent_label_pg.yaml ships).

Each neural arm is evaluated with greedy decoding after the `<intent>` prefill, both with the label constraint and
without it (free: what `generate`, `transformers serve` or vLLM without a grammar give). The budget is process CPU
time (one torch thread by default), evaluation excluded, so arms can run side by side. Writes `benchmarks/results/intent_rlef/<arm>.json`; `--table` prints every arm.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = ROOT / "benchmarks" / "data"
RESULTS = ROOT / "benchmarks" / "results" / "intent_rlef"
from benchmarks.supervised_reference import read_csv  # noqa: E402 - the grouped CSVs' reader, shared
SYSTEM = "Classify the customer's message into one intent. Reply as <intent>label</intent>."
LABEL_LIST = " Allowed intents: {labels}."  # appended by --labels-in-prompt (the trl arm always has it)
RECIPES = {"label_pg": ROOT / "recipes" / "intent_label_pg.yaml",
           "grpo": ROOT / "recipes" / "intent_grpo_bitext_sampled.yaml"}
TARGETS = (0.5, 0.8, 0.9, 0.95)


def eval_rows(per_intent: int, seed: int) -> list[dict[str, str]]:
    """`per_intent` held-out rows of each intent, ordered so the first half holds `per_intent // 2` of each."""
    rng = random.Random(seed)
    by_intent: dict[str, list[dict[str, str]]] = {}
    for r in read_csv(DATA / "bitext_grouped_eval.csv"):
        by_intent.setdefault(r["intent"], []).append(r)
    picked = {k: rng.sample(v, min(per_intent, len(v))) for k, v in sorted(by_intent.items())}
    half = per_intent // 2
    first = [r for v in picked.values() for r in v[:half]]
    second = [r for v in picked.values() for r in v[half:]]
    rng.shuffle(first)
    rng.shuffle(second)
    return first + second


def write_csv(rows: list[dict[str, str]], path: Path) -> Path:
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["utterance", "intent"])
        writer.writeheader()
        writer.writerows(rows)
    return path


def crossing_minutes(curve: list[dict]) -> dict[str, dict[str, float | None]]:
    """Training minutes until held-out accuracy first reaches each target, per decoding."""
    out: dict[str, dict[str, float | None]] = {}
    for decoding in ("constrained", "free"):
        out[decoding] = {}
        for target in TARGETS:
            hit = next((p for p in curve if p[decoding]["intent_accuracy"] >= target), None)
            out[decoding][f"{int(target * 100)}%"] = round(hit["train_seconds"] / 60, 1) if hit else None
    return out


def clock() -> float:
    """Process CPU seconds (all threads): the budget every arm gets, whatever else shares the machine."""
    return time.process_time()


class TimedEval:
    """Evaluates both decodings every `every_s` CPU seconds of training (evaluation excluded), stops at `budget_s`.

    The clock is the process's CPU time, not the wall clock: arms run side by side (or beside other jobs) still get
    the same compute. With one torch thread the two agree on a quiet machine.
    """

    def __init__(self, eval_ds: Any, labels: list[str], budget_s: float, every_s: float, during_rows: int,
                 max_new_tokens: int = 24, batch_size: int = 50):
        self.eval_ds, self.labels = eval_ds, labels
        self.budget_s, self.every_s, self.during_rows = budget_s, every_s, during_rows
        self.max_new_tokens, self.batch_size = max_new_tokens, batch_size
        self.curve: list[dict[str, Any]] = []
        self.partial: Path | None = None  # the curve so far is written here after every evaluation
        self.base_eval = True
        self.final: dict[str, Any] = {}
        self.eval_s = 0.0
        self.start: float | None = None
        self.next_at = every_s
        self.wall_cap_s: float | None = None  # also stop (then run the final evaluation) after this much wall time
        self.wall0 = time.time()
        self.stopped_by = "cpu budget"

    def train_seconds(self) -> float:
        return 0.0 if self.start is None else clock() - self.start - self.eval_s

    def evaluate(self, model: Any, tok: Any, step: int, rows: int, per_intent: bool = False) -> dict[str, Any]:
        from rlft.recipe.sections import DecodingConfig
        from rlft.evaluation.held_out import evaluate

        t0, c0 = time.time(), clock()
        point: dict[str, Any] = {"step": step, "train_seconds": round(self.train_seconds(), 1), "rows": rows}
        for name, decoding in (("constrained", DecodingConfig(prefill="<intent>", constrain_labels=True)),
                               ("free", DecodingConfig(prefill="<intent>"))):
            report = evaluate(model, tok, self.eval_ds, labels=self.labels, max_samples=rows,
                              max_new_tokens=self.max_new_tokens, batch_size=self.batch_size, keep_samples=0,
                              decoding=decoding)
            point[name] = {k: round(v, 4) for k, v in report.metrics.items()}
            if per_intent:
                point[name]["per_intent"] = {k: round(v, 3) for k, v in report.per_intent.items()}
        point["eval_seconds"] = round(time.time() - t0, 1)
        self.eval_s += clock() - c0
        if self.partial is not None:
            self.partial.write_text(json.dumps({"curve": self.curve + [point]}, indent=1))
        print(f"[intent_rlef] step {step} t={point['train_seconds'] / 60:.1f} min constrained="
              f"{point['constrained']['intent_accuracy']:.3f} free={point['free']['intent_accuracy']:.3f} "
              f"(free format {point['free']['format_rate']:.3f}, eval {point['eval_seconds']:.0f}s)", flush=True)
        return point

    def callback(self) -> Any:
        from transformers import TrainerCallback

        harness = self

        class _Callback(TrainerCallback):
            def on_train_begin(self, args, state, control, model=None, processing_class=None, **kw):
                if harness.base_eval:
                    harness.curve.append(harness.evaluate(model, processing_class, 0, harness.during_rows))
                harness.start, harness.eval_s = clock(), 0.0  # the budget starts after the base evaluation

            def on_step_end(self, args, state, control, model=None, processing_class=None, **kw):
                spent = harness.train_seconds()
                done = spent >= harness.budget_s
                if not done and harness.wall_cap_s and time.time() - harness.wall0 >= harness.wall_cap_s:
                    done, harness.stopped_by = True, "wall-clock cap (--max-wall-minutes)"
                if done or spent >= harness.next_at:
                    harness.next_at = spent + harness.every_s
                    harness.curve.append(harness.evaluate(model, processing_class, state.global_step,
                                                          harness.during_rows))
                if done:
                    control.should_training_stop = True

            def on_train_end(self, args, state, control, model=None, processing_class=None, **kw):
                harness.final = harness.evaluate(model, processing_class, state.global_step, len(harness.eval_ds),
                                                 per_intent=True)

        return _Callback()


def system_prompt_template(with_labels: bool) -> str:
    """The arms' shared system prompt as a recipe writes it (rlft fills in `{labels}`)."""
    return SYSTEM + (LABEL_LIST if with_labels else "")


def system_prompt(labels: list[str], with_labels: bool) -> str:
    """The arms' shared system prompt, optionally listing every allowed intent (as rlft's `{labels}` does)."""
    return system_prompt_template(with_labels).replace("{labels}", ", ".join(labels))


def trl_recipe(tmp: Path, labels: list[str]) -> Path:
    """Plain TRL GRPO: TRL's defaults, the label list in the prompt, no decoding aids."""
    path = tmp / "trl_grpo.yaml"
    path.write_text(json.dumps({
        "algorithm": "grpo", "output_dir": str(tmp / "trl_out"), "seed": 0,
        "model": {"name": "smollm2-135m-instruct"}, "adapter": {"type": "lora", "r": 16, "alpha": 32},
        "data": {"system_prompt": system_prompt(labels, True), "label_column": "intent"},
        "rewards": [{"name": "intent"}],
        "trainer": {"max_steps": 100000, "max_completion_length": 32, "logging_steps": 5},
    }))
    return path


def run_rl_arm(arm: str, ns: argparse.Namespace) -> dict[str, Any]:
    import torch

    import rlft
    from rlft.data.loading import prepare

    torch.set_num_threads(ns.threads)
    rows = eval_rows(ns.eval_per_intent, ns.seed)
    labels = sorted({r["intent"] for r in rows})
    tmp = Path(tempfile.mkdtemp(prefix=f"intent_rlef_{arm}_"))
    eval_csv = write_csv(rows, tmp / "eval.csv")
    recipe_path = trl_recipe(tmp, labels) if arm == "trl" else RECIPES[arm]
    overrides = [f"data.source={DATA / 'bitext_grouped_train.csv'}", f"data.eval_source={eval_csv}",
                 f"output_dir={tmp / 'out'}", "evaluation.before=false", "evaluation.after=false",
                 "evaluation.every_steps=0", "evaluation.keep_best=false", "trainer.max_steps=100000",
                 *([] if arm == "trl" else [f'data.system_prompt="{system_prompt_template(ns.labels_in_prompt)}"']),
                 *ns.override]
    recipe = rlft.load_recipe(recipe_path, overrides)
    data = prepare(recipe.data, recipe.algorithm, recipe.seed)
    harness = TimedEval(data.eval, labels, ns.minutes * 60, ns.eval_minutes * 60, ns.eval_per_intent // 2 * 27)
    harness.partial = RESULTS / f"{arm}{ns.tag}.partial.json"
    harness.wall_cap_s = ns.max_wall_minutes * 60 if ns.max_wall_minutes else None
    harness.base_eval = not ns.no_base_eval
    wall0 = time.time()
    result = rlft.train(recipe, callbacks=[harness.callback()])
    return {"arm": arm, "recipe": str(recipe_path.relative_to(ROOT)) if arm != "trl" else "plain TRL (in code)",
            "overrides": ns.override, "steps": result.metrics["global_step"],
            "train_minutes": round(harness.train_seconds() / 60, 1),
            "wall_minutes_incl_eval": round((time.time() - wall0) / 60, 1),
            "seconds_per_step": round(harness.train_seconds() / max(result.metrics["global_step"], 1), 2),
            "curve": harness.curve, "final": harness.final, "stopped_by": harness.stopped_by,
            "minutes_to": crossing_minutes(harness.curve),
            "adapter_dir": str(tmp / "out"),  # the trained run (adapter, metrics, card) for `rlft eval`
            "train_log_tail": result.metrics.get("log_history", [])[-3:]}


def run_supervised(ns: argparse.Namespace) -> dict[str, Any]:
    """SUPERVISED reference (not RL): TRL's SFTTrainer, cross-entropy on the gold "label</intent>" + EOS after
    the same prompt + `<intent>` prefill, loss on the completion only (as benchmarks/supervised_reference.py)."""
    import torch
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    from rlft.recipe.sections import AdapterConfig, ModelConfig
    from rlft.run.models import load_model

    torch.set_num_threads(ns.threads)
    torch.manual_seed(ns.seed)
    rows = eval_rows(ns.eval_per_intent, ns.seed)
    labels = sorted({r["intent"] for r in rows})
    model, tok = load_model(ModelConfig(), AdapterConfig(type="lora", r=16, alpha=32), "cpu")
    train = read_csv(DATA / "bitext_grouped_train.csv")
    random.Random(ns.seed).shuffle(train)
    system = system_prompt(labels, ns.labels_in_prompt)

    def prompt_text(utterance: str) -> str:
        messages = [{"role": "system", "content": system}, {"role": "user", "content": utterance}]
        return tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True) + "<intent>"

    train_ds = Dataset.from_list([{"prompt": prompt_text(r["utterance"]), "completion": r["intent"] + "</intent>"}
                                  for r in train])
    harness = TimedEval(_prompt_dataset(rows, system), labels, ns.minutes * 60, ns.eval_minutes * 60,
                        ns.eval_per_intent // 2 * 27)
    harness.partial = RESULTS / f"supervised{ns.tag}.partial.json"
    harness.wall_cap_s = ns.max_wall_minutes * 60 if ns.max_wall_minutes else None
    harness.base_eval = not ns.no_base_eval
    tmp = Path(tempfile.mkdtemp(prefix="intent_rlef_supervised_"))
    config = SFTConfig(output_dir=str(tmp), learning_rate=2e-4, lr_scheduler_type="constant",
                       per_device_train_batch_size=16, num_train_epochs=3, max_length=256, bf16=False, fp16=False,
                       gradient_checkpointing=False, logging_steps=10, save_strategy="no", report_to=[], seed=ns.seed,
                       completion_only_loss=True, use_cpu=True, disable_tqdm=True)
    trainer = SFTTrainer(model=model, args=config, train_dataset=train_ds, processing_class=tok,
                         callbacks=[harness.callback()])
    wall0 = time.time()
    trainer.train()
    steps = trainer.state.global_step
    return {"arm": "supervised", "recipe": "TRL SFTTrainer, gold labels (SUPERVISED reference, not RL)",
            "steps": steps, "train_minutes": round(harness.train_seconds() / 60, 1),
            "wall_minutes_incl_eval": round((time.time() - wall0) / 60, 1),
            "seconds_per_step": round(harness.train_seconds() / max(steps, 1), 2),
            "curve": harness.curve, "final": harness.final, "stopped_by": harness.stopped_by,
            "minutes_to": crossing_minutes(harness.curve)}


def _prompt_dataset(rows: list[dict[str, str]], system: str) -> Any:
    from datasets import Dataset

    return Dataset.from_list([{"prompt": [{"role": "system", "content": system},
                                          {"role": "user", "content": r["utterance"]}], "intent": r["intent"]}
                              for r in rows])


def run_tfidf(ns: argparse.Namespace) -> dict[str, Any]:
    from sklearn.metrics import accuracy_score, f1_score

    from benchmarks.baselines import tfidf_lr_model

    train = read_csv(DATA / "bitext_grouped_train.csv")
    rows = eval_rows(ns.eval_per_intent, ns.seed)
    gold = [r["intent"] for r in rows]
    by_c = {}
    t0 = time.time()
    for c in (1.0, 10.0):  # scikit-learn's default C and a better-tuned one: the stronger one is the bar
        clf = tfidf_lr_model(c)
        clf.fit([r["utterance"] for r in train], [r["intent"] for r in train])
        pred = clf.predict([r["utterance"] for r in rows])
        by_c[c] = {"intent_accuracy": round(float(accuracy_score(gold, pred)), 4),
                   "macro_f1": round(float(f1_score(gold, pred, average="macro")), 4), "format_rate": 1.0}
    best = max(by_c, key=lambda c: by_c[c]["intent_accuracy"])
    return {"arm": "tfidf", "recipe": f"TF-IDF word 1-2 + char 2-5, logistic regression (C={best:g}; C=1 and 10 tried)",
            "by_c": {str(c): m for c, m in by_c.items()}, "train_minutes": round((time.time() - t0) / 60, 2),
            "final": {"constrained": by_c[best], "free": by_c[best], "rows": len(rows)}}


def table(results: list[dict[str, Any]]) -> str:
    head = ("arm", "train min", "steps", "s/step", "constrained acc", "free acc", "free format", "macro-F1",
            "to 50/80/90/95% (min, constrained)", "peak RSS GB")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    order = {"label_pg": 0, "grpo": 1, "trl": 2, "supervised": 3, "tfidf": 4}
    for r in sorted(results, key=lambda r: order.get(r["arm"], 9)):
        f = r["final"]
        to = r.get("minutes_to", {}).get("constrained", {})
        lines.append("| " + " | ".join(str(x) for x in (
            r["arm"] + r.get("tag", ""), r.get("train_minutes"), r.get("steps", "–"), r.get("seconds_per_step", "–"),
            f["constrained"]["intent_accuracy"], f["free"]["intent_accuracy"], f["free"].get("format_rate"),
            f["constrained"]["macro_f1"], "/".join(str(to.get(k, "–")) for k in ("50%", "80%", "90%", "95%")),
            r.get("peak_rss_gb", "–"))) + " |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--arm", choices=("label_pg", "grpo", "trl", "supervised", "tfidf"))
    p.add_argument("--table", action="store_true", help="print the table of every arm in benchmarks/results")
    p.add_argument("--minutes", type=float, default=15.0, help="training CPU minutes per arm (evaluation excluded)")
    p.add_argument("--eval-minutes", type=float, default=2.5, help="evaluate every N CPU minutes of training")
    p.add_argument("--eval-per-intent", type=int, default=20, help="held-out rows per intent (half during training)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch threads (arms may run side by side)")
    p.add_argument("--no-base-eval", action="store_true", help="skip the step-0 evaluation (same base model in "
                   "every arm with the short prompt)")
    p.add_argument("--labels-in-prompt", action="store_true", help="list every allowed intent in the system prompt "
                   "(label_pg, grpo, supervised; the trl arm always lists them)")
    p.add_argument("--override", action="append", default=[], help="extra recipe override for the arm")
    p.add_argument("--max-wall-minutes", type=float, default=None, help="also stop training after this many wall "
                   "minutes (a shared machine); the final evaluation still runs and the result says why it stopped")
    p.add_argument("--tag", default="", help="suffix of the result file (<arm><tag>.json), to keep runs apart")
    ns = p.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    if ns.arm:
        runner = {"tfidf": run_tfidf, "supervised": run_supervised}.get(ns.arm)
        result = runner(ns) if runner else run_rl_arm(ns.arm, ns)
        result.update(minutes_budget=ns.minutes, threads=ns.threads, eval_rows=result["final"].get("rows"),
                      peak_rss_gb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
                      command="python benchmarks/intent_rlef.py " + " ".join(sys.argv[1:]))
        result["tag"] = ns.tag
        out = RESULTS / f"{ns.arm}{ns.tag}.json"
        out.write_text(json.dumps(result, indent=1))
        print(f"wrote {out}")
    results = [json.loads(f.read_text()) for f in sorted(RESULTS.glob("*.json")) if ".partial" not in f.name]
    print(table(results))


if __name__ == "__main__":
    main()
