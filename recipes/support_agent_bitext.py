"""The deployed (no-oracle) support agent on Bitext, its stages in one command.

    accelerate launch -q --config_file recipes/accelerate/one_process.yaml recipes/support_agent_bitext.py
    # another seed (each seed draws its own grouped split): seed, model.*, data.*, evaluation.*, max_train_clock and
    # trainer.max_steps reach stages 1 and 2; `head.<key>=<value>` reaches stage 1 only (e.g. head.trainer.max_steps=350),
    # `rft.<key>=<value>` the rft stage only (e.g. rft.prompts=216); rounds=N runs the rft stage N times, each round
    # from the last (expert iteration; round k draws other prompts); head_again=STEPS (default 100; 0: none) is the
    # stage between GRPO and rft that trains the head alone again (`refresh.<key>=<value>` reaches it only); stage 1 writes
    # to output_dir + "_head", stage 2 to output_dir + "_grpo", the head-again stage to output_dir + "_refresh", rft
    # round k < N to output_dir + "_rft<k>", the last round (the agent) to output_dir
    accelerate launch -q --config_file recipes/accelerate/one_process.yaml recipes/support_agent_bitext.py seed=1 \
        output_dir=runs/support_agent_bitext_s1

What it does: stage 1 trains the intent head alone (support_agent_bitext_head.yaml: the exact label-space objective
under the agent's system prompt, no replies generated); stage 2 (support_agent_bitext.yaml) starts from that adapter
(`adapter.init_from`) and trains the reply with GRPO on the rubric of the article its own head fetched
(`decoding.lookup`); stage 3 (support_agent_bitext_refresh.yaml, `head_again=STEPS` steps, default 100,
`head_again=0`: skipped) trains the head alone again from stage 2's adapter (stage 2 lets the head drift); the last
stage (support_agent_bitext_rft.yaml) is rejection-sampling fine-tuning from the stage before, hints appended to the
greedy (deployed) reply, at its end and after each earlier sentence, where no sampled reply passes, with an
unlikelihood term where a hinted reply departs from it (`algorithm: rft`), run ROUNDS = 2 times (`rounds=N`), each
round from the last on other prompts, the rounds after the first also pushing down where a kept sample leaves a
failing deployed reply (LATER_ROUNDS: `rft.departures=all`) (docs/support_agent.md#refresh, #unlikelihood,
#round-2). A stage whose folder already holds a finished adapter trained on the same seed is reused, not retrained
(delete the folder to retrain it).
Figures and caveats: docs/support_agent.md#no-oracle.
"""

import dataclasses
import sys
from pathlib import Path

HERE = Path(__file__).parent

SHARED = ("seed=", "model.", "data.", "evaluation.", "max_train_clock=")
HEAD_ONLY, REFRESH_ONLY, RFT_ONLY = "head.", "refresh.", "rft."
ROUNDS = 2  # rft rounds (`rounds=N` on the command line)
LATER_ROUNDS = ["rft.departures=all"]  # rounds after the first also push down where a kept sample leaves a failing
# deployed reply (a label the first round's fine-tune left in the reply's first words; docs/support_agent.md#round-2)
HEAD_AGAIN = 100  # steps of the head-again stage between GRPO and rft (`head_again=STEPS`); 0: no such stage


def stage_recipes(argv: list[str]) -> tuple:  # -> rlft Recipes
    """(head, grpo, [head again,] rft round 1, ..., rft round N): each stage's recipe file with its share of the
    command line and its output folder."""
    from rlft.recipe.load import load_recipe

    rounds = _whole(argv, "rounds", ROUNDS, minimum=1)
    head_again = _whole(argv, "head_again", HEAD_AGAIN, minimum=0)
    argv = [a for a in argv if not a.startswith(("rounds=", "head_again="))]
    shared = [a for a in argv if a.startswith(SHARED)]
    head_own = [a.removeprefix(HEAD_ONLY) for a in argv if a.startswith(HEAD_ONLY)]
    refresh_own = [a.removeprefix(REFRESH_ONLY) for a in argv if a.startswith(REFRESH_ONLY)]
    rft_own = [a for a in argv if a.startswith(RFT_ONLY)]
    grpo_own = [a for a in argv if not a.startswith((HEAD_ONLY, REFRESH_ONLY, RFT_ONLY, "adapter.init_from="))]
    out = next((a.partition("=")[2] for a in reversed(argv) if a.startswith("output_dir=")), None)
    out = out or load_recipe(HERE / "support_agent_bitext_rft.yaml", shared, check=False).output_dir
    steps = [a for a in argv if a.startswith("trainer.max_steps=")]
    head = load_recipe(HERE / "support_agent_bitext_head.yaml", [*shared, *steps, *head_own, f"output_dir={out}_head"])
    grpo = load_recipe(HERE / "support_agent_bitext.yaml",
                       [*grpo_own, f"output_dir={out}_grpo", f"adapter.init_from={out}_head"], check=False)
    again = [load_recipe(HERE / "support_agent_bitext_refresh.yaml",
                         [*shared, f"trainer.max_steps={head_again}", *refresh_own, f"output_dir={out}_refresh",
                          f"adapter.init_from={out}_grpo"], check=False)] if head_again else []
    folders = [f"{out}_refresh" if head_again else f"{out}_grpo", *(f"{out}_rft{k}" for k in range(1, rounds)), out]
    rft = [load_recipe(HERE / "support_agent_bitext_rft.yaml",
                       [*shared, *(LATER_ROUNDS if k > 1 else []), *rft_own, f"rft.round={k}",
                        f"output_dir={folders[k]}",
                        f"adapter.init_from={folders[k - 1]}", *([] if k == rounds else ["evaluation.after=false"])],
                       check=False) for k in range(1, rounds + 1)]
    return head, grpo, *again, *rft


def _whole(argv: list[str], key: str, default: int, minimum: int) -> int:
    """The last `key=N` of the command line as a whole number >= minimum (a one-line error otherwise)."""
    from rlft.errors import RecipeError

    given = [a.partition("=")[2] for a in argv if a.startswith(f"{key}=")]
    if given and not (given[-1].isdigit() and int(given[-1]) >= minimum):
        raise RecipeError(f"{key}: expected a whole number >= {minimum}, got {given[-1]!r}")
    return int(given[-1]) if given else default


def reusable(recipe) -> bool:  # noqa: ANN001 - an rlft Recipe
    """True when the stage's folder holds a finished adapter trained on the same split (seed); a folder from another
    seed is a one-line error, never silently reused."""
    import yaml

    from rlft.errors import RecipeError

    folder = Path(recipe.output_dir)
    if not (folder / "adapter_config.json").is_file():
        return False
    saved = yaml.safe_load((folder / "recipe.yaml").read_text()) if (folder / "recipe.yaml").is_file() else {}
    if (saved or {}).get("seed") != recipe.seed:
        raise RecipeError(f"{folder}: holds an adapter trained with seed {(saved or {}).get('seed')}, this run's seed "
                          f"is {recipe.seed} (another held-out split); delete the folder or pass another output_dir")
    return True


def main(argv: list[str]) -> int:
    from rlft.cli import quiet_library_warnings

    quiet_library_warnings()
    from rlft.errors import UserError, print_error
    from rlft.recipe.validate import validate
    from rlft.run.pipeline import train

    try:
        stages = stage_recipes(argv)
        for recipe in stages[1:]:  # every stage's mistakes before stage 1 trains (its start is not trained yet)
            validate(dataclasses.replace(recipe, adapter=dataclasses.replace(recipe.adapter, init_from=None)))
        rounds = sum(recipe.algorithm == "rft" for recipe in stages)
        names = {"1": "the intent head", "2": "the reply by GRPO"}
        if len(stages) > 2 + rounds:
            names["3"] = "the intent head again"
        last = str(len(names) + 1)
        for k in range(1, rounds + 1):
            name = "rejection-sampling fine-tuning" + (" (the agent)" if k == rounds else "")
            names[last if rounds == 1 else f"{last}.{k}"] = name + (f", round {k} of {rounds}" if rounds > 1 else "")
        for recipe, (number, name) in zip(stages, names.items(), strict=True):
            if reusable(recipe):
                print(f"[rlft] stage {number}: reusing {recipe.output_dir} (delete it to retrain)", flush=True)
                continue
            print(f"[rlft] stage {number}: {name} ({Path(recipe.source_file).name} -> {recipe.output_dir})",
                  flush=True)
            train(recipe)
    except UserError as exc:
        print_error(str(exc))
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
