"""Write a small demo eval report (for `check_trace_browser.sh`): base vs a random LoRA adapter on 12 intent rows
(one with a `<script>` in it), with a made-up training log so the curves show.

    python benchmarks/trace_browser_demo.py OUT_DIR           # tiny random Llama + SmolLM2 tokenizer (seconds)
    python benchmarks/trace_browser_demo.py OUT_DIR --real    # the embedded SmolLM2-135M-Instruct (about a minute)

No hub, no network. The adapter is random, so "tuned" is not better: the page is what this is for. The tiny
random model answers one label for everything, so base and adapter agree on all rows or on none; the real model
gives a mix (in our run 5 of 12 rows differ), which is what the disagreement filter screenshot needs.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path


def main(out: str, real: bool = False, std: float = 0.1) -> None:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from rlft.evaluation.eval_models import ModelRef, evaluate_models, format_table
    from rlft.run.models import embedded_gguf
    from rlft.recipe.load import load_recipe

    work = Path(tempfile.mkdtemp(prefix="rlft_trace_demo_"))
    torch.manual_seed(0)
    if real:  # the embedded SmolLM2-135M-Instruct (converted from its .gguf once, then cached)
        from rlft.recipe.sections import ModelConfig
        from rlft.run.models import resolve_model_path

        model_dir = Path(resolve_model_path(ModelConfig()))
    else:
        gguf = embedded_gguf("smollm2-135m-instruct")
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                             num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                             bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                             pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=True)
        model_dir = work / "tiny"
        LlamaForCausalLM(config).save_pretrained(model_dir)
        tokenizer.save_pretrained(model_dir)
    adapter = get_peft_model(LlamaForCausalLM.from_pretrained(model_dir),
                             LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False))
    for name, param in adapter.named_parameters():
        if "lora_" in name:
            param.data.normal_(0.0, std)
    adapter_dir = work / "tuned"
    adapter.save_pretrained(adapter_dir)
    history = [{"step": s, "reward": 0.3 + 0.05 * s - 0.01 * (s % 3), "kl": 0.002 * s * s,
                "frac_reward_zero_std": max(0.0, 0.9 - 0.08 * s), "intent/accuracy": 0.4 + 0.04 * s}
               for s in range(1, 11)]
    (adapter_dir / "metrics.json").write_text(json.dumps({"log_history": history}))
    rows = [("please cancel my order", "cancel_order"), ("where is my parcel", "track_order"),
            ("I want my money back", "get_refund"), ("stop the order now", "cancel_order"),
            ("track package 123", "track_order"), ("refund please", "get_refund"),
            ("cancel it", "cancel_order"), ("has it shipped yet", "track_order"),
            ("return the money <script>alert(1)</script>", "get_refund"),
            ("I changed my mind, cancel", "cancel_order"),
            ("delivery status?", "track_order"), ("I was charged twice, refund", "get_refund")]
    data = work / "eval.csv"
    data.write_text("utterance,intent\n" + "".join(f'"{u}",{i}\n' for u, i in rows))
    recipe_file = work / "recipe.yaml"
    recipe_file.write_text(f"""
model: {{name: {model_dir}, device: cpu}}
data:
  source: {data}
  labels: [cancel_order, track_order, get_refund]
  system_prompt: "Classify. Reply as <intent>label</intent>."
rewards: [intent]
decoding: {{prefill: "<intent>", constrain_labels: true}}
evaluation: {{max_new_tokens: 8, batch_size: 4}}
""")
    recipe = load_recipe(recipe_file)
    kind = "SmolLM2-135M vs a random LoRA" if real else "tiny random model vs a random LoRA"
    result = evaluate_models([ModelRef("base", "base"), ModelRef("adapter", "tuned", path=str(adapter_dir))],
                             recipe, out, data_file=str(data), title=f"rlft eval demo ({kind})")
    print(format_table(result["models"]))
    print(f"[rlft] demo report in {out}")


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    real = "--real" in sys.argv
    main(args[0] if args else "benchmarks/results/trace_browser/demo_report", real, 0.1)
