"""The reward-model route: train a reward model on preference pairs, then PPO against it.

    # both stages, embedded model + demo data
    accelerate launch -q --config_file recipes/accelerate/one_process.yaml recipes/rm_ppo.py
    # overrides apply to the PPO stage; trainer.max_steps also caps the reward-model stage
    accelerate launch -q --config_file recipes/accelerate/one_process.yaml recipes/rm_ppo.py trainer.max_steps=100
    # your PPO recipe; it names the RM path
    accelerate launch -q --config_file recipes/accelerate/one_process.yaml recipes/rm_ppo.py --config my_ppo.yaml

What it does: if `runs/intent_rm` holds no trained reward model yet, trains one with intent_rm.yaml (held-out
accuracy and calibration table in runs/intent_rm/calibration.json); then runs the PPO recipe (rm_ppo.yaml), whose
`reward_model` reward reads that directory. Delete runs/intent_rm to retrain the reward model.
Not supported here: multi-node launch settings (pass your own accelerate config), vLLM generation.
"""

import json
from pathlib import Path

from rlft.run.launch import launch

HERE = Path(__file__).parent
RM_RECIPE = HERE / "intent_rm.yaml"


def reward_model_recipe(argv: list[str]):  # noqa: ANN201 - an rlft Recipe
    """Stage 1's recipe: intent_rm.yaml with the command line's `trainer.max_steps` (a quick try-out must be quick
    end to end); every other override is the PPO stage's."""
    from rlft.recipe.load import load_recipe

    return load_recipe(RM_RECIPE, [a for a in argv if a.startswith("trainer.max_steps=")])


def trained_steps(rm_dir: Path) -> int | None:
    """Optimizer steps of the reward model already in `rm_dir` (its metrics.json), None when unknown."""
    try:
        return int(json.loads((rm_dir / "metrics.json").read_text())["global_step"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


if __name__ == "__main__":
    import sys

    from rlft.errors import UserError, print_error
    from rlft.run.pipeline import train

    try:
        rm = reward_model_recipe(sys.argv[1:])
    except UserError as exc:
        print_error(str(exc))
        sys.exit(exc.exit_code)
    rm_dir = Path(rm.output_dir)
    if (rm_dir / "adapter_config.json").is_file():
        steps = trained_steps(rm_dir)
        print(f"[rlft] stage 1: reusing the reward model in {rm_dir} (trained {steps if steps is not None else '?'} "
              f"steps; this run asked for {rm.trainer.get('max_steps')}; delete the folder to retrain)", flush=True)
    else:
        print(f"[rlft] stage 1: training the reward model ({RM_RECIPE.name} -> {rm_dir}, "
              f"{rm.trainer.get('max_steps')} steps)", flush=True)
        try:
            train(rm)
        except UserError as exc:
            print_error(str(exc))
            sys.exit(exc.exit_code)
    print("[rlft] stage 2: PPO with the reward model", flush=True)
    launch(HERE / "rm_ppo.yaml")
