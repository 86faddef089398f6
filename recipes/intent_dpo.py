"""Intent tags with DPO on preference data (see intent_dpo.yaml).

    # embedded model + demo data, CPU or GPU
    accelerate launch -q --config_file recipes/accelerate/one_process.yaml recipes/intent_dpo.py
    accelerate launch -q --config_file recipes/accelerate/one_process.yaml recipes/intent_dpo.py trainer.max_steps=100 \
        data.source=my.csv

What it does: loads intent_dpo.yaml, evaluates held-out intent accuracy, trains a LoRA adapter with DPO on its
chosen/rejected pairs (no reward model, no sampling), evaluates again and writes adapter + recipe + metrics + model
card + the base vs tuned report (`report/`) to `output_dir`.
Not supported here: multi-node launch settings (pass your own accelerate config), tool calling.
"""

from pathlib import Path

from rlft.run.launch import launch

if __name__ == "__main__":
    launch(Path(__file__).with_suffix(".yaml"))
