"""Issue 33, the README tour's Python API (block 4) as a new user runs it: from the repository root of a source
checkout whose `rlft.rewards` is not mapped (a non-editable `pip install .`: ./rlft shadows the installed package,
and `rewards/` is a top-level folder), and a user mistake nothing catches (an output_dir that holds a run) is the
CLI's one line, not a `RecipeError` traceback."""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

from tests.conftest import ROOT


def _python(code: str, cwd: Path, source: Path | None = None) -> subprocess.CompletedProcess:
    """This venv's Python without its site hooks (no editable-install finder: nothing maps rlft.rewards), the
    venv's packages on the path after the working directory, as a plain install has them."""
    site = sysconfig.get_paths()["purelib"]
    prelude = f"import sys; sys.path[:0] = ['', *{[str(source)] if source else []!r}, {site!r}]\n"
    return subprocess.run([sys.executable, "-S", "-c", prelude + code], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env={"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"})


def test_rlft_rewards_imports_from_a_source_checkout_without_its_mapping(tmp_path):
    clone = tmp_path / "clone"
    for folder in ("rlft", "rewards"):
        shutil.copytree(ROOT / folder, clone / folder, ignore=shutil.ignore_patterns("__pycache__"))
    done = _python("import rlft, rlft.rewards\nfrom rlft.scoring.loader import builtin_rewards\n"
                   "print(rlft.__file__); print(rlft.rewards.__file__); print(sorted(builtin_rewards()))", clone)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[:2] == [str(clone / "rlft" / "__init__.py"), str(clone / "rewards" / "__init__.py")]
    assert lines[2] == "['intent', 'intent_format', 'judge', 'length', 'reward_model', 'rubric']"


def test_an_uncaught_user_error_in_a_script_is_one_line(tmp_path, tiny_model_dir):
    run = tmp_path / "runs" / "intent_grpo"
    run.mkdir(parents=True)
    (run / "adapter_config.json").write_text("{}")  # a run is already there (README command 1)
    done = _python(f"import rlft\nrecipe = rlft.load_recipe({str(ROOT / 'recipes' / 'intent_grpo.yaml')!r}, "
                   f"['trainer.max_steps=50', 'model.name={tiny_model_dir}'])\nresult = rlft.train(recipe)\n",
                   tmp_path, ROOT)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr, done.stderr
    assert done.stderr.splitlines()[-1] == (
        f"error: {ROOT / 'recipes' / 'intent_grpo.yaml'}: output_dir: 'runs/intent_grpo' already holds files "
        "(adapter_config.json); set trainer.resume_from_checkpoint=last to continue that run, overwrite=true to "
        "replace it, or choose another output_dir"), done.stderr


def test_other_exceptions_keep_their_traceback(tmp_path):
    done = _python("import rlft\nraise ValueError('a bug')\n", tmp_path, ROOT)
    assert done.returncode == 1
    assert "Traceback (most recent call last)" in done.stderr and done.stderr.splitlines()[-1] == "ValueError: a bug"
