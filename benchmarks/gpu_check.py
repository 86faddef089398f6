"""A few training steps of every algorithm on a tiny local model: step times and peak memory, non-zero exit on any
failure. `benchmarks/gpu_check.sh` runs it on a CUDA machine (bf16, LoRA and QLoRA); `--cpu` is the fast smoke
check (fp32, LoRA only) that tests/test_check.py runs.

    .venv/bin/python benchmarks/gpu_check.py [--cpu] [--steps 3] [--out /tmp/rlft_gpu_check]

The tiny model is a random 2-layer Llama with the embedded SmolLM2 tokenizer (as tests/conftest.py builds it):
nothing is downloaded. Cases: grpo (rlft's SignalGRPOTrainer: label constraint, drop_zero_std + refill), dpo, kto,
ppo, label_pg, each with LoRA and (CUDA only) QLoRA. Prints a table; writes `results.json` in --out.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
import traceback
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ALGORITHMS = {
    "grpo": """data: {{source: "demo:intents", demo_size: 48, system_prompt: "Classify."}}
rewards: [{{name: intent}}]
decoding: {{prefill: "<intent>", constrain_labels: true}}
signal: {{drop_zero_std: true, refill_rounds: 1, shared_prefix: true}}
trainer: {{max_steps: {steps}, per_device_train_batch_size: 8, num_generations: 4, max_completion_length: 8,
          learning_rate: 0.001, beta: 0.0, logging_steps: 1}}""",
    "dpo": """data: {{source: "demo:intent_pairs", demo_size: 48}}
trainer: {{max_steps: {steps}, per_device_train_batch_size: 4, max_length: 128, learning_rate: 0.001,
          logging_steps: 1}}""",
    "kto": """data: {{source: "demo:intent_kto", demo_size: 48}}
trainer: {{max_steps: {steps}, per_device_train_batch_size: 4, max_length: 128, learning_rate: 0.001,
          logging_steps: 1}}""",
    "ppo": """data: {{source: "demo:intents", demo_size: 48, system_prompt: "Classify."}}
rewards: [{{name: intent}}]
decoding: {{prefill: "<intent>", constrain_labels: true}}
trainer: {{max_steps: {steps}, per_device_train_batch_size: 8, num_generations: 1, max_completion_length: 8,
          ppo_epochs: 1, num_mini_batches: 1, learning_rate: 0.001, logging_steps: 1}}""",
    "label_pg": """data: {{source: "demo:intents", demo_size: 48, system_prompt: "Classify."}}
rewards: [{{name: intent}}]
decoding: {{prefill: "<intent>", constrain_labels: true}}
trainer: {{max_steps: {steps}, per_device_train_batch_size: 8, learning_rate: 0.001, logging_steps: 1}}""",
}


def build_tiny_model(out: Path) -> Path:
    """Random 2-layer Llama (hidden 64: bitsandbytes' 4-bit kernels need dims >= 64) + the embedded tokenizer."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from rlft.run.models import embedded_gguf

    if (out / "config.json").is_file():
        return out
    gguf = embedded_gguf("smollm2-135m-instruct")
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=True)
    LlamaForCausalLM(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def step_timer():  # noqa: ANN201 - a transformers.TrainerCallback
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def __init__(self) -> None:
            self.times: list[float] = []
            self._start = 0.0

        def on_step_begin(self, args, state, control, **kwargs):  # noqa: ANN001, ANN201
            self._start = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001, ANN201
            self.times.append(time.perf_counter() - self._start)

    return StepTimer()


def run_case(algorithm: str, adapter: str, model_dir: Path, out: Path, steps: int, cuda: bool) -> dict:
    import torch

    import rlft

    dtype, device = ("bfloat16", "cuda") if cuda else ("float32", "cpu")
    text = (f"algorithm: {algorithm}\noutput_dir: {out / f'{algorithm}_{adapter}'}\noverwrite: true\n"
            f"model: {{name: {model_dir}, dtype: {dtype}, device: {device}}}\n"
            f"adapter: {{type: {adapter}, r: 4, alpha: 8}}\nevaluation: {{before: false, after: false}}\n"
            + ALGORITHMS[algorithm].format(steps=steps) + "\n")
    path = out / f"{algorithm}_{adapter}.yaml"
    path.write_text(text)
    row = {"case": f"{algorithm} + {adapter}", "ok": False, "steps": 0, "step_s": None, "peak_mib": None,
           "error": None}
    timer = step_timer()
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    try:
        result = rlft.train(rlft.load_recipe(path), callbacks=[timer])
        row["steps"] = result.metrics["global_step"]
        row["ok"] = row["steps"] == steps and (result.adapter_dir / "adapter_config.json").is_file()
        if not row["ok"]:
            row["error"] = f"ran {row['steps']} of {steps} steps or wrote no adapter"
    except Exception as exc:  # noqa: BLE001 - every failure is a row of the table
        row["error"] = f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}"
        traceback.print_exc()
    if timer.times:  # the first step includes compilation / allocator warm-up: reported without it when possible
        times = timer.times[1:] or timer.times
        row["step_s"] = round(sum(times) / len(times), 3)
    row["peak_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1) if cuda else \
        round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu", action="store_true", help="fp32 on CPU, LoRA only (smoke check)")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--out", default="/tmp/rlft_gpu_check")
    parser.add_argument("--only", nargs="*", default=None, help="algorithms to run (default: all)")
    args = parser.parse_args(argv)
    import torch

    cuda = not args.cpu
    if cuda and not torch.cuda.is_available():
        print("error: no CUDA device (torch.cuda.is_available() is False); use --cpu for the CPU smoke check",
              file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model_dir = build_tiny_model(out / "tiny_llama")
    adapters = ["lora"] if args.cpu else ["lora", "qlora"]
    device = torch.cuda.get_device_name(0) if cuda else "cpu"
    rows = [run_case(a, ad, model_dir, out, args.steps, cuda)
            for a in (args.only or ALGORITHMS) for ad in adapters]
    memory = "peak GPU MiB (max_memory_allocated, per case)" if cuda else "peak RSS MiB (whole process so far)"
    print(f"\nrlft gpu_check on {device}, torch {torch.__version__}, {'bf16' if cuda else 'fp32'}, "
          f"{args.steps} steps per case")
    print(f"| case | result | steps | mean step s | {memory} |\n|---|---|---|---|---|")
    for r in rows:
        result = "ok" if r["ok"] else f"FAILED: {r['error']}"
        print(f"| {r['case']} | {result} | {r['steps']} | {r['step_s']} | {r['peak_mib']} |")
    (out / "results.json").write_text(json.dumps({"device": device, "torch": torch.__version__, "rows": rows},
                                                 indent=2))
    failed = [r["case"] for r in rows if not r["ok"]]
    print(f"\n{len(rows) - len(failed)}/{len(rows)} ok" + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
