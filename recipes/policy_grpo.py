"""Policy following: GRPO on the intent reward plus an LLM judge of the company policy (see policy_grpo.yaml).

    accelerate launch recipes/policy_grpo.py                       # embedded model + demo data + local judge
    accelerate launch recipes/policy_grpo.py trainer.max_steps=100 data.source=my.csv

What it does: loads policy_grpo.yaml, evaluates held-out intent accuracy and judge scores, trains a LoRA adapter
with GRPO on the intent reward + the policy judge (judged only when the intent is right), evaluates again and writes adapter + recipe + metrics + model card to `output_dir`.
Not supported here: multi-node launch settings (pass your own accelerate config), tool calling.
"""

from pathlib import Path

from rlft.launch import launch

if __name__ == "__main__":
    launch(Path(__file__).with_suffix(".yaml"))
