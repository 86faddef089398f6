"""DPO on a preference set labelled by `rlft label` from the model's own samples (see policy_dpo.yaml).

    rlft label recipes/label_intent.yaml --split train --n 6 --prefill "<intent>" --pairs best_vs_rest \
        --chosen-min-score 0.5 --out runs/label_intent_rest
    # embedded model, CPU or GPU
    accelerate launch -q --config_file recipes/accelerate/one_process.yaml recipes/policy_dpo.py
    accelerate launch -q --config_file recipes/accelerate/one_process.yaml recipes/policy_dpo.py \
        data.source=runs/other_labels/dpo.jsonl trainer.max_steps=100

What it does: loads policy_dpo.yaml, evaluates held-out intent accuracy, trains a LoRA adapter with DPO on the
labelled set, evaluates again and writes adapter + recipe + metrics + model card to `output_dir`.
Not supported here: labelling inside the launcher (run `rlft label` first), multi-node launch settings.
"""

from pathlib import Path

from rlft.run.launch import launch

if __name__ == "__main__":
    launch(Path(__file__).with_suffix(".yaml"))
