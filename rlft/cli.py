"""Command line: `rlft train|validate|check RECIPE [key=value ...]`, `rlft eval`, `rlft export RUN_DIR`,
`rlft --version`.

Subcommands parse and hand off to the library. A user mistake (`UserError`) prints one line and exits 2; a run
that a reward's limit stopped early (a judge's budget or error rate) exits 3 unless the recipe counts that stop
as success (the judge's `on_limit: finish`); anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from rlft.errors import UserError, print_error
from rlft.evaluation.eval_models import add_eval_parser
from rlft.run.export import add_export_parser
from rlft.data.labeling.commands import add_generate_parser, add_label_parser


STOPPED_EARLY = 3


def command_name() -> str:
    """How the user runs rlft: `rlft` when that name on PATH is this rlft (an active venv, a global install), else
    the script as it was started (`.venv/bin/rlft`), else the `rlft` script next to this Python."""
    import os
    import shutil
    from pathlib import Path

    on_path = shutil.which("rlft")
    started = Path(sys.argv[0]) if sys.argv and sys.argv[0] else None
    script = started if started is not None and started.name == "rlft" and started.is_file() else \
        Path(sys.executable).parent / "rlft"
    if not script.is_file():
        return "rlft"
    if on_path and os.path.samefile(on_path, script):
        return "rlft"
    if script is started:
        return str(started)
    try:
        return str(script.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(script)


def finish_message(result: object, recipe: str | None = None) -> int:
    """Print where the run went and what to run next (evaluating with the run's own resolved recipe.yaml, which
    keeps command-line overrides); return the exit code (3: stopped early, not a success). `recipe` is unused: the
    recipe file given may not be the run's (overrides)."""
    out = result.output_dir
    rlft = command_name()
    print(f"[rlft] adapter, recipe, metrics and model card in {out}", flush=True)
    print(f"[rlft] next: {rlft} eval {out}/recipe.yaml --model base --model {out} --out {out}/eval   "
          f"(serving it: {rlft} export {out} --merged, docs/evaluation.md#serving)", flush=True)
    stop = getattr(result, "stopped_early", None)
    if stop:
        print(f"error: training stopped early: {stop['reason']}" if not stop["ok"] else
              f"[rlft] training stopped early ({stop['kind']}), counted as success: {stop['reason']}",
              file=sys.stderr if not stop["ok"] else sys.stdout, flush=True)
        return 0 if stop["ok"] else STOPPED_EARLY
    return 0


def _train(args: argparse.Namespace) -> int:
    from rlft.run.pipeline import train

    return finish_message(train(args.recipe, args.overrides), args.recipe)


def _validate(args: argparse.Namespace) -> int:
    from rlft.recipe.load import load_recipe

    recipe = load_recipe(args.recipe, args.overrides)
    print(f"{args.recipe}: ok ({recipe.algorithm}, {len(recipe.rewards)} reward(s), model {recipe.model.name})")
    return 0


def _check(args: argparse.Namespace) -> int:
    from rlft.recipe.check import run_check

    return run_check(args)


def build_parser() -> argparse.ArgumentParser:
    from rlft import __version__

    parser = argparse.ArgumentParser(prog="rlft", description="Reinforcement fine-tuning with pluggable rewards.")
    parser.add_argument("--version", action="version", version=f"rlft {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, func, help_text in (("train", _train, "train a recipe"),
                                  ("validate", _validate, "check a recipe without loading a model"),
                                  ("check", _check, "dry run: data, model, rewards, zero-variance forecast, judge "
                                   "cost, memory and step time (exit 1 broken reward, 4 over budget)")):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("recipe", help="recipe YAML file, or a bundled recipe's name "
                                      "(intent_grpo: recipes/intent_grpo.yaml)")
        p.add_argument("overrides", nargs="*", help="section.key=value overrides, e.g. trainer.max_steps=10")
        p.set_defaults(func=func)
    add_label_parser(sub)
    add_generate_parser(sub)
    add_eval_parser(sub)
    add_export_parser(sub)
    return parser


def quiet_library_warnings() -> None:
    """transformers 5 deprecates the `gradient_checkpointing` name TRL still uses; the warning is not actionable."""
    import warnings

    warnings.filterwarnings("ignore", message=".*gradient_checkpointing.*deprecated", category=FutureWarning)
    # transformers 5 renamed `past_key_values` to `cache`; TRL and PEFT still pass the old name on every forward
    warnings.filterwarnings("ignore", message=".*past_key_values.*deprecated", category=FutureWarning)
    # bitsandbytes' `kernels` says on stderr, offline, that it skips a hub check it cannot make: not actionable, and
    # it broke rlft's one-line errors the first time TRL was imported (the trainer-schema cache build)
    import logging

    logging.getLogger("kernels._internals.hf_hub").addFilter(
        lambda record: "Skipping publisher trust check" not in record.getMessage())


def bundled_recipe(name: str) -> str:
    """A recipe named without its folder and suffix (`intent_grpo`) is the bundled `recipes/intent_grpo.yaml` of
    the checkout you run in; anything else, an existing file included, is kept as given."""
    from pathlib import Path

    bundled = Path("recipes") / f"{name}.yaml"
    if Path(name).exists() or Path(name).suffix or "/" in name or not bundled.is_file():
        return name
    return str(bundled)


def run(argv: Sequence[str] | None = None, entry: Callable[[argparse.Namespace], int] | None = None) -> int:
    quiet_library_warnings()
    args = build_parser().parse_args(argv)
    if args.command in ("train", "validate", "check"):
        args.recipe = bundled_recipe(args.recipe)
    try:
        return (entry or args.func)(args)
    except UserError as exc:
        print_error(str(exc))
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def main() -> None:
    sys.exit(run())
