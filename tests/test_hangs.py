"""The three hangs of issue 33, each now a quick one-line error (exit 2): `rlft eval --data` on a file with one huge
line (generation on a 300 000-character prompt), a huge label (`rlft check` took 9 GB and never finished), and a
custom reward that never returns (no per-reward timeout). Each case states the command line and the exact line."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from rlft.cli import run
from tests.conftest import tiny_grpo_recipe

HUGE_LINE = b"utterance,intent\nhello,greet\n" + b"x" * 300_000 + b",greet\nbye,leave\n"
HUGE_LABEL = b"utterance,intent\nhello,greet\nmoney back," + b"r" * 1_000_000 + b"\nbye,leave\nhi,greet\n"
LONG_LABEL = "r" * 201
SHOWN = "'" + "r" * 55 + "...'"
SLEEPY = """import asyncio, time

def forever(prompts, completions, **kwargs):
    time.sleep(10**6)

async def forever_async(prompts, completions, **kwargs):
    await asyncio.sleep(10**6)
"""

# (why, command, data file (name, bytes) or None, the one line on stderr, seconds it may take at most)
CASES = [
    ("one huge line through eval --data (memory past 5.7 GB, killed at 300 s)",
     ["eval", "{recipe}", "--model", "base", "--data", "{data}", "--out", "{tmp}/eval"], ("huge.csv", HUGE_LINE),
     "{data}: row 2: the prompt is 300000 characters, more than data.max_prompt_tokens=2048 tokens can hold (16 "
     "characters a token at most); shorten or drop the row, or raise data.max_prompt_tokens", 60),
    ("the limit follows data.max_prompt_tokens",
     ["eval", "{recipe}", "data.max_prompt_tokens=100", "--model", "base", "--data", "{data}", "--out", "{tmp}/eval"],
     ("long.csv", b"utterance,intent\n" + b"y" * 1700 + b",greet\nbye,leave\n"),
     "{data}: row 1: the prompt is 1700 characters, more than data.max_prompt_tokens=100 tokens can hold (16 "
     "characters a token at most); shorten or drop the row, or raise data.max_prompt_tokens", 60),
    ("a 1 MB label through check (9 GB, killed at 400 s)", ["check", "{recipe}", "data.source={data}"],
     ("label.csv", HUGE_LABEL),
     "{data}: row 2: label " + SHOWN + " is 1000000 characters long; a label is a class name of at most 200 "
     "characters", 60),
    ("a long label in the sample validate reads", ["validate", "{recipe}", "data.source={data}"],
     ("label.csv", b"utterance,intent\nhello,greet\nbye," + LONG_LABEL.encode() + b"\n"),
     "{data}: row 2: label " + SHOWN + " is 201 characters long; a label is a class name of at most 200 characters",
     60),
    ("a long label in data.labels", ["validate", "{recipe}", f"data.labels=[greet, {LONG_LABEL}]"], None,
     "command line: data.labels: label " + SHOWN + " is 201 characters long; a label is a class name of at most 200 "
     "characters", 60),
    ("a reward that never returns stops at its timeout, naming it",
     ["train", "{recipe}", "rewards=[{name: '{tmp}/sleepy.py:forever', timeout: 1}]"], None,
     "reward 'forever' did not return within 1 s on a batch of 4 completions (a hung reward?); make it faster or "
     "raise rewards[0].timeout (null: no limit)", 120),
    ("an async reward that never returns", ["train", "{recipe}",
                                            "rewards=[{name: intent}, {name: '{tmp}/sleepy.py:forever_async', "
                                            "timeout: 1.5}]"], None,
     "reward 'forever_async' did not return within 1.5 s on a batch of 4 completions (a hung reward?); make it "
     "faster or raise rewards[1].timeout (null: no limit)", 120),
    ("a timeout that is not a positive number", ["validate", "{recipe}", "rewards.0.timeout=0"], None,
     "command line: rewards[0].timeout: expected seconds > 0 (null: no limit), got 0", 60),
    ("a NaN timeout", ["validate", "{recipe}", "rewards.0.timeout=.nan"], None,
     "command line: rewards[0].timeout: expected seconds > 0 (null: no limit), got nan", 60),
]


@pytest.mark.parametrize(("why", "command", "data", "message", "seconds"), CASES, ids=[c[0] for c in CASES])
def test_a_former_hang_is_one_line_exit_2_and_quick(tmp_path, tiny_model_dir, why, command, data, message, seconds):
    """A subprocess, as a user runs it: it must exit by itself (no thread or process left hanging)."""
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(tiny_grpo_recipe(tmp_path, tiny_model_dir))
    (tmp_path / "sleepy.py").write_text(SLEEPY)
    data_path = tmp_path / data[0] if data else ""
    if data:
        data_path.write_bytes(data[1])
    fill = {"tmp": tmp_path, "data": data_path, "recipe": recipe}
    argv = [a.replace("{tmp}", str(tmp_path)).replace("{data}", str(data_path)).replace("{recipe}", str(recipe))
            for a in command]
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "rlft", *argv], capture_output=True, text=True, timeout=seconds,
                          env={**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"})
    took = time.monotonic() - start
    last = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else ""
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert last == "error: " + message.format(**fill)
    assert took < seconds


@pytest.mark.parametrize("kind", ["sync", "async"])
@pytest.mark.parametrize("caller", ["main thread", "worker thread"])
def test_the_reward_timeout_holds_in_any_thread(tmp_path, kind, caller):
    from rlft.errors import RewardError
    from rlft.scoring.loader import RewardSpec, load_reward

    (tmp_path / "sleepy.py").write_text(SLEEPY)
    name = "forever" if kind == "sync" else "forever_async"
    reward = load_reward(RewardSpec(name=f"{tmp_path}/sleepy.py:{name}", timeout=0.3), "rewards[3]")
    seen: dict[str, BaseException] = {}

    def call() -> None:
        try:
            out = reward.func(prompts=["p", "q"], completions=["a", "b"])
            if reward.is_async:
                asyncio.run(out)
        except BaseException as exc:  # noqa: BLE001 - the test inspects it
            seen["error"] = exc

    start = time.monotonic()
    if caller == "main thread":  # a guard, so that a regression fails this test instead of hanging the suite
        previous = signal.signal(signal.SIGALRM, lambda *_: (_ for _ in ()).throw(TimeoutError("no timeout")))
        signal.alarm(10)
        try:
            call()
        finally:
            signal.alarm(0)
            signal.signal(signal.SIGALRM, previous)
    else:
        worker = threading.Thread(target=call)
        worker.start()
        worker.join(10)
    assert time.monotonic() - start < 5
    assert isinstance(seen.get("error"), RewardError)
    assert str(seen["error"]) == (f"reward '{name}' did not return within 0.3 s on a batch of 2 completions (a hung "
                                  f"reward?); make it faster or raise rewards[3].timeout (null: no limit)")


def test_a_reward_within_its_timeout_keeps_its_values_context_and_grad_mode(tmp_path):
    """The call runs in a helper thread: what the reward sees of the caller (torch's thread-local grad mode, its
    exceptions) must be what it saw when called directly."""
    import torch

    from rlft.errors import RewardError
    from rlft.scoring.loader import RewardSpec, load_reward

    (tmp_path / "modes.py").write_text(
        "import torch\n\ndef grad(prompts, completions, **kw):\n"
        "    return [float(torch.is_grad_enabled()) for _ in completions]\n\n"
        "def boom(prompts, completions, **kw):\n    return [1.0 / (c != 'b') for c in completions]\n")
    grad = load_reward(RewardSpec(name=f"{tmp_path}/modes.py:grad", timeout=5))
    assert grad.func(prompts=["p"], completions=["a"]) == [1.0]
    with torch.no_grad():
        assert grad.func(prompts=["p"], completions=["a"]) == [0.0]
    unbounded = load_reward(RewardSpec(name=f"{tmp_path}/modes.py:grad", timeout=None))
    with torch.no_grad():
        assert unbounded.func(prompts=["p"], completions=["a"]) == [0.0]
    boom = load_reward(RewardSpec(name=f"{tmp_path}/modes.py:boom", timeout=5))
    with pytest.raises(RewardError, match=r"raised ZeroDivisionError on row 2 of a batch of 3 \(completion 'b'\)"):
        boom.func(prompts=["p"] * 3, completions=["a", "b", "c"])


def test_the_default_timeout_is_in_every_loaded_reward():
    from rlft.recipe.load import build_recipe
    from rlft.scoring.loader import DEFAULT_TIMEOUT

    recipe = build_recipe({"rewards": [{"name": "intent"}, {"name": "intent", "alias": "b", "timeout": None}]})
    assert [r.timeout for r in recipe.rewards] == [DEFAULT_TIMEOUT, None] and DEFAULT_TIMEOUT == 600.0


def test_a_run_saved_before_reward_timeouts_existed_still_resumes(tmp_path):
    from rlft.run.checkpoints import resume_relevant

    old = {"algorithm": "grpo", "rewards": [{"name": "intent", "weight": 1.0, "params": {}, "alias": None}]}
    new = {"algorithm": "grpo", "rewards": [{**old["rewards"][0], "timeout": 30.0}]}
    assert resume_relevant(old) == resume_relevant(new)
    assert resume_relevant(old) != resume_relevant({**new, "rewards": [{**new["rewards"][0], "weight": 2.0}]})
