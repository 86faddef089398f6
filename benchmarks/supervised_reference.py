"""SUPERVISED reference (not RL): LoRA cross-entropy fine-tune on the gold labels of the grouped Bitext split.

    OMP_NUM_THREADS=1 python benchmarks/supervised_reference.py --minutes 10               # wall-clock budget
    OMP_NUM_THREADS=1 python benchmarks/supervised_reference.py --minutes 10 --clock cpu   # CPU-time budget
    python benchmarks/supervised_reference.py --minutes 1 --model <tiny model dir> --eval-per-intent 2   # smoke

The ceiling the RL arms of issue 11 are compared with: same model (embedded SmolLM2-135M-Instruct via
`rlft.run.models.load_model`), same LoRA (r16/alpha32, all linear layers, fp32 on CPU), same prompt and prefill.
Trained with TRL's `SFTTrainer` on prompt/completion rows, loss on the completion only:

    prompt     = chat template(system SYSTEM, user utterance, generation prompt) + "<intent>"
    completion = "label</intent>" + EOS          (SFTTrainer appends the EOS)

lr 2e-4 constant, batch 16, one pass over the shuffled training CSV at most, stopped when the training time
(evaluation excluded) reaches `--minutes`: wall-clock, or with `--clock cpu` this process's CPU time (the fair
budget when other jobs share the cores; both are recorded). Every `--eval-every` steps (and before/after) the
held-out rows (`--eval-per-intent` per intent from benchmarks/data/bitext_grouped_eval.csv, seeded) are decoded
greedily with the `<intent>` prefill, both WITH the label constraint (`rlft.decoding.constrained.processor_factory`) and
WITHOUT it (free decoding), scored by `rlft.evaluation.held_out.evaluate`. Writes the curve to
benchmarks/results/supervised_reference.json (after every evaluation).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import resource
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = ROOT / "benchmarks" / "data"
RESULTS = ROOT / "benchmarks" / "results" / "supervised_reference.json"
SYSTEM = "Classify the customer's message into one intent. Reply as <intent>label</intent>."
PREFILL, SUFFIX = "<intent>", "</intent>"


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return [{"utterance": r["utterance"], "intent": r["intent"]} for r in csv.DictReader(fh)]


def messages(utterance: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": utterance}]


def eval_rows(rows: list[dict[str, str]], per_intent: int, seed: int) -> list[dict[str, str]]:
    """`per_intent` rows of each intent, drawn with `seed`, in a shuffled order (so batches mix intents)."""
    rng = random.Random(seed)
    by_intent: dict[str, list[dict[str, str]]] = {}
    for r in rows:
        by_intent.setdefault(r["intent"], []).append(r)
    picked = [r for intent in sorted(by_intent) for r in rng.sample(by_intent[intent],
                                                                     min(per_intent, len(by_intent[intent])))]
    rng.shuffle(picked)
    return picked


def peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=10.0, help="training time budget (evaluation excluded)")
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="what --minutes counts: wall-clock, or this process's CPU time (fair on a shared machine)")
    ap.add_argument("--model", default="smollm2-135m-instruct", help="anything rlft.run.models.load_model accepts")
    ap.add_argument("--train-csv", type=Path, default=DATA / "bitext_grouped_train.csv")
    ap.add_argument("--eval-csv", type=Path, default=DATA / "bitext_grouped_eval.csv")
    ap.add_argument("--eval-per-intent", type=int, default=10)
    ap.add_argument("--eval-every", type=int, default=50, help="steps between held-out evaluations")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--save-adapter", type=Path, default=None, help="also save the final adapter here")
    args = ap.parse_args()

    import datasets
    import torch
    from datasets import Dataset
    from transformers import TrainerCallback, set_seed
    from trl import SFTConfig, SFTTrainer

    from rlft.recipe.sections import AdapterConfig, DecodingConfig, ModelConfig
    from rlft.evaluation.held_out import evaluate
    from rlft.run.models import load_model, resolve_device

    datasets.disable_progress_bars()
    load_start = [round(x, 2) for x in os.getloadavg()]  # the 2 cores may be shared: say how busy they were
    set_seed(args.seed)
    model_cfg = ModelConfig(name=args.model)
    device = resolve_device(model_cfg)
    model, tokenizer = load_model(model_cfg, AdapterConfig(type="lora", r=16, alpha=32), device)
    train = read_csv(args.train_csv)
    random.Random(args.seed).shuffle(train)
    held = eval_rows(read_csv(args.eval_csv), args.eval_per_intent, args.seed)
    labels = sorted({r["intent"] for r in train} | {r["intent"] for r in held})

    def prompt_text(utterance: str) -> str:
        return tokenizer.apply_chat_template(messages(utterance), tokenize=False, add_generation_prompt=True) + PREFILL

    train_ds = Dataset.from_list([{"prompt": prompt_text(r["utterance"]), "completion": r["intent"] + SUFFIX}
                                  for r in train])
    eval_ds = Dataset.from_list([{"prompt": messages(r["utterance"]), "intent": r["intent"]} for r in held])

    def run_eval() -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, constrain, max_new in (("constrained", True, 16), ("free", False, 16)):
            start = time.time()
            report = evaluate(model, tokenizer, eval_ds, label_column="intent", labels=labels,
                              max_samples=len(eval_ds), max_new_tokens=max_new, batch_size=45, keep_samples=4,
                              decoding=DecodingConfig(prefill=PREFILL, constrain_labels=constrain,
                                                      label_suffix=SUFFIX))
            out[name] = {**{k: round(v, 4) for k, v in report.metrics.items()},
                         "seconds": round(time.time() - start, 1)}
            out[f"{name}_per_intent"] = {k: round(v, 3) for k, v in report.per_intent.items()}
            out[f"{name}_samples"] = report.samples
        return out

    curve: list[dict[str, Any]] = []

    def write_result(done: bool) -> dict[str, Any]:
        """Write the JSON so far (after every evaluation, so an interrupted run keeps its curve)."""

        def first_reaching(key: str, target: float) -> float | None:
            clock = "train_seconds" if args.clock == "wall" else "train_cpu_seconds"
            return next((p[clock] for p in curve if p[key]["intent_accuracy"] >= target), None)

        best = max(curve, key=lambda p: p["constrained"]["intent_accuracy"])
        result = {
            "arm": "supervised reference (cross-entropy on gold labels; NOT reinforcement learning)",
            "command": "OMP_NUM_THREADS=1 python benchmarks/supervised_reference.py " + " ".join(sys.argv[1:]),
            "model": args.model, "adapter": "LoRA r16 alpha32 all-linear", "lr": args.lr,
            "batch_size": args.batch_size, "train_csv": args.train_csv.name, "eval_csv": args.eval_csv.name,
            "train_rows": len(train), "eval_rows": len(held), "budget_minutes": args.minutes, "clock": args.clock,
            "torch_threads": torch.get_num_threads(), "peak_rss_mb": peak_rss_mb(),
            "load_average_start_end": [load_start, [round(x, 2) for x in os.getloadavg()]],
            "final": {k: curve[-1][k] for k in ("step", "train_seconds", "train_cpu_seconds", "constrained", "free")},
            "best_constrained": {k: best[k] for k in ("step", "train_seconds", "train_cpu_seconds", "constrained",
                                                      "free")},
            "seconds_to": {f"{key}_{t}": first_reaching(key, t) for key in ("constrained", "free")
                           for t in (0.5, 0.8, 0.9, 0.95)},
            "curve": curve, "finished": done,
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1) + "\n")
        return result

    class Clock(TrainerCallback):
        """Training time (wall and CPU) without evaluation; periodic held-out evaluation; stop at the budget."""

        def __init__(self) -> None:
            self.train_seconds = self.cpu_seconds = 0.0
            self.mark, self.cpu_mark = time.time(), time.process_time()

        def _pause(self) -> None:
            self.train_seconds += time.time() - self.mark
            self.cpu_seconds += time.process_time() - self.cpu_mark

        def _resume(self) -> None:
            self.mark, self.cpu_mark = time.time(), time.process_time()

        def _evaluate(self, step: int) -> None:
            self._pause()
            point = {"step": step, "train_seconds": round(self.train_seconds, 1),
                     "train_cpu_seconds": round(self.cpu_seconds, 1), "examples_seen": step * args.batch_size,
                     **run_eval()}
            curve.append(point)
            print(f"[supervised] step {step} t={point['train_seconds']}s cpu={point['train_cpu_seconds']}s "
                  f"constrained "
                  f"{point['constrained']['intent_accuracy']:.3f} free {point['free']['intent_accuracy']:.3f} "
                  f"(format {point['free']['format_rate']:.3f})", flush=True)
            write_result(done=False)
            self._resume()

        def on_train_begin(self, targs, state, control, **kwargs):
            self.train_seconds = self.cpu_seconds = 0.0
            self._resume()
            self._evaluate(0)

        def on_step_end(self, targs, state, control, **kwargs):
            if args.clock == "wall":
                elapsed = self.train_seconds + time.time() - self.mark
            else:
                elapsed = self.cpu_seconds + time.process_time() - self.cpu_mark
            if elapsed >= args.minutes * 60:
                control.should_training_stop = True
            elif state.global_step % args.eval_every == 0:
                self._evaluate(state.global_step)

    clock = Clock()
    config = SFTConfig(output_dir=str(ROOT / "runs" / "supervised_reference"), learning_rate=args.lr,
                       lr_scheduler_type="constant", warmup_steps=0, per_device_train_batch_size=args.batch_size,
                       num_train_epochs=1, max_length=256, gradient_checkpointing=False, bf16=False, fp16=False,
                       logging_steps=10, save_strategy="no", report_to=[], seed=args.seed, dataloader_num_workers=0,
                       completion_only_loss=True, use_cpu=device == "cpu", disable_tqdm=True)
    trainer = SFTTrainer(model=model, args=config, train_dataset=train_ds, processing_class=tokenizer,
                         callbacks=[clock])
    sample = trainer.train_dataset[0]
    trained = [t for t, lab in zip(sample["input_ids"], sample["labels"], strict=True) if lab != -100]
    print(f"[supervised] first training row: {tokenizer.decode(sample['input_ids'])!r}; loss on "
          f"{tokenizer.decode(trained)!r}", flush=True)
    trainer.train()
    clock._evaluate(trainer.state.global_step)
    if args.save_adapter:
        trainer.save_model(str(args.save_adapter))

    result = write_result(done=True)
    print(f"{'step':>5s} {'train s':>8s} {'cpu s':>7s} {'constrained':>11s} {'free':>6s} {'free fmt':>8s} "
          f"{'macro-F1 c/f':>12s}")
    for p in curve:
        c, f = p["constrained"], p["free"]
        print(f"{p['step']:5d} {p['train_seconds']:8.1f} {p['train_cpu_seconds']:7.1f} {c['intent_accuracy']:11.3f} "
              f"{f['intent_accuracy']:6.3f} "
              f"{f['format_rate']:8.3f} {c['macro_f1']:6.3f}/{f['macro_f1']:.3f}")
    print(f"wrote {args.out} (peak RSS {result['peak_rss_mb']} MB)")


if __name__ == "__main__":
    main()
