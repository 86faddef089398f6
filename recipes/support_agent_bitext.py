"""The deployed (no-oracle) support agent on Bitext, both stages in one command.

    accelerate launch -q --config_file recipes/accelerate/one_process.yaml recipes/support_agent_bitext.py
    # another seed (each seed draws its own grouped split): seed, model.*, data.*, evaluation.* and
    # trainer.max_steps reach both stages; `head.<key>=<value>` reaches stage 1 only (e.g. head.trainer.max_steps=350);
    # stage 1 writes to the agent's output_dir + "_head"
    accelerate launch -q --config_file recipes/accelerate/one_process.yaml recipes/support_agent_bitext.py seed=1 \
        output_dir=runs/support_agent_bitext_s1

What it does: stage 1 trains the intent head alone (support_agent_bitext_head.yaml: the exact label-space objective
under the agent's system prompt, no replies generated) into runs/support_agent_bitext_head unless that folder holds
a head trained on the same seed already; stage 2 (support_agent_bitext.yaml) starts from that adapter (`adapter.init_from`)
and trains the reply with GRPO on the rubric of the article its own head fetched (`decoding.lookup`).
Figures and caveats: docs/support_agent.md#no-oracle. Delete runs/support_agent_bitext_head to retrain stage 1.
"""

import sys
from pathlib import Path

from rlft.run.launch import launch

HERE = Path(__file__).parent


SHARED = ("seed=", "model.", "data.", "evaluation.", "trainer.max_steps=", "max_train_clock=")
HEAD_ONLY = "head."


def head_recipe(argv: list[str], agent):  # noqa: ANN001, ANN201 - rlft Recipes
    """Stage 1's recipe: the head recipe with the command line's seed, model, data and evaluation overrides and its
    step budget (both stages must see the same model, prompt and split), then the `head.` overrides (stage 1 only,
    prefix removed), written to the agent's output_dir + _head."""
    from rlft.recipe.load import load_recipe

    shared = [a for a in argv if a.startswith(SHARED)]
    own = [a.removeprefix(HEAD_ONLY) for a in argv if a.startswith(HEAD_ONLY)]
    return load_recipe(HERE / "support_agent_bitext_head.yaml",
                       [*shared, *own, f"output_dir={agent.output_dir}_head"])


def reusable(head) -> bool:  # noqa: ANN001 - an rlft Recipe
    """True when stage 1's folder holds a finished head adapter trained on the same split (seed); a folder from
    another seed is a one-line error, never silently reused."""
    import yaml

    from rlft.errors import RecipeError

    folder = Path(head.output_dir)
    if not (folder / "adapter_config.json").is_file():
        return False
    saved = yaml.safe_load((folder / "recipe.yaml").read_text()) if (folder / "recipe.yaml").is_file() else {}
    if (saved or {}).get("seed") != head.seed:
        raise RecipeError(f"{folder}: holds a head trained with seed {(saved or {}).get('seed')}, this run's seed is "
                          f"{head.seed} (another held-out split); delete the folder or pass another output_dir")
    return True


if __name__ == "__main__":
    from rlft.errors import UserError
    from rlft.run.pipeline import train
    from rlft.recipe.load import load_recipe

    argv = [a for a in sys.argv[1:] if not a.startswith("adapter.init_from=")]
    agent_argv = [a for a in argv if not a.startswith(HEAD_ONLY)]
    try:
        agent = load_recipe(HERE / "support_agent_bitext.yaml", agent_argv, check=False)
        head = head_recipe(argv, agent)
        if reusable(head):
            print(f"[rlft] stage 1: reusing the head adapter in {head.output_dir} (delete it to retrain)", flush=True)
        else:
            print(f"[rlft] stage 1: the intent head (support_agent_bitext_head.yaml -> {head.output_dir})",
                  flush=True)
            train(head)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    print("[rlft] stage 2: the agent's reply, from the stage-1 adapter", flush=True)
    sys.argv = [sys.argv[0], *agent_argv, f"adapter.init_from={head.output_dir}"]
    launch(HERE / "support_agent_bitext.yaml")
