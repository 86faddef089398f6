"""A GRPO run judged by a loopback server (tests/counting_judge_server.py) is killed with SIGKILL after its first
checkpoint and resumed with `resume_from_checkpoint: last`: the resumed run asks the judge only about samples it has
not scored before, and ends with the uninterrupted run's adapter.

The judge cache is a file in the output folder (`cache: OUTPUT_DIR/judge_cache.sqlite`), so it travels with the run
and a resume finds it. The server answers the first step's requests and half of the second step's, and holds the rest,
so the kill lands at a known point: step 1 judged and checkpointed, step 2 half judged (those verdicts are paid and
cached, but no checkpoint holds step 2). The resumed run regenerates step 2 exactly, so it meets those paid samples
again: the cache must answer them. The held requests were never answered (nobody paid); they are sent again.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter

import pytest
from safetensors.torch import load_file
from transformers import TrainerCallback

import rlft
from rlft.checkpoints import MARKER, last_complete_checkpoint
from tests.conftest import ROOT
from tests.counting_judge_server import CountingServer

RECIPE = """algorithm: grpo
output_dir: {out}
model: {{name: {model}}}
adapter: {{type: lora, r: 4, alpha: 8}}
data: {{source: "demo:intents", demo_size: 40, system_prompt: "Answer the customer."}}
rewards:
  - name: judge
    params:
      model: judge-model
      base_url: {url}
      api_key_env: RLFT_TEST_RESUME_JUDGE_KEY
      guideline: Mention the $4.99 cancellation fee when the customer cancels.
      timeout_s: 120            # a held request waits (until the kill), it does not time out into an abstention
      max_retries: 0
      injection_guard: false    # random-model text must reach the judge
      min_words: 0
      cache: {out}/judge_cache.sqlite
trainer: {{max_steps: 3, per_device_train_batch_size: 8, num_generations: 4, max_completion_length: 8,
          learning_rate: 0.05, beta: 0.0, save_strategy: steps, save_steps: 1}}
evaluation: {{before: false, after: false}}
"""


class _RequestsPerStep(TrainerCallback):
    def __init__(self, server: CountingServer):
        self.server, self.after_step = server, []

    def on_step_end(self, args, state, control, **kwargs):
        self.after_step.append(len(self.server.judged(self.server.received)))


def _cached_rows(path) -> int:
    if not path.is_file():
        return 0
    with sqlite3.connect(path, timeout=30) as conn:
        return conn.execute("SELECT COUNT(*) FROM judgments").fetchone()[0]


def _wait(condition, what: str, proc: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, f"the run ended before {what}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


@pytest.mark.slow  # ~60 s here: three GRPO runs, one a subprocess
def test_resumed_grpo_run_does_not_requery_the_judge_for_scored_samples(tiny_model_dir, write_recipe, tmp_path,
                                                                        monkeypatch):
    monkeypatch.setenv("RLFT_TEST_RESUME_JUDGE_KEY", "test-key")
    with CountingServer() as server:
        full = tmp_path / "full"
        counter = _RequestsPerStep(server)
        rlft.train(write_recipe(RECIPE.format(out=full, model=tiny_model_dir, url=server.url), "full.yaml"),
                   callbacks=[counter])
        want = server.judged(server.received)
        first_step, second_step = counter.after_step[0], counter.after_step[1] - counter.after_step[0]
        assert first_step > 0 and second_step > 1 and len(want) == len(set(want))  # each step judges new samples
        limit = first_step + second_step // 2

        server.received.clear()
        server.answered.clear()
        server.answer_limit = limit  # step 1 and half of step 2 get their verdicts, the rest is held
        killed = tmp_path / "killed"
        recipe = write_recipe(RECIPE.format(out=killed, model=tiny_model_dir, url=server.url), "killed.yaml")
        proc = subprocess.Popen([sys.executable, "-m", "rlft", "train", str(recipe)], cwd=ROOT,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                env={**os.environ, "OMP_NUM_THREADS": "1"})
        try:
            _wait(lambda: (killed / "checkpoint-1" / MARKER).is_file() and server.blocked > 0,
                  "checkpoint-1 and step 2's judge requests", proc)
            _wait(lambda: _cached_rows(killed / "judge_cache.sqlite") == limit, "the paid verdicts cached", proc)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        assert proc.returncode == -signal.SIGKILL
        assert last_complete_checkpoint(killed) == killed / "checkpoint-1"
        paid = server.judged(server.answered)
        assert len(paid) == limit > first_step  # step-2 samples were paid for, yet no checkpoint holds step 2
        server.release()  # held requests get a 503 (the client is gone): never answered, never paid

        server.received.clear()
        server.answered.clear()
        rlft.train(recipe, ["trainer.resume_from_checkpoint=last"])
        resumed = server.judged(server.received)

    assert not set(resumed) & set(paid)  # no sample judged before the kill is asked about again
    assert len(resumed) == len(want) - len(paid)  # only the samples never paid for (the cache answers the rest)
    assert Counter(paid + resumed) == Counter(want)  # the same samples as the uninterrupted run, each once
    a = load_file(str(full / "adapter_model.safetensors"))
    b = load_file(str(killed / "adapter_model.safetensors"))
    assert max(float((a[k] - b[k]).abs().max()) for k in a) == 0.0
