"""The reward-model route: train a reward model on preference pairs, then PPO against it.

    # both stages, embedded model + demo data
    accelerate launch --config_file recipes/accelerate/one_process.yaml recipes/rm_ppo.py
    # overrides apply to the PPO stage; trainer.max_steps also caps the reward-model stage
    accelerate launch --config_file recipes/accelerate/one_process.yaml recipes/rm_ppo.py trainer.max_steps=100
    # your PPO recipe; it names the RM path
    accelerate launch --config_file recipes/accelerate/one_process.yaml recipes/rm_ppo.py --config my_ppo.yaml

What it does: if `runs/intent_rm` holds no trained reward model yet, trains one with intent_rm.yaml (held-out
accuracy and calibration table in runs/intent_rm/calibration.json); then runs the PPO recipe (rm_ppo.yaml), whose
`reward_model` reward reads that directory. Delete runs/intent_rm to retrain the reward model.
Not supported here: multi-node launch settings (pass your own accelerate config), vLLM generation.
"""

from pathlib import Path

from rlft.launch import launch

HERE = Path(__file__).parent
RM_RECIPE = HERE / "intent_rm.yaml"

if __name__ == "__main__":
    import sys

    from rlft.errors import UserError
    from rlft.pipeline import train
    from rlft.recipe import load_recipe

    # trainer.max_steps caps both stages (a quick try-out must be quick end to end); other overrides are PPO's.
    rm_overrides = [a for a in sys.argv[1:] if a.startswith("trainer.max_steps=")]
    try:
        rm = load_recipe(RM_RECIPE, rm_overrides)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    if not (Path(rm.output_dir) / "adapter_config.json").is_file():
        print(f"[rlft] stage 1: training the reward model ({RM_RECIPE.name} -> {rm.output_dir})", flush=True)
        try:
            train(rm)
        except UserError as exc:
            print(f"error: {exc}", file=sys.stderr)
            sys.exit(exc.exit_code)
    print("[rlft] stage 2: PPO with the reward model", flush=True)
    launch(HERE / "rm_ppo.yaml")
