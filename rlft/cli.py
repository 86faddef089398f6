"""Command line: `rlft train RECIPE [key=value ...]`, `rlft validate RECIPE [key=value ...]`.

Subcommands parse and hand off to the library. A user mistake (`UserError`) prints one line and exits 2;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from rlft.errors import UserError
from rlft.eval_run import add_eval_parser
from rlft.labeling.cli import add_generate_parser, add_label_parser


def _train(args: argparse.Namespace) -> int:
    from rlft.pipeline import train

    result = train(args.recipe, args.overrides)
    print(f"[rlft] adapter, recipe, metrics and model card in {result.output_dir}")
    return 0


def _validate(args: argparse.Namespace) -> int:
    from rlft.recipe import load_recipe

    recipe = load_recipe(args.recipe, args.overrides)
    print(f"{args.recipe}: ok ({recipe.algorithm}, {len(recipe.rewards)} reward(s), model {recipe.model.name})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rlft", description="Reinforcement fine-tuning with pluggable rewards.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, func, help_text in (("train", _train, "train a recipe"),
                                  ("validate", _validate, "check a recipe without loading a model")):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("recipe", help="recipe YAML file")
        p.add_argument("overrides", nargs="*", help="section.key=value overrides, e.g. trainer.max_steps=10")
        p.set_defaults(func=func)
    add_label_parser(sub)
    add_generate_parser(sub)
    add_eval_parser(sub)
    return parser


def quiet_library_warnings() -> None:
    """transformers 5 deprecates the `gradient_checkpointing` name TRL still uses; the warning is not actionable."""
    import warnings

    warnings.filterwarnings("ignore", message=".*gradient_checkpointing.*deprecated", category=FutureWarning)


def run(argv: Sequence[str] | None = None, entry: Callable[[argparse.Namespace], int] | None = None) -> int:
    quiet_library_warnings()
    args = build_parser().parse_args(argv)
    try:
        return (entry or args.func)(args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def main() -> None:
    sys.exit(run())
