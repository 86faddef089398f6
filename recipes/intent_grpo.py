"""Intent detection with GRPO and the RLEF intent reward.

    # embedded model + demo data, CPU or GPU
    accelerate launch -q --config_file recipes/accelerate/one_process.yaml recipes/intent_grpo.py
    accelerate launch -q --config_file recipes/accelerate/one_process.yaml recipes/intent_grpo.py trainer.max_steps=100 \
        data.source=my.csv
    accelerate launch -q --config_file recipes/accelerate/one_process.yaml recipes/intent_grpo.py --config \
        recipes/intent_grpo_bitext_sampled.yaml          # the same GRPO on Bitext

What it does: loads intent_grpo.yaml, evaluates held-out intent accuracy, trains a LoRA adapter with GRPO on the
`intent` reward, evaluates again and writes adapter + recipe + metrics + model card to `output_dir`.
Not supported here: multi-node launch settings (pass your own accelerate config), tool calling.
"""

from pathlib import Path

from rlft.run.launch import launch

if __name__ == "__main__":
    launch(Path(__file__).with_suffix(".yaml"))
