"""Intent detection with the exact label-space policy gradient (`algorithm: label_pg`) and the RLEF intent reward.

    # embedded model + grouped Bitext split
    accelerate launch -q --config_file recipes/accelerate/one_process.yaml recipes/intent_label_pg.py
    accelerate launch -q --config_file recipes/accelerate/one_process.yaml recipes/intent_label_pg.py \
        trainer.max_steps=200 label_pg.weighting=maxrl
    rlft train recipes/intent_label_pg.yaml                         # the same, without accelerate

What it does: loads intent_label_pg.yaml, trains a LoRA adapter that maximises the exact expected `intent` reward
over all 27 labels (no sampling: one teacher-forced pass per batch with the prompt's KV cache shared by the label
paths), evaluates held-out intent accuracy under the label constraint every 20 steps and keeps the best adapter,
and writes adapter + recipe + metrics + model card to `output_dir`.
Not supported here: open-ended outputs (use recipes/intent_grpo.py), multi-node launch settings.
"""

from pathlib import Path

from rlft.run.launch import launch

if __name__ == "__main__":
    launch(Path(__file__).with_suffix(".yaml"))
