"""Policy following: GRPO on the intent reward plus an LLM judge of the company policy (see policy_grpo.yaml).

    # wiring demo: embedded model judges (no signal)
    accelerate launch -q --config_file recipes/accelerate/one_process.yaml recipes/policy_grpo.py
    accelerate launch -q --config_file recipes/accelerate/one_process.yaml recipes/policy_grpo.py trainer.max_steps=100 \
        data.source=my.csv

What it does: loads policy_grpo.yaml, evaluates held-out intent accuracy and judge scores, trains a LoRA adapter
with GRPO on the intent reward + the policy judge (judged only when the intent is right), evaluates again and writes adapter + recipe + metrics + model card to `output_dir`.
Not supported here: multi-node launch settings (pass your own accelerate config), tool calling.
"""

import sys
from pathlib import Path

from rlft.run.launch import launch

WIRING_DEMO = """[rlft] WIRING DEMO: no real judge is configured. The judge is the embedded 135M model (backend:
[rlft] local), far too weak to judge policies, and it is only asked when the <intent> tag is right, which the base
[rlft] model rarely produces: expect judge rewards of skip_value and intent rewards near -1. This run shows the pieces
[rlft] connect; it does not teach policy following. For a real signal pass rewards.1.params.backend=openai
[rlft] rewards.1.params.model=<model> (and its base_url / api_key_env)."""

if __name__ == "__main__":
    if not any(a.startswith("rewards.1.params.backend=") and not a.endswith("=local") for a in sys.argv[1:]):
        print(WIRING_DEMO, file=sys.stderr, flush=True)
    launch(Path(__file__).with_suffix(".yaml"))
