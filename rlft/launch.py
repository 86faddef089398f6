"""Shared entry for `recipes/*.py` launchers: `accelerate launch --config_file CONFIG recipes/X.py [--config FILE]
[key=value ...]`, CONFIG being recipes/accelerate/one_process.yaml for one process (docs/recipes.md#launch)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rlft.errors import UserError


def launch(default_config: str | Path) -> None:
    """Parse `--config` and overrides, train, exit 2 with one line on a user mistake."""
    parser = argparse.ArgumentParser(description=f"Train {Path(default_config).name} with rlft.")
    parser.add_argument("--config", default=str(default_config), help="recipe YAML (default: %(default)s)")
    parser.add_argument("overrides", nargs="*", help="section.key=value overrides, e.g. trainer.max_steps=10")
    args = parser.parse_args()
    from rlft.cli import finish_message, quiet_library_warnings
    from rlft.pipeline import train

    quiet_library_warnings()

    try:
        result = train(args.config, args.overrides)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    sys.exit(finish_message(result, args.config))
