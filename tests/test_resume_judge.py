"""A GRPO run judged by a loopback server (tests/counting_judge_server.py) is killed with SIGKILL after its first
checkpoint and resumed with `resume_from_checkpoint: last`: the resumed run asks the judge only about samples it has
not scored before, and ends with the uninterrupted run's adapter.

The judge cache is a file in the output folder (`cache: OUTPUT_DIR/judge_cache.sqlite`), so it travels with the run
and a resume finds it. The server answers the first step's requests and half of the second step's, and holds the rest,
so the kill lands at a known point: step 1 judged and checkpointed, step 2 half judged (those verdicts are paid and
cached, but no checkpoint holds step 2). The resumed run regenerates step 2 exactly, so it meets those paid samples
again: the cache must answer them. The held requests were never answered (nobody paid); they are sent again.

The judge's spend is checkpointed too (`rlft_reward_state.json`, rlft.scoring.state): a run killed after checkpoint-1
and resumed ends with the uninterrupted run's requests, tokens and USD (2 tokens and $0.004 a request, as billed by the
server), and a resume whose restored spend is over the budget trains no step and records the budget stop.
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
from rlft.run.checkpoints import MARKER, last_complete_checkpoint
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
@pytest.mark.usefixtures("one_torch_thread")  # the same thread count as the killed child
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


# ---- the judge's spend is checkpointed (rlft.scoring.state): a budget bounds the whole run, resumes included ----
PRICES = """      price_input_per_mtok: 1000.0  # 1 prompt + 1 completion token a request: $0.004
      price_output_per_mtok: 3000.0
"""
USD_PER_REQUEST = (1000.0 + 3000.0) / 1e6


def _budget_recipe(extra: str, max_steps: int) -> str:
    cache_line = "      cache: {out}/judge_cache.sqlite\n"
    return RECIPE.replace(cache_line, cache_line + PRICES + extra).replace("max_steps: 3", f"max_steps: {max_steps}")


def _saved_usage(checkpoint) -> dict:
    import json

    return json.loads((checkpoint / "rlft_reward_state.json").read_text())["rewards"]["judge"]["usage"]


@pytest.mark.slow  # ~40 s here: an uninterrupted run, a killed subprocess and its resume
@pytest.mark.usefixtures("one_torch_thread")  # the same thread count as the killed child
def test_killed_and_resumed_run_spends_what_the_uninterrupted_run_spends(tiny_model_dir, write_recipe, tmp_path,
                                                                         monkeypatch):
    monkeypatch.setenv("RLFT_TEST_RESUME_JUDGE_KEY", "test-key")
    template = _budget_recipe("      budget_usd: 100.0\n", max_steps=2)
    with CountingServer() as server:
        full = tmp_path / "full"
        counter = _RequestsPerStep(server)
        rlft.train(write_recipe(template.format(out=full, model=tiny_model_dir, url=server.url), "full.yaml"),
                   callbacks=[counter])
        n_full, first_step = len(server.judged(server.received)), counter.after_step[0]
        assert 0 < first_step < n_full
        want = _saved_usage(full / "checkpoint-2")
        # by hand from the server's counts: every request was answered, each bills 2 tokens and $0.004
        assert (want["requests"], want["prompt_tokens"] + want["completion_tokens"]) == (n_full, 2 * n_full)
        assert want["cost_usd"] == pytest.approx(n_full * USD_PER_REQUEST)

        server.received.clear()
        server.answered.clear()
        server.answer_limit = first_step  # step 1 is answered and checkpointed; step 2's requests are held
        killed = tmp_path / "killed"
        recipe = write_recipe(template.format(out=killed, model=tiny_model_dir, url=server.url), "killed.yaml")
        proc = subprocess.Popen([sys.executable, "-m", "rlft", "train", str(recipe)], cwd=ROOT,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                env={**os.environ, "OMP_NUM_THREADS": "1"})
        try:
            _wait(lambda: (killed / "checkpoint-1" / MARKER).is_file() and server.blocked > 0,
                  "checkpoint-1 and step 2's judge requests", proc)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        assert last_complete_checkpoint(killed) == killed / "checkpoint-1"
        paid_before = len(server.judged(server.answered))
        assert paid_before == first_step
        assert _saved_usage(killed / "checkpoint-1")["requests"] == first_step
        server.release()

        server.received.clear()
        server.answered.clear()
        rlft.train(recipe, ["trainer.resume_from_checkpoint=last"])
        paid_after = len(server.judged(server.answered))

    got = _saved_usage(killed / "checkpoint-2")
    assert paid_before + paid_after == n_full  # the endpoint billed the two processes what it billed the full run
    # the resumed run counts on from the checkpoint: its spend is the whole run's, not step 2's alone
    assert (got["requests"], got["prompt_tokens"] + got["completion_tokens"]) == (n_full, 2 * n_full)
    assert got["cost_usd"] == pytest.approx(want["cost_usd"])
    assert got["cache_hits"] == want["cache_hits"] == 0


def test_resume_with_the_budget_already_spent_stops_before_training(tiny_model_dir, write_recipe, tmp_path,
                                                                    monkeypatch):
    monkeypatch.setenv("RLFT_TEST_RESUME_JUDGE_KEY", "test-key")
    out = tmp_path / "run"
    template = _budget_recipe("      budget_tokens: 4\n", max_steps=1)
    with CountingServer() as server:
        recipe = write_recipe(template.format(out=out, model=tiny_model_dir, url=server.url), "run.yaml")
        first = rlft.train(recipe)  # one step: every request passes the check before any reply is billed
        n = len(server.judged(server.received))
        assert first.stopped_early is None and n >= 2
        assert _saved_usage(out / "checkpoint-1")["completion_tokens"] == n
        adapter = load_file(str(out / "checkpoint-1" / "adapter_model.safetensors"))

        server.received.clear()
        result = rlft.train(recipe, ["trainer.resume_from_checkpoint=last", "trainer.max_steps=3"])
        asked = len(server.judged(server.received))

    reason = (f"judge: token budget spent ({2 * n} of budget_tokens=4) after {n} requests; raise judge "
              f"params.budget_tokens or resume later (cached judgments are kept)")
    assert asked == 0
    assert result.stopped_early == {"reason": reason, "kind": "budget", "ok": False}
    assert result.metrics["stopped_early"] == result.stopped_early and result.metrics["global_step"] == 1
    assert not (out / "checkpoint-2").exists()  # not one step trained on abstentions
    final = load_file(str(out / "adapter_model.safetensors"))
    assert max(float((adapter[k] - final[k]).abs().max()) for k in adapter) == 0.0  # the checkpoint's adapter
