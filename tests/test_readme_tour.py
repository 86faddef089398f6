"""Issue 33: the README as a new user runs it, on an install like a fresh clone's.

A clone is the tracked files copied to a temporary folder, with a `.venv` there that has rlft installed from it the
way README command 1 does (`pip install .`, not editable, so `./rlft` shadows the installed package when Python starts
in the clone) and this venv's packages (torch, TRL, the embedded model) on its path; `.venv/bin/rlft` and
`.venv/bin/accelerate` are called by path, as the README calls them. Commands run through bash exactly as written;
the only additions are `section.key=value` overrides appended to a command (the README's own way to change a recipe)
that put the tiny random model in place of SmolLM2 and shrink the run to one step.

The slow test runs README command 1's launch and then every block of the tour, in order, in one clone; the fast ones
check what needs no training: block 1 is the recipe it abridges, block 2's `validate` line, its data line and its
launch line (as a second launch into the same folder: one line, no accelerate traceback).
"""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT

README = (ROOT / "README.md").read_text()
TOUR = README.split("## A 5-minute tour", 1)[1].split("\n## ", 1)[0]


def _blocks(lang: str, text: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", text, flags=re.S)


def _step(number: int) -> str:
    """The text of tour block `number` (from its bold `**N.` heading to the next one)."""
    return re.split(r"\n\*\*\d\. ", "\n" + TOUR)[number]


def _commands(block: str) -> list[str]:
    """A bash block's commands as bash reads them: continuation lines kept, `#` lines (shown output) dropped."""
    return [c for c in re.split(r"(?<!\\)\n", block.strip()) if c and not c.startswith("#")]


def _tiny(model: Path) -> list[str]:
    """Overrides that make a README training a one-step run of the tiny model."""
    return [f"model.name={model}", "trainer.max_steps=1", "evaluation.max_samples=4",
            "trainer.per_device_train_batch_size=8", "trainer.num_generations=4", "trainer.max_completion_length=8",
            "signal.refill_rounds=0", "signal.drop_zero_std=false"]


def _clone(dest: Path) -> Path:
    """The tracked files, a `.venv` with rlft installed from them (not editable) and this venv's packages."""
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    for rel in filter(None, tracked.decode().split("\0")):
        source = ROOT / rel
        if source.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            (dest / rel).write_bytes(source.read_bytes())
    venv = dest / ".venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    purelib = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    # a path line, not a site dir: this venv's own .pth files (its editable rlft finder) are not run there
    (Path(purelib) / "_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps",
                    "--no-build-isolation", "--no-index", str(dest)], check=True, capture_output=True)
    accelerate = venv / "bin" / "accelerate"
    accelerate.write_text(f"#!{python}\nimport sys\nfrom accelerate.commands.accelerate_cli import main\n\n"
                          "sys.exit(main())\n")
    accelerate.chmod(0o755)
    return dest


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
    # HF_HOME without an accelerate config: what a fresh machine has
    return {**env, "HF_HOME": str(home), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
            "TOKENIZERS_PARALLELISM": "false"}


def _bash(command: str, clone: Path, extra: list[str] | None = None,
          timeout: int = 900) -> subprocess.CompletedProcess:
    line = command + "".join(f" {x}" for x in extra or [])
    return subprocess.run(["bash", "-c", line], cwd=clone, env=_env(clone.parent / "hf_home"), capture_output=True,
                          text=True, timeout=timeout)


def _flat(value: object, prefix: str = "") -> dict[str, object]:
    if isinstance(value, dict):
        return {k: v for key, sub in value.items() for k, v in _flat(sub, f"{prefix}{key}.").items()}
    return {prefix.rstrip("."): value}


def test_every_readme_launch_is_quiet():
    launches = [c for b in _blocks("bash", README) for c in _commands(b) if "accelerate launch" in c]
    assert len(launches) == 2  # README command 1 and tour block 2
    assert all("accelerate launch -q " in c for c in launches), launches


def test_tour_block_1_is_the_recipe_it_abridges():
    shown = yaml.safe_load(_blocks("yaml", _step(1))[0])
    recipe = yaml.safe_load((ROOT / "recipes" / "intent_grpo.yaml").read_text())
    rewards = shown.pop("rewards")
    assert [{k: r[k] for k in item} for item, r in zip(rewards, recipe["rewards"], strict=True)] == rewards
    wrong = {k: (v, _flat(recipe).get(k)) for k, v in _flat(shown).items() if _flat(recipe).get(k) != v}
    assert wrong == {}


def test_tour_block_2_as_written_on_a_fresh_clone(tmp_path):
    clone = _clone(tmp_path / "clone")
    validate, write_data, launch = _commands(_blocks("bash", _step(2))[0])

    done = _bash(validate, clone)
    shown = next(line for line in _step(2).splitlines() if line.startswith("# error:"))[2:].removesuffix("...")
    assert done.returncode == 2 and done.stderr.startswith(shown), done.stderr

    assert _bash(write_data, clone).returncode == 0
    with (clone / "my_tickets.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 300 and set(rows[0]) == {"utterance", "intent"}
    prose = _step(2).split("```", 2)[2]
    assert "`utterance` column" in prose and "`intent` column" in prose  # the columns it needs, named

    # the launch names its own output_dir (command 1's runs/intent_grpo holds a run); launched again into it, it is
    # refused in one line: accelerate's -q keeps its CalledProcessError traceback off the screen
    assert "output_dir=runs/my_tickets" in launch
    (clone / "runs" / "my_tickets").mkdir(parents=True)
    (clone / "runs" / "my_tickets" / "adapter_config.json").write_text("{}")
    done = _bash(launch, clone)
    assert done.returncode == 1, done.stderr
    assert done.stderr.splitlines() == [
        "error: command line: output_dir: 'runs/my_tickets' already holds files (adapter_config.json); set "
        "trainer.resume_from_checkpoint=last to continue that run, overwrite=true to replace it, or choose another "
        "output_dir"], done.stderr


@pytest.mark.slow  # 12.5 min beside two trainings on two cores: seven commands, each a new Python
def test_readme_command_1_then_the_whole_tour_in_order(tmp_path, tiny_model_dir):
    clone = _clone(tmp_path / "clone")
    tiny = _tiny(tiny_model_dir)

    # README command 1: the install is the clone's; its launch trains runs/intent_grpo
    command_1 = _blocks("bash", README.split("## Two commands", 1)[1])[0]
    install = [c.strip() for c in re.sub(r"\\\n\s*", " ", command_1).split(" && ")]
    assert ".venv/bin/pip install ." in install and install[-1].startswith(".venv/bin/accelerate launch -q ")
    done = _bash(install[-1], clone, tiny)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (clone / "runs" / "intent_grpo" / "adapter_model.safetensors").is_file()

    # block 2: validate, write the data, train on it into a new folder; its next: line runs as printed
    validate, write_data, launch = _commands(_blocks("bash", _step(2))[0])
    assert _bash(validate, clone).returncode == 2
    assert _bash(write_data, clone).returncode == 0
    done = _bash(launch, clone, tiny)
    assert done.returncode == 0, done.stderr[-3000:]
    run = clone / "runs" / "my_tickets"
    assert yaml.safe_load((run / "recipe.yaml").read_text())["data"]["source"] == "my_tickets.csv"
    assert (run / "report" / "report.md").is_file() and (run / "report" / "traces.html").is_file()
    next_line = next(line for line in done.stdout.splitlines() if "[rlft] next: " in line)
    evaluate = next_line.split("[rlft] next: ", 1)[1].split("   (", 1)[0]
    assert evaluate.startswith(".venv/bin/rlft eval runs/my_tickets/recipe.yaml "), evaluate
    done = _bash(evaluate, clone)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (run / "eval" / "report.md").is_file()

    # block 3: the reward file, and a recipe with the rewards it shows (rlft check runs them on real samples)
    (clone / "my_rewards.py").write_text(_blocks("python", _step(3))[0])
    recipe = yaml.safe_load((clone / "recipes" / "intent_grpo.yaml").read_text())
    recipe.update(yaml.safe_load(_blocks("yaml", _step(3))[0]), output_dir="runs/intent_check")
    (clone / "my_recipe.yaml").write_text(yaml.safe_dump(recipe))

    # block 4: the Python API from the clone's root (./rlft shadows the installed package there)
    code = _blocks("python", _step(4))[0]
    readme_overrides = '"output_dir=runs/intent_brevity"]'
    assert readme_overrides in code
    code = code.replace(readme_overrides, readme_overrides[:-1] + "".join(f", {x!r}" for x in tiny) + "]")
    (clone / "tour.py").write_text(code)
    done = _bash(".venv/bin/python tour.py", clone)
    assert done.returncode == 0, done.stderr[-3000:]
    adapter_dir, eval_after = done.stdout.strip().splitlines()[-1].split(" ", 1)
    assert Path(adapter_dir) == Path("runs/intent_brevity") and "'reward/brevity'" in eval_after

    # block 5: the recipes it names exist
    for name in re.findall(r"`(recipes/[a-z_]+\.yaml)`", _step(5)):
        assert (clone / name).is_file(), name

    # block 6: check, evaluate and export, RECIPE being block 3's recipe / command 1's
    check, evaluate, export = re.findall(r"`(\.venv/bin/rlft [^`]+)`", _step(6).replace("\n", " "))
    done = _bash(check.replace("RECIPE", "my_recipe.yaml"), clone, tiny)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "brevity" in done.stdout
    done = _bash(evaluate.replace("RECIPE", "recipes/intent_grpo.yaml " + " ".join(tiny)), clone)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((clone / "runs" / "intent_grpo" / "eval" / "report.json").read_text())
    assert len(report["models"]) == 2
    done = _bash(export, clone)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (clone / "runs" / "intent_grpo" / "export" / "serving.json").is_file()
