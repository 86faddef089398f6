"""A local OpenAI-compatible chat server for tests: judges, personas and conversations, with request counting.

`/v1/chat/completions` answers by what the system message asks for:
- persona designer -> `{"personas": [...]}` with the requested count;
- conversation writer -> `{"messages": [...]}` with the requested number of turns (the first `bad_conversations`
  replies break the schema on purpose, to exercise retries);
- anything else is a judge request (e.g. from `rlft.rewards.judge:JudgeReward`) -> a rationale, then
  "VERDICT: Accurate|Inaccurate" decided by a hash of the judged text, so verdicts are deterministic.

Every request body is recorded (`received`); `answered` holds only requests that got a real reply. With
`answer_limit` set, requests beyond it block until `release()` and then get a 503 (they are never "paid"), which
lets a test kill a client at a known point.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import socket
import threading
import time
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

WORDS = ["red", "blue", "lamp", "kettle", "chair", "phone", "jacket", "green", "desk", "speaker", "small", "large",
         "mouse", "watch", "heavy", "silver", "camera", "charger", "tent", "boots", "router"]


class CountingServer:
    def __init__(self, answer_limit: int | None = None, bad_conversations: int = 0):
        self.received: list[dict[str, Any]] = []
        self.answered: list[dict[str, Any]] = []
        self.answer_limit = answer_limit
        self.bad_conversations = bad_conversations
        self.blocked = 0
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._gate: asyncio.Event | None = None
        self.app = FastAPI()
        self.app.post("/v1/chat/completions")(self._chat)
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self._server = uvicorn.Server(uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="error",
                                                     timeout_graceful_shutdown=1))
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    def __enter__(self) -> CountingServer:
        self._thread.start()
        deadline = time.time() + 20
        while not self._server.started:
            if time.time() > deadline:
                raise RuntimeError("test server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()
        self._server.should_exit = True
        self._thread.join(timeout=10)

    def release(self) -> None:
        """Open the gate: blocked requests get a 503, later ones are answered normally."""
        self.answer_limit = None
        if self._loop is not None and self._gate is not None:
            self._loop.call_soon_threadsafe(self._gate.set)

    async def _chat(self, request: Request) -> JSONResponse:
        body = await request.json()
        if self._gate is None:
            self._loop, self._gate = asyncio.get_running_loop(), asyncio.Event()
        with self._lock:
            self.received.append(body)
            over = self.answer_limit is not None and len(self.answered) >= self.answer_limit
            if over:
                self.blocked += 1
        if over:
            await self._gate.wait()
            return JSONResponse({"error": {"message": "released unanswered"}}, status_code=503)
        text = self._reply(body)
        with self._lock:
            self.answered.append(body)
        return JSONResponse({"id": "chatcmpl-test", "object": "chat.completion", "created": 0, "model": body["model"],
                             "choices": [{"index": 0, "finish_reason": "stop",
                                          "message": {"role": "assistant", "content": text}}],
                             "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}})

    def _reply(self, body: dict[str, Any]) -> str:
        system = body["messages"][0]["content"]
        user = body["messages"][-1]["content"]
        if "persona designer" in system:
            count = int(re.search(r"Create (\d+)", user).group(1))
            return "```json\n" + json.dumps({"personas": [
                {"name": f"Pat {i}", "description": f"an impatient customer, variant {i} (seed {body.get('seed')})",
                 "traits": ["impatient", f"trait {i}"], "goal": "a fast refund"} for i in range(count)]}) + "\n```"
        if "conversations used to train" in system:
            turns = int(re.search(r"exactly (\d+) messages", user).group(1))
            seed = body.get("seed", 0)
            with self._lock:
                bad = self.bad_conversations > 0
                self.bad_conversations -= bad
            if bad:  # ends with the agent: must be rejected and retried
                return json.dumps({"messages": [{"role": "customer", "content": "Order ORD-11111, March 3?"},
                                                {"role": "agent", "content": "Checking."},
                                                {"role": "customer", "content": "Well?"},
                                                {"role": "agent", "content": "Done."}]})
            roles = ["agent", "customer"] if turns % 2 == 0 else ["customer", "agent"]
            item = WORDS[seed % len(WORDS)] + " " + WORDS[(seed // len(WORDS)) % len(WORDS)]  # text varies by seed
            order = f"ORD-{10000 + seed % 89999}"
            messages = []
            for t in range(turns):
                role = roles[t % 2]
                if t == turns - 1:
                    content = f"So when do I get my money back for the {item}, {order}?"
                elif role == "customer":
                    content = f"My {item} (order {order}) from March {1 + seed % 27} is late, turn {t}."
                else:
                    content = f"Sorry about that, let me check order {order} (turn {t})."
                messages.append({"role": role, "content": content})
            return "Here you go:\n" + json.dumps({"messages": messages})
        verdict = "Accurate" if hashlib.sha256(user.encode()).digest()[0] % 2 == 0 else "Inaccurate"
        return f"Checked the reply against the policy ({len(user)} chars).\nVERDICT: {verdict}"

    @staticmethod
    def is_judge(body: dict[str, Any]) -> bool:
        system = body["messages"][0]["content"]
        return "persona designer" not in system and "conversations used to train" not in system

    def judged(self, bodies: list[dict[str, Any]]) -> list[str]:
        """The judged text (last message) of every judge request among `bodies`."""
        return [b["messages"][-1]["content"] for b in bodies if self.is_judge(b)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
