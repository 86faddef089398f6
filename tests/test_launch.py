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


def test_a_mistake_under_several_processes_is_rlfts_line_then_torchruns_summary(tmp_path):
    """What is true under `accelerate launch -q --num_processes 2` (docs/recipes.md#launch): every rank prints rlft's
    one line and exits 2; the torchrun agent inside accelerate's own process then logs its lines and accelerate
    prints the ChildFailedError summary (root cause exit code 2) and exits 1. No rlft code runs in that process, so
    the one-line, exit-2 form is `rlft validate` (below) or `rlft train` in one process."""
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf_home"), "OMP_NUM_THREADS": "1"}
    line = "error: command line: trainer.max_steps: expected int, got 'abc'"
    accelerate = Path(sys.executable).with_name("accelerate")
    command = [str(accelerate), "launch", "-q", "--config_file", "recipes/accelerate/cpu_2proc.yaml",
               "--num_processes", "2", "recipes/intent_grpo.py", "trainer.max_steps=abc"]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stderr  # accelerate's, whatever the script's code
    lines = done.stderr.splitlines()
    assert lines[0] == line  # rlft's line comes first (a rank prints it before it exits)
    assert {x for x in lines if x.startswith("error:")} == {line} and lines.count(line) in (1, 2)  # once per rank
    assert "recipes/intent_grpo.py FAILED" in done.stderr and "Root Cause (first observed failure):" in done.stderr
    assert re.search(r"exitcode\s*: 2 ", done.stderr), done.stderr  # the ranks' own code, shown in the summary
    assert "Traceback (most recent call last)" not in done.stderr
    assert done.stdout == ""

    rlft = Path(sys.executable).with_name("rlft")
    checked = subprocess.run([str(rlft), "validate", "recipes/intent_grpo.yaml", "trainer.max_steps=abc"], cwd=ROOT,
                             env=env, capture_output=True, text=True, timeout=300)
    assert (checked.returncode, checked.stderr.splitlines()) == (2, [line]), checked.stderr
