"""Launching a recipe: every documented `accelerate launch` names an accelerate config, and launching with the
documented one prints none of accelerate's "values were not passed ... `--num_processes` was set to a value of `0`"
warning (its fallback when no config exists, e.g. a fresh machine). See docs/recipes.md#launch."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

from tests.conftest import ROOT

ONE_PROCESS = "recipes/accelerate/one_process.yaml"
DOCUMENTED = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "recipes").glob("*.py")),
              *sorted((ROOT / "recipes").glob("*.yaml")), ROOT / "rlft" / "run" / "launch.py"]


def _launch_commands(path: Path) -> list[str]:
    text = re.sub(r"\\\n[#\s]*", " ", path.read_text())  # join shell continuations (also inside `#` comments)
    return [m.group(0) for m in re.finditer(r"accelerate launch[^\n`]*", text)  # runnable ones, not `recipes/*.py`
            if re.search(r"recipes/[a-z0-9_]+\.py", m.group(0)) or " -m rlft" in m.group(0)]


def test_every_documented_launch_names_an_accelerate_config():
    found = {path.relative_to(ROOT).as_posix(): _launch_commands(path) for path in DOCUMENTED}
    assert sum(len(c) for c in found.values()) >= 20, found  # the recipes' docstrings, README, docs
    bare = [(name, c) for name, cmds in found.items() for c in cmds if "--config_file" not in c]
    assert bare == []


def test_one_process_config_is_one_local_process_without_forced_precision():
    config = yaml.safe_load((ROOT / ONE_PROCESS).read_text())
    assert config == {"compute_environment": "LOCAL_MACHINE", "distributed_type": "NO", "num_machines": 1,
                      "num_processes": 1, "machine_rank": 0, "mixed_precision": "no", "gpu_ids": "0"}


def test_launch_with_the_documented_config_prints_no_defaults_warning(tmp_path):
    # HF_HOME without accelerate/default_config.yaml: what a fresh machine has (a user's own config would hide it)
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf_home"), "OMP_NUM_THREADS": "1"}
    accelerate = Path(sys.executable).with_name("accelerate")
    command = [str(accelerate), "launch", "--config_file", ONE_PROCESS, "recipes/intent_grpo.py", "--help"]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "usage: intent_grpo.py" in done.stdout  # the launcher ran the recipe script
    assert "had defaults used instead" not in done.stderr, done.stderr
    assert "was set to a value of" not in done.stderr, done.stderr
