"""A fault-injecting OpenAI-compatible judge server on loopback (FastAPI + uvicorn), for tests and benchmarks.

`POST /v1/chat/completions` answers like a judge after `latency_s`, unless the request is picked for a fault:
`500` (HTTP 500), `429` (HTTP 429 with `Retry-After`), `hang` (sleeps `hang_s` before answering), `malformed`
(HTTP 200 with a body that is not JSON), `offmenu` (a well-formed reply whose last verdict is not an allowed label).
Faults are drawn per request with a seeded RNG at `fault_rate` from `fault_types`, or forced for the next requests
with `queue`. Every request, every injected fault and every `Authorization` header it saw is counted.
The verdict comes from `responder` (body -> reply text; default: `keyword_responder`); `model_name` fixes the reply's
`model` (default: the request's). `benchmarks/simulated_judge.py` plugs in the rubric with flips (its `stats()` show
under `/stats`).

In-process: `with StubServer(StubJudge(...)) as url: ...` runs it in a thread (the test can change the `StubJudge`
between calls). As a process (used by the benchmark, so the server has its own core):
`python tests/judge_stub_server.py --port 8123 --latency 0.05`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

FAULT_TYPES = ("500", "429", "hang", "malformed", "offmenu")  # "401" exists too, only on request (queue)


def keyword_responder(keyword: str = "fee") -> Callable[[dict], str]:
    """A rule-based 'judge': Accurate when the <response> block mentions `keyword`, else Inaccurate.

    It reads the response only between the library's tags, like a judge that respects the delimiters would.
    """

    def respond(body: dict) -> str:
        text = body["messages"][-1]["content"]
        m = re.search(r"<response>\n(.*?)\n</response>", text, re.S)
        response = m.group(1) if m else ""
        if "VERDICT: <number" in text:
            score = 9 if keyword.lower() in response.lower() else 2
            return f"Scored on the policy.\nVERDICT: {score}"
        verdict = "Accurate" if keyword.lower() in response.lower() else "Inaccurate"
        said = "mentions" if verdict == "Accurate" else "does not mention"
        return f"The response {said} {keyword}.\nVERDICT: {verdict}"

    return respond


class StubJudge:
    """Behaviour and counters of the stub (thread-safe enough for asyncio in one server thread)."""

    def __init__(self, responder: Callable[[dict], str] | None = None, latency_s: float = 0.0, fault_rate: float = 0.0,
                 fault_types: tuple[str, ...] = FAULT_TYPES, seed: int = 0, hang_s: float = 5.0,
                 retry_after_s: float = 0.2, model_name: str | None = None):
        self.responder = responder or keyword_responder()
        self.model_name = model_name  # the `model` of every reply (None: echo the request's model)
        self.latency_s, self.fault_rate, self.fault_types = latency_s, fault_rate, tuple(fault_types)
        self.hang_s, self.retry_after_s = hang_s, retry_after_s
        self.rng = random.Random(seed)
        self.queue: list[str | None] = []  # forced outcomes for the next requests (None = normal reply)
        self.requests = 0
        self.faults: Counter = Counter()
        self.auth_headers: list[str] = []
        self.bodies: list[dict] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.usage: Counter = Counter()  # the replies' `usage` summed (prompt_tokens, completion_tokens: words)
        self.lock = threading.Lock()

    def pick_fault(self) -> str | None:
        with self.lock:
            self.requests += 1
            if self.queue:
                fault = self.queue.pop(0)
            elif self.fault_rate and self.rng.random() < self.fault_rate:
                fault = self.rng.choice(self.fault_types)
            else:
                fault = None
            if fault:
                self.faults[fault] += 1
            return fault


def build_app(stub: StubJudge) -> Any:
    app = FastAPI()

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok"}

    @app.get("/stats")
    async def stats() -> dict:
        out = {"requests": stub.requests, "max_in_flight": stub.max_in_flight, "faults": dict(stub.faults),
               "usage": dict(stub.usage), "cpu_s": time.process_time()}
        if hasattr(stub.responder, "stats"):  # a responder that counts its own verdicts (benchmarks/simulated_judge)
            out["responder"] = stub.responder.stats()
        return out

    @app.post("/stats/reset")
    async def reset() -> dict:
        stub.requests, stub.max_in_flight = 0, 0
        stub.faults.clear()
        stub.usage.clear()
        if hasattr(stub.responder, "reset"):
            stub.responder.reset()
        return {"status": "ok"}

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Any:
        body = await request.json()
        stub.auth_headers.append(request.headers.get("authorization", ""))
        stub.bodies.append(body)
        fault = stub.pick_fault()
        stub.in_flight += 1
        stub.max_in_flight = max(stub.max_in_flight, stub.in_flight)
        try:
            return await _answer(stub, body, fault)
        finally:
            stub.in_flight -= 1

    return app


async def _answer(stub: StubJudge, body: dict, fault: str | None) -> Any:
    if stub.latency_s:
        await asyncio.sleep(stub.latency_s)
    if fault == "401":
        return JSONResponse({"error": {"message": "invalid api key"}}, status_code=401)
    if fault == "500":
        return JSONResponse({"error": {"message": "injected server error"}}, status_code=500)
    if fault == "429":
        return JSONResponse({"error": {"message": "injected rate limit"}}, status_code=429,
                            headers={"retry-after": f"{stub.retry_after_s:g}"})
    if fault == "hang":
        try:
            await asyncio.sleep(stub.hang_s)
        except asyncio.CancelledError:  # server shutting down while a request hangs: not an error
            return Response(status_code=503)
    if fault == "malformed":
        return Response('{"id": "x", "choices": [{"message": {"content": "VERDICT: Acc', status_code=200,
                        media_type="application/json")
    text = "I cannot decide.\nVERDICT: Maybe" if fault == "offmenu" else stub.responder(body)
    prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in body.get("messages", []))
    completion_tokens = len(text.split())
    stub.usage.update(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)
    return {
        "id": f"stub-{stub.requests}", "object": "chat.completion", "created": int(time.time()),
        "model": stub.model_name or body.get("model", "stub"),
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},
    }


class StubServer:
    """Runs the app with uvicorn on 127.0.0.1 (free port) in a daemon thread; `url` ends with /v1."""

    def __init__(self, stub: StubJudge):
        self.stub = stub
        self.url = ""

    def __enter__(self) -> str:
        import uvicorn

        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        config = uvicorn.Config(build_app(self.stub), log_level="critical", access_log=False,
                                timeout_graceful_shutdown=1)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True)
        self.thread.start()
        deadline = time.time() + 10
        while not self.server.started:
            if time.time() > deadline:
                raise RuntimeError("stub judge server did not start")
            time.sleep(0.01)
        self.url = f"http://127.0.0.1:{port}/v1"
        return self.url

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=5)


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8123)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--fault-rate", type=float, default=0.0)
    args = parser.parse_args()
    stub = StubJudge(latency_s=args.latency, fault_rate=args.fault_rate)
    print(json.dumps({"port": args.port, "latency_s": args.latency}), flush=True)
    uvicorn.run(build_app(stub), host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
