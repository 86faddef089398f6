"""The one-pass support agent: `<intent>label</intent>` + a policy-following reply, GRPO on intent + rubric.

    # embedded model + demo data, CPU or GPU
    accelerate launch -q --config_file recipes/accelerate/one_process.yaml recipes/support_agent.py
    accelerate launch -q --config_file recipes/accelerate/one_process.yaml recipes/support_agent.py trainer.max_steps=100
    # + a judge endpoint
    accelerate launch -q --config_file recipes/accelerate/one_process.yaml recipes/support_agent.py --config \
        recipes/support_agent_judge.yaml

What it does: loads support_agent.yaml (the head is constrained to one label, the reply is free), evaluates the
held-out rows, trains a LoRA adapter with GRPO on the `intent` + `rubric` rewards, evaluates again and writes
adapter + recipe + metrics + model card to `output_dir`. Numbers and caveats: docs/support_agent.md.
Not supported: an `<analysis>` block before the head. Both rewards share one advantage per completion unless
`signal.segment_credit` gives each its own tokens (docs/support_agent.md#credit).
"""

from pathlib import Path

from rlft.run.launch import launch

if __name__ == "__main__":
    launch(Path(__file__).with_suffix(".yaml"))
