"""SIMULATED judge: an OpenAI-compatible chat server whose verdicts are the rubric's, flipped at a set rate.

It is not a language model. It is a judge of KNOWN quality for tests and benchmarks of the RLAIF path (issue 31):
every request goes through the real `judge` reward (prompt rendering, the openai SDK, concurrency, cache, abstain,
budget) and is answered here, on 127.0.0.1, by the deterministic rubric (`rewards/rubric.py`) of the row's gold
intent, with the verdict flipped with probability `--flip-rate`, independently per request, after `--latency-ms`.
Every reply names its model `SIMULATED-rubric-judge`, whatever the request asked for.

    python -m benchmarks.simulated_judge --port 8124 --flip-rate 0.2 --latency-ms 200 --seed 0
    # recipe: judge params {model: simulated, base_url: http://127.0.0.1:8124/v1, api_key_env: null,
    #                       policies: demo, policy_column: intent}
    curl -s http://127.0.0.1:8124/stats        # requests, faults, and the verdicts: judged, flipped, agree, ...

How a verdict is made, per request (the judge templates' tags, `rlft/judge/prompt_templates.py`):

1. The gold intent is recovered from the `<policy>` block: the server loads the same policy file as the reward
   (`--policies`, default `demo`) and looks the rendered policy text up; the default policy maps to the rubric's
   `default` requirements. The reward picks the policy by the row's `policy_column` (default `intent`), i.e. the
   gold intent, so the verdict is the rubric's for the gold intent, as `RubricReward` scores it in training.
2. The rubric checks the `<response>` (the whole completion; the rubric reads the reply after `</intent>`) against
   the `<customer_message>` (for `unless_prompt`). Its echo check sees the policy and the customer message, the only
   prompt text a judge is shown: a reply that pastes other parts of the agent's prompt is not caught as an echo here.
3. Binary templates (`choosing one of A | B`): `Accurate` when the rubric passes (score 1.0), else `Inaccurate`
   (custom labels: the first listed is the passing one). Score templates (`VERDICT: <number from L to H>`): the
   rubric score mapped onto L..H and rounded. A row the rubric abstains on (no rubric, no default), a policy text
   the server does not know, or a pairwise template gets an unparsable reply, so the reward abstains.
4. Flip: u = sha256(seed, n, request body) / 2^256 < flip_rate, n = how many times this exact body came before. So a
   flip is independent per request (k votes carry different `seed`s, hence different bodies; a repeated identical
   request draws again), and the verdicts do not depend on the order concurrent requests arrive in. A flipped
   binary verdict is the other label, a flipped score is mirrored (L + H - n). The rationale says when it flipped.

With flip rate f and a rubric pass rate p, the judge agrees with the rubric on a share 1 - f of judgments and its
Cohen's kappa is `expected_kappa(f, p)` (1 - 2f at p = 0.5); `flip_rate_for_kappa` inverts it. A majority of k
votes is wrong with probability `majority_error(f, k)` (k = 3, f = 0.2: 0.104).

The HTTP side is `tests/judge_stub_server.py` (`StubJudge` + `build_app`/`StubServer`): latency, request and
in-flight counting, `/stats`, and fault injection (`--fault-rate`: 500 / 429 / hang / malformed / off-menu replies,
which the reward must count as api_error / timeout / parse_error and abstain on). In-process (tests)::

    from benchmarks.simulated_judge import simulated_stub
    from tests.judge_stub_server import StubServer
    stub = simulated_stub(flip_rate=0.2, latency_ms=200, seed=0)
    with StubServer(stub) as url:   # url ends with /v1
        ...                         # stub.requests, stub.responder.records, stub.responder.stats()
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import re
import sys
import threading
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: `tests` (the stub server) lives at the repository root
    sys.path.insert(0, str(ROOT))

from rlft.judge.policies import DEFAULT_KEY, Guidelines  # noqa: E402
from rlft.judge.untrusted import neutralize  # noqa: E402
from rlft.rewards.rubric import RubricReward  # noqa: E402
from tests.judge_stub_server import FAULT_TYPES, StubJudge, build_app  # noqa: E402

MODEL_NAME = "SIMULATED-rubric-judge"
UNJUDGEABLE = "VERDICT: unjudgeable"  # on no allowed menu: the reward records a parse_error and abstains
_BLOCK = {name: re.compile(rf"<{name}>\n(.*?)\n</{name}>", re.S) for name in ("policy", "customer_message",
                                                                                "response")}
_SCORE = re.compile(r"VERDICT: <number from ([0-9.+-]+) to ([0-9.+-]+)>")
_LABELS = re.compile(r"choosing one of (.+?):\s*\n\s*VERDICT: <label>", re.S)


def expected_kappa(flip_rate: float, pass_rate: float) -> float:
    """Cohen's kappa between the rubric (pass share `pass_rate`) and a judge that flips each verdict at `flip_rate`."""
    f, p = flip_rate, pass_rate
    q = p * (1 - f) + (1 - p) * f  # the judge's pass share
    pe = p * q + (1 - p) * (1 - q)
    return 1.0 if pe == 1 else ((1 - f) - pe) / (1 - pe)


def flip_rate_for_kappa(kappa: float, pass_rate: float = 0.5) -> float:
    """The flip rate in [0, 0.5] whose `expected_kappa` is `kappa` (in [0, 1]); bisection, kappa falls with f."""
    if not 0.0 <= kappa <= 1.0 or not 0.0 < pass_rate < 1.0:
        raise ValueError("kappa must be in [0, 1] and pass_rate in (0, 1)")
    lo, hi = 0.0, 0.5
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if expected_kappa(mid, pass_rate) > kappa else (lo, mid)
    return (lo + hi) / 2


def majority_error(flip_rate: float, votes: int) -> float:
    """P(the majority of `votes` independent verdicts is flipped), odd `votes`."""
    return sum(math.comb(votes, j) * flip_rate ** j * (1 - flip_rate) ** (votes - j)
               for j in range(votes // 2 + 1, votes + 1))


class RubricJudge:
    """The responder (`StubJudge(responder=...)`): request body -> reply text; see the module docstring.

    `records` holds one dict per answered request: intent, mode, `truth` (the rubric's verdict), `verdict` (sent),
    `flipped`, `outcome` (the rubric's, or why the request was unjudgeable).
    """

    def __init__(self, policies: str | dict = "demo", flip_rate: float = 0.0, seed: int = 0,
                 rubric_params: dict | None = None):
        if not 0.0 <= flip_rate <= 1.0:
            raise ValueError(f"flip_rate must be in [0, 1], got {flip_rate}")
        self.flip_rate, self.seed = float(flip_rate), int(seed)
        self.rubric = RubricReward(policies=policies, **(rubric_params or {}))
        guidelines = Guidelines.from_params(None, policies)
        texts: dict[str, str | None] = {}
        for key, text in [*guidelines.policies.items(), (DEFAULT_KEY, guidelines.default)]:
            if text is None:
                continue
            rendered = neutralize(text)  # what the judge template puts between <policy> tags
            texts[rendered] = key if rendered not in texts else None  # two intents with one text: ambiguous
        self.by_policy = texts
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self.records: list[dict[str, Any]] = []
            self.seen: Counter = Counter()

    def stats(self) -> dict[str, Any]:
        with self._lock:
            judged = [r for r in self.records if r["truth"] is not None]
            return {"model": MODEL_NAME, "flip_rate": self.flip_rate, "seed": self.seed, "answered": len(self.records),
                    "judged": len(judged), "flipped": sum(r["flipped"] for r in judged),
                    "agree": sum(r["verdict"] == r["truth"] for r in judged),
                    "truths": dict(Counter(r["truth"] for r in judged)),
                    "unjudgeable": dict(Counter(r["outcome"] for r in self.records if r["truth"] is None)),
                    "verdicts": dict(Counter(r["verdict"] for r in judged))}

    def _uniform(self, body: dict) -> float:
        blob = json.dumps(body, sort_keys=True, ensure_ascii=False).encode()
        digest = hashlib.sha256(blob).hexdigest()
        with self._lock:
            n = self.seen[digest]
            self.seen[digest] += 1
        draw = hashlib.sha256(f"{self.seed}\0{n}\0{digest}".encode()).digest()
        return int.from_bytes(draw, "big") / 2 ** 256

    def _record(self, **row: Any) -> None:
        with self._lock:
            self.records.append(row)

    def __call__(self, body: dict) -> str:
        user = str(body["messages"][-1]["content"])
        blocks = {name: (m.group(1) if (m := rx.search(user)) else None) for name, rx in _BLOCK.items()}
        score, labels = _SCORE.search(user), _LABELS.search(user)
        mode = "score" if score else "binary" if labels else None
        key = self.by_policy.get(blocks["policy"]) if blocks["policy"] is not None else None
        why = ("no_template_match" if mode is None or blocks["response"] is None else
               "unknown_policy" if key is None else None)
        result = None
        if why is None:
            prompt = [{"role": "system", "content": blocks["policy"]},
                      {"role": "user", "content": blocks["customer_message"] or ""}]
            result = self.rubric.check(prompt, blocks["response"], truth=key)
            if result.score is None:
                why = "no_rubric"
        if why is not None:
            self._record(intent=key, mode=mode, truth=None, verdict=None, flipped=False, outcome=why)
            return f"SIMULATED judge: cannot judge this request ({why}).\n{UNJUDGEABLE}"
        flipped = self._uniform(body) < self.flip_rate
        if mode == "binary":
            menu = [x.strip() for x in labels.group(1).split("|") if x.strip()]
            good = "Accurate" if "Accurate" in menu else menu[0]
            bad = "Inaccurate" if "Inaccurate" in menu else menu[-1]
            truth = good if result.passed else bad
            verdict = (bad if truth == good else good) if flipped else truth
        else:
            lo, hi = float(score.group(1)), float(score.group(2))
            n = int(math.floor(lo + result.score * (hi - lo) + 0.5))
            truth = str(n)
            verdict = str(int(lo + hi - n)) if flipped else truth
        self._record(intent=key, mode=mode, truth=truth, verdict=verdict, flipped=flipped, outcome=result.outcome)
        failed = [k for k, ok in result.checks.items() if ok is False]
        said = (f"SIMULATED judge (rubric of '{key}'): outcome {result.outcome}"
                + (f", unmet: {', '.join(failed)}" if failed else "")
                + ("; verdict flipped by the simulation." if flipped else "."))
        return f"{said}\nVERDICT: {verdict}"


def simulated_stub(flip_rate: float = 0.0, latency_ms: float = 0.0, seed: int = 0, policies: str | dict = "demo",
                   fault_rate: float = 0.0, fault_types: tuple[str, ...] = FAULT_TYPES,
                   rubric_params: dict | None = None) -> StubJudge:
    """A `StubJudge` answering with a `RubricJudge` (its `.responder`), named SIMULATED in every reply."""
    judge = RubricJudge(policies, flip_rate, seed, rubric_params)
    return StubJudge(responder=judge, latency_s=latency_ms / 1000.0, fault_rate=fault_rate, fault_types=fault_types,
                     seed=seed, model_name=MODEL_NAME)


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8124)
    parser.add_argument("--flip-rate", type=float, default=0.0, help="share of verdicts flipped, per request")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="delay before every reply")
    parser.add_argument("--seed", type=int, default=0, help="seeds the flips (and injected faults)")
    parser.add_argument("--policies", default="demo", help="the policy file the judge reward uses (rubric inside)")
    parser.add_argument("--fault-rate", type=float, default=0.0, help="share of requests answered with a fault")
    args = parser.parse_args(argv)
    stub = simulated_stub(args.flip_rate, args.latency_ms, args.seed, args.policies, args.fault_rate)
    print(json.dumps({"model": MODEL_NAME, "url": f"http://127.0.0.1:{args.port}/v1", "flip_rate": args.flip_rate,
                      "latency_ms": args.latency_ms, "seed": args.seed, "policies": args.policies}), flush=True)
    uvicorn.run(build_app(stub), host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
