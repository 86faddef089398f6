"""RLEF intent accuracy: rlft's signal features vs a plain-TRL GRPO baseline, same model, LoRA and time budget.

    python benchmarks/intent_rlef.py --budget-minutes 60            # both runs, one after the other
    python benchmarks/intent_rlef.py --budget-minutes 20 --only rlft

Data: the Bitext CSV (27 intents), shuffled with `--seed`; the first `--eval-rows` rows are the held-out split,
the rest train. Model: SmolLM2-135M-Instruct (`--model`, plain safetensors dir or anything `rlft.models` loads),
LoRA r=16/alpha=32 on all linear layers, fp32 on CPU. Pure RL: the only training signal is the reward.

- rlft: short system prompt (no label list), `<intent>` prefill, label-constrained rollouts, shared-prefix
  scoring, zero-variance groups dropped and refilled, lr 2e-4, dapo loss, beta 0, temperature 1.0.
- baseline: `trl.GRPOTrainer` with TRL's defaults (lr 1e-6, 8 generations, temperature 1.0, beta 0, dapo) and a
  straightforward regex reward (1 for the right `<intent>` label, else 0), the system prompt listing all intents;
  only `max_completion_length` is lowered to 32 (TRL's 256 would spend the budget on rambling).

Greedy held-out exact-intent accuracy, format rate and macro-F1 before, every `--eval-every` steps, and after;
training wall-clock excludes evaluation time. Prints a table, writes `benchmarks/results/intent_rlef.json`.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import re
import resource
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CSV = ROOT.parent / "shared" / "data" / "bitext" / "bitext_customer_service_train.csv"
SYSTEM_SHORT = "Classify the customer's message into one intent. Reply as <intent>label</intent>."


def load_split(path: Path, seed: int, eval_rows: int) -> tuple[list[dict], list[dict], list[str]]:
    with open(path, newline="") as fh:
        rows = [{"utterance": r["utterance"], "intent": r["intent"]} for r in csv.DictReader(fh)]
    random.Random(seed).shuffle(rows)
    labels = sorted({r["intent"] for r in rows})
    return rows[eval_rows:], rows[:eval_rows], labels


def to_dataset(rows: list[dict], system: str) -> Any:
    from datasets import Dataset

    return Dataset.from_list([{"prompt": [{"role": "system", "content": system},
                                          {"role": "user", "content": r["utterance"]}], "intent": r["intent"]}
                              for r in rows])


def regex_reward(prompts, completions, intent, **kwargs) -> list[float]:
    """The straightforward RLEF reward: 1 when the single <intent> tag holds the right label, else 0."""
    out = []
    for c, truth in zip(completions, intent, strict=True):
        text = c[0]["content"] if isinstance(c, list) else c
        found = re.findall(r"<intent>(.*?)</intent>", text, flags=re.DOTALL)
        out.append(1.0 if len(found) == 1 and found[0].strip() == truth else 0.0)
    return out


def load_model(path: str, r: int) -> tuple[Any, Any]:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    lora = LoraConfig(r=r, lora_alpha=2 * r, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM")
    return get_peft_model(model, lora), tok


def crossing_times(curve: list[dict], key: str = "intent_accuracy") -> dict[str, float | None]:
    out = {}
    for target in (0.5, 0.8, 0.9):
        hit = next((p for p in curve if p[key] >= target), None)
        out[f"minutes_to_{int(target * 100)}"] = round(hit["train_seconds"] / 60, 1) if hit else None
    return out


class Harness:
    """Evaluation every N steps (time excluded from the budget) and a wall-clock stop."""

    def __init__(self, model, tok, eval_ds, labels, budget_s: float, every: int, gen_kwargs: dict,
                 max_new_tokens: int, batch_size: int):
        from transformers import TrainerCallback

        self.model, self.tok, self.eval_ds, self.labels = model, tok, eval_ds, labels
        self.budget_s, self.every, self.gen_kwargs = budget_s, every, gen_kwargs
        self.max_new_tokens, self.batch_size = max_new_tokens, batch_size
        self.curve: list[dict] = []
        self.eval_s = 0.0
        self.start: float | None = None
        harness = self

        class _Callback(TrainerCallback):
            def on_train_begin(self, args, state, control, **kw):
                harness.start = time.time()

            def on_step_end(self, args, state, control, **kw):
                if state.global_step % harness.every == 0:
                    harness.evaluate(state.global_step)
                if harness.train_seconds() >= harness.budget_s:
                    control.should_training_stop = True

        self.callback = _Callback()

    def train_seconds(self) -> float:
        return 0.0 if self.start is None else time.time() - self.start - self.eval_s

    def evaluate(self, step: int, **override: Any) -> dict:
        from rlft.evaluate import evaluate

        t0 = time.time()
        kwargs = {**self.gen_kwargs, **override}
        report = evaluate(self.model, self.tok, self.eval_ds, labels=self.labels, max_samples=len(self.eval_ds),
                          max_new_tokens=self.max_new_tokens, batch_size=self.batch_size, keep_samples=3, **kwargs)
        self.eval_s += time.time() - t0
        point = {"step": step, "train_seconds": round(self.train_seconds(), 1),
                 **{k: round(v, 4) for k, v in report.metrics.items()}}
        if not override:
            self.curve.append(point)
        print(f"[intent_rlef] step {step} t={point['train_seconds'] / 60:.1f} min "
              f"acc={point['intent_accuracy']:.3f} format={point['format_rate']:.3f} "
              f"f1={point['macro_f1']:.3f} eval={time.time() - t0:.0f}s {report.samples[0]['completion']!r}",
              flush=True)
        return point


def run(kind: str, ns: argparse.Namespace) -> dict:
    import torch
    from trl import GRPOConfig, GRPOTrainer

    from rlft.signal import SignalConfig, SignalGRPOTrainer, eval_generation_kwargs

    torch.set_num_threads(ns.threads)
    torch.manual_seed(ns.seed)
    train_rows, eval_rows, labels = load_split(Path(ns.data), ns.seed, ns.eval_rows)
    system = SYSTEM_SHORT if kind == "rlft" else f"{SYSTEM_SHORT} Allowed intents: {', '.join(labels)}."
    train_ds = to_dataset(train_rows, system).shuffle(seed=ns.seed)
    eval_ds = to_dataset(eval_rows, system)
    model, tok = load_model(ns.model, ns.lora_r)
    common = dict(output_dir=str(ROOT / "runs" / f"intent_rlef_{kind}"), max_steps=100_000, report_to=[],
                  save_strategy="no", use_cpu=True, logging_steps=5, seed=ns.seed, num_generations=8)
    if kind == "rlft":
        signal = SignalConfig(prefill="<intent>", constrain_labels=True, shared_prefix=True, drop_zero_std=True,
                              refill_rounds=ns.refill_rounds)
        args = GRPOConfig(**common, learning_rate=ns.lr, per_device_train_batch_size=8 * ns.prompts_per_step,
                          max_completion_length=16, temperature=1.0, beta=0.0, loss_type="dapo",
                          lr_scheduler_type="constant")
        gen_kwargs = eval_generation_kwargs(signal, tok, labels)
    else:
        args = GRPOConfig(**common, max_completion_length=32)
        gen_kwargs = {}
    harness = Harness(model, tok, eval_ds, labels, ns.budget_minutes * 60, ns.eval_every, gen_kwargs,
                      max_new_tokens=24 if kind == "rlft" else 32, batch_size=ns.eval_batch_size)
    trainer_kwargs = dict(model=model, reward_funcs=[regex_reward], args=args, train_dataset=train_ds,
                          processing_class=tok, callbacks=[harness.callback])
    if kind == "rlft":
        trainer = SignalGRPOTrainer(**trainer_kwargs, signal=signal, labels=labels)
    else:
        trainer = GRPOTrainer(**trainer_kwargs)
    harness.evaluate(0)
    wall0 = time.time()
    trainer.train()
    steps = trainer.state.global_step
    if not harness.curve or harness.curve[-1]["step"] != steps:
        harness.evaluate(steps)
    result: dict[str, Any] = {
        "kind": kind, "steps": steps, "train_minutes": round(harness.train_seconds() / 60, 1),
        "wall_minutes_incl_eval": round((time.time() - wall0) / 60, 1),
        "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
        "curve": harness.curve, "final": harness.curve[-1], "start": harness.curve[0],
        **crossing_times(harness.curve)}
    if kind == "rlft":
        totals = dict(trainer.signal_totals)
        result["signal_totals"] = totals
        result["completions_sampled"] = totals["groups_generated"] * 8
        result["completions_trained"] = totals["groups_trained"] * 8
        result["unconstrained_final"] = harness.evaluate(steps, logits_processor_factory=None)
    else:
        result["completions_sampled"] = result["completions_trained"] = steps * args.per_device_train_batch_size
    result["config"] = {"lr": args.learning_rate, "per_device_train_batch_size": args.per_device_train_batch_size,
                        "num_generations": args.num_generations, "max_completion_length": args.max_completion_length,
                        "loss_type": args.loss_type, "beta": args.beta, "temperature": args.temperature,
                        "system_prompt": system, "lora_r": ns.lora_r}
    return result


def table(results: list[dict]) -> str:
    head = ("run", "steps", "train min", "acc before", "acc after", "format", "macro-F1", "to 50%", "to 80%",
            "to 90%", "samples", "peak GB")
    lines = [" | ".join(head), " | ".join("---" for _ in head)]
    for r in results:
        f = r["final"]
        lines.append(" | ".join(str(x) for x in (
            r["kind"], r["steps"], r["train_minutes"], r["start"]["intent_accuracy"], f["intent_accuracy"],
            f["format_rate"], f["macro_f1"], r["minutes_to_50"], r["minutes_to_80"], r["minutes_to_90"],
            r["completions_sampled"], r["peak_rss_gb"])))
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--budget-minutes", type=float, default=60.0, help="training wall-clock per run (eval excluded)")
    p.add_argument("--only", choices=("rlft", "baseline"), help="run only one side")
    p.add_argument("--model", default="/tmp/smol", help="model directory (plain safetensors)")
    p.add_argument("--data", default=str(DEFAULT_CSV))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval-rows", type=int, default=200)
    p.add_argument("--eval-every", type=int, default=10, help="evaluate every N optimizer steps")
    p.add_argument("--eval-batch-size", type=int, default=50)
    p.add_argument("--lr", type=float, default=2e-4, help="rlft learning rate")
    p.add_argument("--prompts-per-step", type=int, default=8, help="rlft prompts per step (x 8 generations)")
    p.add_argument("--refill-rounds", type=int, default=1)
    p.add_argument("--lora-r", type=int, default=16)
    p.add_argument("--threads", type=int, default=2, help="torch threads (1 can be faster on a shared CPU)")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "intent_rlef.json"))
    ns = p.parse_args()
    kinds = [ns.only] if ns.only else ["rlft", "baseline"]
    out = Path(ns.out)
    for kind in kinds:
        result = run(kind, ns)
        result["budget_minutes"] = ns.budget_minutes
        result["command"] = "python benchmarks/intent_rlef.py " + " ".join(os.sys.argv[1:])
        # re-read just before writing: the two sides may run side by side as separate processes
        previous = json.loads(out.read_text()) if out.exists() else {}
        results = {r["kind"]: r for r in previous.get("runs", [])}
        results[kind] = result
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"runs": list(results.values())}, indent=1))
    print(table(list(results.values())))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
