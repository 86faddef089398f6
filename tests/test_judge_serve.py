"""A real judge server: `transformers serve` on loopback with a local model, judged through HTTP by the openai SDK.

`transformers serve <dir>` preloads a local model directory (its `force_model` argument) and then only accepts
requests naming that same string as `model`. The fast test serves the tiny random Llama and steers it with the
standard `logit_bias` request field (served as transformers' `sequence_bias`) so its one-token reply is a known
verdict: everything else — HTTP, the SDK, usage accounting, parsing, caching — is the real path. (Bias values must
be floats: transformers 5.23 passes `logit_bias` through unconverted and rejects integer biases with HTTP 500.) The
slow test serves SmolLM2-135M-Instruct unsteered and checks the judge copes with what a real small model says.
"""

import asyncio
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from rlft.rewards.judge import JudgeReward

GUIDE = "Mention the $4.99 cancellation fee."


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Served:
    def __init__(self, model_dir: Path, tmp: Path):
        self.port = _free_port()
        self.log = open(tmp / "serve.log", "w")  # noqa: SIM115 - closed in stop()
        cli = Path(sys.executable).with_name("transformers")
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}
        self.proc = subprocess.Popen([str(cli), "serve", str(model_dir), "--host", "127.0.0.1", "--port",
                                      str(self.port), "--device", "cpu", "--dtype", "float32"],
                                     stdout=self.log, stderr=subprocess.STDOUT, env=env)
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.model = str(model_dir)
        deadline = time.time() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if self.proc.poll() is not None or time.time() > deadline:
                self.stop()
                raise RuntimeError(f"transformers serve did not start: {(tmp / 'serve.log').read_text()[-2000:]}")
            time.sleep(0.25)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


@pytest.fixture(scope="module")
def tiny_server(tiny_model_dir, tmp_path_factory):
    served = Served(tiny_model_dir, tmp_path_factory.mktemp("serve"))
    yield served
    served.stop()


def _token(model_dir, text):
    from transformers import AutoTokenizer

    ids = AutoTokenizer.from_pretrained(model_dir).encode(text, add_special_tokens=False)
    assert len(ids) == 1, f"{text!r} is not one token"
    return ids[0]


def _judge(reward, completions, **cols):
    logged = {}
    out = asyncio.run(reward([f"cancel order {i}" for i in range(len(completions))], completions,
                             log_metric=lambda k, v: logged.__setitem__(k, v), **cols))
    return out, logged


def test_binary_and_score_through_transformers_serve(tiny_server, tiny_model_dir, tmp_path):
    cache = str(tmp_path / "judge.sqlite")
    params = dict(model=tiny_server.model, base_url=tiny_server.url, api_key_env=None, guideline=GUIDE,
                  max_tokens=1, timeout_s=60, cache=cache, max_concurrency=2)
    accurate = JudgeReward(**params, extra_body={"logit_bias": {str(_token(tiny_model_dir, " Accurate")): 100.0}})
    out, logged = _judge(accurate, ["Cancelled, $4.99 fee.", "Your order is cancelled."])
    assert out == [1.0, 1.0]
    assert accurate.usage.requests == 2 and accurate.usage.prompt_tokens > 50  # real usage from the server
    assert accurate.usage.completion_tokens == 2

    score = JudgeReward(**params, mode="score", extra_body={"logit_bias": {str(_token(tiny_model_dir, "7")): 100.0}})
    out, _ = _judge(score, ["Cancelled, $4.99 fee."])
    assert out == [pytest.approx(6 / 9)]

    again = JudgeReward(**params, extra_body={"logit_bias": {str(_token(tiny_model_dir, " Accurate")): 100.0}})
    out, logged = _judge(again, ["Cancelled, $4.99 fee.", "Your order is cancelled."])
    assert out == [1.0, 1.0] and again.usage.requests == 0 and logged["judge/cache_hit_rate"] == 1.0


def test_unsteered_random_model_abstains_instead_of_scoring(tiny_server, tmp_path):
    """A judge that answers gibberish (as a random model does) yields parse errors, i.e. None, never 0."""
    reward = JudgeReward(model=tiny_server.model, base_url=tiny_server.url, api_key_env=None, guideline=GUIDE,
                         max_tokens=8, timeout_s=60, cache=None)
    out, logged = _judge(reward, ["Cancelled, $4.99 fee.", "Your order is cancelled."])
    assert out == [None, None]
    assert logged["judge/parse_error_rate"] == 1.0


@pytest.mark.slow
def test_smollm2_judge_through_transformers_serve(tmp_path):
    """SmolLM2-135M-Instruct as an unsteered judge: every answer is a valid verdict or an abstention."""
    from rlft.recipe.sections import ModelConfig
    from rlft.run.models import resolve_model_path

    served = Served(Path(resolve_model_path(ModelConfig())), tmp_path)
    try:
        reward = JudgeReward(model=served.model, base_url=served.url, api_key_env=None, guideline=GUIDE,
                             max_tokens=48, timeout_s=120, cache=None, max_concurrency=2,
                             audit_path=str(tmp_path / "audit.jsonl"))
        completions = ["Your order is cancelled; note the $4.99 cancellation fee.", "Your order is cancelled.",
                       "I can't help with that.", "Cancelled. A $4.99 fee applies to cancellations."]
        out, logged = _judge(reward, completions)
        assert all(v is None or v in (0.0, 1.0) for v in out)
        assert sum(reward.stats[s] for s in ("ok", "parse_error")) == 4  # no transport failures
        assert reward.usage.completion_tokens > 0
        assert (tmp_path / "audit.jsonl").read_text().count("\n") == 4
    finally:
        served.stop()
