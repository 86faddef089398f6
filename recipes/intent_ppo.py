"""Intent detection with PPO and the RLEF intent reward.

    # embedded model + demo data, CPU or GPU
    accelerate launch -q --config_file recipes/accelerate/one_process.yaml recipes/intent_ppo.py
    accelerate launch -q --config_file recipes/accelerate/one_process.yaml recipes/intent_ppo.py trainer.max_steps=100 \
        data.source=my.csv

What it does: loads intent_ppo.yaml, evaluates held-out intent accuracy, trains a LoRA adapter and a value head with
PPO on the `intent` reward, evaluates again and writes adapter + value head + recipe + metrics + model card to
`output_dir`.
Not supported here: multi-node launch settings (pass your own accelerate config), tool calling, vLLM generation.
"""

from pathlib import Path

from rlft.run.launch import launch

if __name__ == "__main__":
    launch(Path(__file__).with_suffix(".yaml"))
