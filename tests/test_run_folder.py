"""Issue 33: a run's folder is never trained over. `trainer.resume_from_checkpoint=last` on a finished run that has no
checkpoint started fresh in place and rewrote its adapter, metrics, recipe and card; a second run into a folder whose
first run had written only its recipe.yaml passed the guard and replaced that recipe. Now a finished run is refused
(one line, exit 2, every file as it was) and a running run holds its folder with an in-progress marker (pid, host)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rlft.cli import run
from rlft.recipe.sections import Recipe
from rlft.run.outputs import IN_PROGRESS, claim_output_dir, held_output_dir

RECIPE = """algorithm: grpo
output_dir: {out}
seed: {seed}
model: {{name: {model}}}
data: {{source: demo:intents, demo_size: 40}}
rewards:
  - name: intent
  - name: {gate}:wait_for_go
    weight: 0.0
trainer: {{max_steps: 1, per_device_train_batch_size: 4, num_generations: 4, max_completion_length: 8,
          save_strategy: steps, save_steps: 1}}
evaluation: {{before: false, after: false}}
"""
# The first run's reward waits for the test's go-ahead, so the second run surely starts while the first one trains.
GATE = """import os, time

def wait_for_go(prompts, completions, **kwargs):
    deadline = time.time() + 120
    while not os.path.exists({go!r}) and time.time() < deadline:
        time.sleep(0.05)
    return [0.0] * len(completions)
"""


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory, tiny_model_dir):
    """A real `rlft train` subprocess, and a second run into the same folder started while the first trains; then
    the finished first run's folder (with its checkpoint-1)."""
    tmp = tmp_path_factory.mktemp("two_runs")
    out, go = tmp / "run", tmp / "go"
    gate = tmp / "gate.py"
    gate.write_text(GATE.format(go=str(go)))
    first, second = tmp / "first.yaml", tmp / "second.yaml"
    first.write_text(RECIPE.format(out=out, seed=1, model=tiny_model_dir, gate=gate))
    second.write_text(RECIPE.format(out=out, seed=2, model=tiny_model_dir, gate=gate))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "rlft", "train", str(first)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env, cwd=tmp)
    try:
        deadline = time.time() + 240
        while not (out / "recipe.yaml").is_file() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        assert (out / "recipe.yaml").is_file(), proc.communicate(timeout=60)[0] if proc.poll() is not None else ""
        marker = json.loads((out / IN_PROGRESS).read_text())
        held = _files(out)
        with contextlib.redirect_stderr(io.StringIO()) as err:
            code = run(["train", str(second)])
        after_second = _files(out)
    finally:
        go.write_text("go")
        log = proc.communicate(timeout=400)[0]
    assert proc.returncode == 0, log
    return {"out": out, "first": first, "second": second, "marker": marker, "pid": proc.pid, "held": held,
            "code": code, "err": err.getvalue(), "after_second": after_second}


def test_a_second_run_into_a_running_runs_folder_is_refused(two_runs):
    out, marker = two_runs["out"], two_runs["marker"]
    assert marker["pid"] == two_runs["pid"] and marker["host"] == socket.gethostname()
    assert two_runs["code"] == 2
    assert two_runs["err"].strip() == (f"error: {two_runs['second']}: output_dir: '{out}' is in use by another rlft "
                                       f"run (pid {marker['pid']} on {marker['host']}, since {marker['started']}); "
                                       f"wait for it to end or choose another output_dir")
    assert two_runs["after_second"] == two_runs["held"]  # the first run's recipe.yaml (seed 1) stays
    assert "seed: 1" in (out / "recipe.yaml").read_text()


def test_the_marker_goes_when_the_run_ends(two_runs):
    out = two_runs["out"]
    assert not (out / IN_PROGRESS).exists()
    assert {"recipe.yaml", "metrics.json", "adapter_model.safetensors", "README.md"} <= {p.name for p in out.iterdir()}


def test_resume_last_on_a_finished_run_without_a_checkpoint_is_refused(two_runs, tmp_path, capsys):
    out, first = two_runs["out"], two_runs["first"]
    bare = tmp_path / "bare"  # the same finished run, saved without checkpoints (TRL's default save_strategy: no)
    shutil.copytree(out, bare, ignore=shutil.ignore_patterns("checkpoint-*"))
    before = _files(bare)
    assert run(["train", str(first), f"output_dir={bare}", "trainer.resume_from_checkpoint=last"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"error: command line: trainer.resume_from_checkpoint: '{bare}' holds a finished run "
                   f"(metrics.json, adapter_model.safetensors, README.md) and no complete checkpoint-* to resume, so "
                   f"'last' would train again from scratch over it; train on from its adapter in another output_dir "
                   f"(adapter.init_from={bare}), or set overwrite=true to replace it")
    assert _files(bare) == before


def test_resume_last_on_a_finished_run_at_its_last_checkpoint_asks_for_more_steps(two_runs, capsys):
    out, first = two_runs["out"], two_runs["first"]
    before = _files(out)
    assert (out / "checkpoint-1").is_dir()
    assert run(["train", str(first), "trainer.resume_from_checkpoint=last"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err == (f"error: {first}: trainer.resume_from_checkpoint: '{out}' holds a finished run whose last "
                   f"checkpoint (checkpoint-1) is at step 1, and trainer.max_steps=1 leaves nothing to train "
                   f"(resuming would only rewrite its metrics); raise trainer.max_steps to train further")
    assert _files(out) == before


def test_the_second_runs_refusal_names_the_owner(tmp_path, capsys):
    """The same refusal, one line, from a marker whose process (here: a sleeping child) is alive."""
    out = tmp_path / "run"
    out.mkdir()
    (out / "recipe.yaml").write_text("the first run's recipe")
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        owner = {"pid": child.pid, "host": socket.gethostname(), "started": "2025-01-01 10:00:00"}
        (out / IN_PROGRESS).write_text(json.dumps(owner))
        with pytest.raises(Exception) as info:
            with held_output_dir(Recipe(output_dir=str(out)), "r.yaml"):
                pass
        assert str(info.value) == (f"r.yaml: output_dir: '{out}' is in use by another rlft run (pid {child.pid} on "
                                   f"{socket.gethostname()}, since 2025-01-01 10:00:00); wait for it to end or choose "
                                   f"another output_dir")
        with pytest.raises(Exception, match="is in use by another rlft run"):  # the guard itself checks it too
            claim_output_dir(Recipe(output_dir=str(out), overwrite=True))
        assert json.loads((out / IN_PROGRESS).read_text()) == owner
        assert (out / "recipe.yaml").read_text() == "the first run's recipe"
    finally:
        child.kill()
        child.wait()


def test_a_stale_marker_is_taken_over_and_released_also_on_error(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "recipe.yaml").write_text("a run killed with -9 before training")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # its pid is gone
    (out / IN_PROGRESS).write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname()}))
    with held_output_dir(Recipe(output_dir=str(out)), "r.yaml") as held:
        assert held == out and json.loads((out / IN_PROGRESS).read_text())["pid"] == os.getpid()
    assert not (out / IN_PROGRESS).exists()
    with pytest.raises(RuntimeError):
        with held_output_dir(Recipe(output_dir=str(out)), "r.yaml"):
            raise RuntimeError("the run failed")
    assert sorted(p.name for p in out.iterdir()) == ["recipe.yaml"]
    (out / IN_PROGRESS).write_text("{")  # half-written by a killed run: stale too
    with held_output_dir(Recipe(output_dir=str(out)), "r.yaml"):
        pass
    assert sorted(p.name for p in out.iterdir()) == ["recipe.yaml"]


def test_a_marker_from_another_host_is_refused_with_what_to_delete(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / IN_PROGRESS).write_text(json.dumps({"pid": 1, "host": "elsewhere", "started": "then"}))
    with pytest.raises(Exception) as info:
        with held_output_dir(Recipe(output_dir=str(out)), "r.yaml"):
            pass
    assert str(info.value).endswith(f"(pid 1 on elsewhere, since then); wait for it to end or choose another "
                                    f"output_dir; if it is gone, delete {out / IN_PROGRESS}")


def test_an_output_dir_that_cannot_be_created_is_one_line(tmp_path):
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(Exception) as info:
        with held_output_dir(Recipe(output_dir=str(tmp_path / "a_file" / "run")), "r.yaml"):
            pass
    assert str(info.value) == f"r.yaml: output_dir: cannot create '{tmp_path / 'a_file' / 'run'}': Not a directory"


def test_resume_last_with_overwrite_replaces_a_finished_run_and_an_interrupted_run_resumes(tmp_path):
    resume = {"resume_from_checkpoint": "last"}
    bare = tmp_path / "bare"
    bare.mkdir()
    for name in ("recipe.yaml", "metrics.json", "adapter_model.safetensors", "README.md", "report"):
        (bare / name).write_text("finished")
    claim_output_dir(Recipe(output_dir=str(bare), trainer=resume, overwrite=True))  # explicit: replaced, not mixed
    assert list(bare.iterdir()) == []

    killed = tmp_path / "killed"  # interrupted before its end: resumed from its newest complete checkpoint as before
    (killed / "checkpoint-1").mkdir(parents=True)
    (killed / "checkpoint-1" / ".rlft-complete").write_text("1")
    (killed / "recipe.yaml").write_text("running")
    assert claim_output_dir(Recipe(output_dir=str(killed), trainer={**resume, "max_steps": 1})) == killed
    assert sorted(p.name for p in killed.iterdir()) == ["checkpoint-1", "recipe.yaml"]


def test_steps_left(tmp_path):
    from rlft.run.checkpoints import check_steps_left

    (tmp_path / "metrics.json").write_text("{}")
    check_steps_left(tmp_path / "checkpoint-2", 3, tmp_path)  # more steps: trains on
    check_steps_left(tmp_path / "checkpoint-2", -1, tmp_path)  # epochs: not known here
    with pytest.raises(Exception, match="trainer.max_steps=2 leaves nothing to train"):
        check_steps_left(tmp_path / "checkpoint-2", 2, tmp_path)
    (tmp_path / "metrics.json").unlink()
    check_steps_left(tmp_path / "checkpoint-2", 2, tmp_path)  # killed after its last checkpoint: finishes
