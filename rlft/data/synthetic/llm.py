"""Personas and conversations from any OpenAI-compatible chat endpoint (OpenAI, vLLM, llama.cpp, Ollama, ...).

Two calls per phase, each asking for JSON only:
- personas: `{"personas": [{"name", "description", "traits", "goal"}]}` for one aspect, at `persona_temperature`;
- conversation: `{"messages": [{"role": "customer"|"agent", "content"}]}` for one persona and a requested turn
  count, at `conversation_temperature` (UBIAI uses 0.9 for diversity).
Every request carries a `seed` derived from the run seed and the request's position, so endpoints that honour
seeds reproduce a run. Replies are parsed leniently (code fences, prose around the JSON) and then validated
strictly against the schema; a reply that fails is retried with the next seed and counted when it never passes.

The API key is read from the environment variable named in the config and never logged or stored.
Not here: the offline generator (`rlft.data.synthetic.templates`), de-duplication.
"""

from __future__ import annotations

import json
import os
from typing import Any

from rlft.errors import UserError
from rlft.data.synthetic.schema import Persona

PERSONA_SYSTEM = ("You are a persona designer for customer-support training. You invent challenging, realistic "
                  "customers that stress-test a support agent. Reply with JSON only.")
PERSONA_USER = ("Training aspect: {aspect}.\nCreate {count} distinct, challenging customer personas that stress-test "
                "this aspect (edge cases, not average customers).\nReply with JSON only, in this shape:\n"
                '{{"personas": [{{"name": "...", "description": "...", "traits": ["..."], "goal": "..."}}]}}')
CONVERSATION_SYSTEM = ("You write realistic multi-turn customer-support chat conversations used to train support "
                       "agents. Reply with JSON only.")
CONVERSATION_USER = (
    "Customer persona: {persona}\nTraits: {traits}\nTraining aspect: {aspect}\n\n"
    "Write a chat between this customer and a support agent with exactly {turns} messages, alternating speakers, "
    "{first} first. The LAST message must be from the customer and must be left unanswered (a question or request "
    "the agent has to answer next). Include a concrete order number (like ORD-48213) and concrete dates (like "
    "March 14). Let the customer's mood evolve realistically.\nReply with JSON only, in this shape:\n"
    '{{"messages": [{{"role": "customer", "content": "..."}}, {{"role": "agent", "content": "..."}}]}}'
)
ROLES = {"customer": "user", "user": "user", "agent": "assistant", "assistant": "assistant", "support": "assistant"}


def extract_json(text: str) -> Any:
    """The first JSON object in a reply, tolerating code fences and prose around it."""
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end <= start:
        raise ValueError("no JSON object in the reply")
    return json.loads(text[start:end + 1])


class ChatGenerator:
    """Thin client: one JSON-returning chat call with a seed and a temperature."""

    def __init__(self, base_url: str | None, model: str, api_key_env: str = "OPENAI_API_KEY",
                 timeout: float = 60.0, max_retries: int = 2):
        key = os.environ.get(api_key_env)
        if not key:
            raise UserError(f"synthetic: environment variable {api_key_env} is not set; put the API key there "
                            f"(any non-empty value for local servers that need none)")
        from openai import OpenAI

        self.client = OpenAI(base_url=base_url, api_key=key, timeout=timeout, max_retries=max_retries)
        self.model = model
        self.calls = 0

    def __repr__(self) -> str:  # never show the key
        return f"ChatGenerator(model={self.model!r}, base_url={str(self.client.base_url)!r})"

    def complete(self, system: str, user: str, temperature: float, seed: int, max_tokens: int = 1500) -> str:
        self.calls += 1
        reply = self.client.chat.completions.create(
            model=self.model, messages=[{"role": "system", "content": system}, {"role": "user", "content": user}],
            temperature=temperature, seed=seed, max_tokens=max_tokens)
        return reply.choices[0].message.content or ""


def parse_personas(text: str, aspect: str, start: int) -> list[Persona]:
    data = extract_json(text)
    items = data.get("personas") if isinstance(data, dict) else None
    if not isinstance(items, list) or not items:
        raise ValueError("reply has no 'personas' list")
    out = []
    for j, p in enumerate(items):
        if not isinstance(p, dict) or not str(p.get("name", "")).strip() or not str(p.get("description", "")).strip():
            raise ValueError(f"persona {j + 1} needs a name and a description")
        traits = p.get("traits") or []
        out.append(Persona(f"persona-{start + j:03d}", aspect, str(p["name"]).strip(), str(p["description"]).strip(),
                           [str(t) for t in traits] if isinstance(traits, list) else [str(traits)],
                           str(p.get("goal", "")).strip()))
    return out


def parse_messages(text: str) -> list[dict[str, str]]:
    data = extract_json(text)
    items = data.get("messages") if isinstance(data, dict) else None
    if not isinstance(items, list):
        raise ValueError("reply has no 'messages' list")
    out = []
    for m in items:
        role = ROLES.get(str(m.get("role", "")).strip().lower()) if isinstance(m, dict) else None
        if role is None:
            raise ValueError(f"unknown speaker {m.get('role') if isinstance(m, dict) else m!r}")
        out.append({"role": role, "content": str(m.get("content", "")).strip()})
    return out


def persona_request(aspect: str, count: int) -> tuple[str, str]:
    return PERSONA_SYSTEM, PERSONA_USER.format(aspect=aspect, count=count)


def conversation_request(persona: Persona, turns: int) -> tuple[str, str]:
    first = "the customer" if turns % 2 else "the agent (a greeting)"
    return CONVERSATION_SYSTEM, CONVERSATION_USER.format(persona=persona.summary(), traits=", ".join(persona.traits),
                                                         aspect=persona.aspect, turns=turns, first=first)
