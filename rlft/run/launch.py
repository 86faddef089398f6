"""Shared entry for `recipes/*.py` launchers: `accelerate launch -q --config_file CONFIG recipes/X.py [--config FILE]
[key=value ...]`, CONFIG being recipes/accelerate/one_process.yaml for one process (docs/recipes.md#launch).

A user mistake prints one line and exits 2 here. accelerate runs this script as a subprocess and answers any non-zero
exit with a traceback of its own (a `CalledProcessError`) and exit 1; nothing the script does changes that, only
accelerate's `-q` does, so every launch the README shows passes it. With several processes even `-q` prints
torchrun's failure summary after the line (docs/recipes.md#launch says why rlft cannot prevent it)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rlft.errors import UserError, print_error


def launch(default_config: str | Path) -> None:
    """Parse `--config` and overrides, train, exit 2 with one line on a user mistake."""
    parser = argparse.ArgumentParser(description=f"Train {Path(default_config).name} with rlft.")
    parser.add_argument("--config", default=str(default_config), help="recipe YAML (default: %(default)s)")
    parser.add_argument("overrides", nargs="*", help="section.key=value overrides, e.g. trainer.max_steps=10")
    args = parser.parse_args()
    from rlft.cli import finish_message, quiet_library_warnings

    quiet_library_warnings()  # before rlft.run.pipeline: importing it loads bitsandbytes, whose kernels log offline
    from rlft.run.pipeline import train

    try:
        result = train(args.config, args.overrides)
    except UserError as exc:
        print_error(str(exc))
        sys.exit(exc.exit_code)
    sys.exit(finish_message(result, args.config))
