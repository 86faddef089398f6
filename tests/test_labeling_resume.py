"""A labelling run killed with SIGKILL and rerun gives the same files as an uninterrupted run, with no duplicate
rows and no completion judged twice (a local OpenAI-compatible judge server counts the requests).

The judge is the real `rlft.rewards.judge:JudgeReward` with its cache switched off, so only the labelling run's
own resume (records.jsonl) stops repeated calls. The server answers a fixed number of requests and then holds the
next ones, so the kill lands at a known point: after three prompts are recorded, while the fourth is being judged.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rlft.data.synthetic import SyntheticConfig, generate_dataset, write_dataset
from tests.counting_judge_server import CountingServer

N = 2  # completions per prompt
PROMPTS = 6
OUTPUTS = ("records.jsonl", "kto.jsonl", "dpo.jsonl", "kto_ubiai.jsonl", "dpo_tinker.jsonl", "summary.json",
           "run.json")


def write_inputs(tmp_path: Path, model_dir: Path, judge_url: str) -> Path:
    rows, report = generate_dataset(SyntheticConfig(aspects=["refund handling", "shipping communication"],
                                                    personas_per_aspect=1, conversations_per_persona=3, seed=1))
    assert len(rows) == PROMPTS
    data = write_dataset(rows, report, tmp_path / "prompts.jsonl")
    recipe = tmp_path / "label.yaml"
    recipe.write_text(f"""
seed: 5
model: {{name: {model_dir}}}
data: {{source: {data}}}
rewards:
  - name: judge
    params:
      model: judge-model
      base_url: {judge_url}
      api_key_env: TEST_JUDGE_KEY
      guideline: Resolve the customer's issue politely and concretely.
      cache: null            # only the labelling run's own resume may prevent repeated calls here
      max_retries: 0
      min_words: 0           # random-model completions of 6 tokens: judge every one (the default gate skips < 3 words)
""")
    return recipe


def command(recipe: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "rlft", "label", str(recipe), "--out", str(out), "--n", str(N), "--temperature",
            "1.0", "--max-new-tokens", "6", "--prompts-per-batch", "2", "--label-reward", "judge", "--quiet"]


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.time() + timeout
    while not condition():
        if time.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


@pytest.mark.slow
def test_sigkill_then_rerun_gives_identical_files_and_pays_each_judgment_once(tmp_path, tiny_model_dir):
    env = {**os.environ, "TEST_JUDGE_KEY": "test-key", "HF_HUB_OFFLINE": "1"}
    with CountingServer() as server:
        recipe = write_inputs(tmp_path, tiny_model_dir, server.url)
        reference, resumed = tmp_path / "reference", tmp_path / "resumed"
        done = subprocess.run(command(recipe, reference), env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-2000:]
        reference_judged = server.judged(server.answered)
        assert len(reference_judged) == PROMPTS * N

        server.received.clear()
        server.answered.clear()
        server.answer_limit = 3 * N  # three prompts get their verdicts, the fourth hangs
        proc = subprocess.Popen(command(recipe, resumed), env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            wait_for(lambda: server.blocked >= 1, 300, "the fourth prompt's judge request")
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        records = (resumed / "records.jsonl").read_text().splitlines()
        assert len(records) == 3
        assert not (resumed / "kto.jsonl").exists()  # outputs are only built from complete records
        server.release()  # the held requests are refused, never answered: nobody paid for them

        done = subprocess.run(command(recipe, resumed), env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-2000:]
        judged = server.judged(server.answered)

    assert len(judged) == len(set(judged)) == PROMPTS * N  # every completion judged exactly once over both runs
    assert set(judged) == set(reference_judged)
    for name in OUTPUTS:
        assert (resumed / name).read_bytes() == (reference / name).read_bytes(), name
    keys = [json.loads(line)["key"] for line in (resumed / "records.jsonl").read_text().splitlines()]
    assert len(keys) == len(set(keys)) == PROMPTS
    kto = [json.loads(line) for line in (resumed / "kto.jsonl").read_text().splitlines()]
    assert len(kto) == PROMPTS * N and all(isinstance(r["label"], bool) for r in kto)
    assert all(r["label"] is (r["meta"]["scores"]["judge"] == 1.0) for r in kto)  # labels are the judge's verdicts
    assert all(r["meta"]["extras"]["judge_rationale"].startswith("Checked the reply") for r in kto)  # for audit
