"""The synthetic-conversation schema: personas, conversations, the checks they must pass, and the output row.

A conversation is 3-6 chat messages (`min_turns`..`max_turns`) alternating `user` (customer) and `assistant`
(agent), ending with an unanswered customer message, mentioning a concrete order number and a date. One output
row (one JSONL line) is::

    {"id": "conv-00007", "prompt": [{"role": "system", ...}, {"role": "user", ...}, ..., {"role": "user", ...}],
     "aspect": "refund handling", "persona_id": "persona-003", "persona": "Dana, serial refund seeker: ...",
     "turns": 3, "order_numbers": ["ORD-48213"], "dates": ["March 14"], "generator": "template", "seed": 7}

`prompt` is what `rlft label` samples replies for; the other columns travel into the labelled rows as metadata.
Not here: generation (`rlft.data.synthetic.templates`, `rlft.data.synthetic.llm`), de-duplication.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import regex

# UBIAI's eight training aspects (Phase 1 of their pipeline), the default when none are given.
DEFAULT_ASPECTS = (
    "refund handling", "managing difficult customers", "first-contact resolution",
    "customer satisfaction optimization", "product complaint handling", "escalation efficiency",
    "shipping communication", "proactive problem-solving",
)
DEFAULT_SYSTEM_PROMPT = ("You are a customer support agent for an online store. Resolve the customer's issue "
                         "politely, follow store policy, and be concrete about next steps.")
ORDER_RE = regex.compile(r"(?:\b[A-Z]{2,5}-?\d{4,}\b|#\d{4,}\b)")
MONTHS = ("january|february|march|april|may|june|july|august|september|october|november|december|"
          "jan|feb|mar|apr|jun|jul|aug|sep|sept|oct|nov|dec")
DATE_RE = regex.compile(rf"(?:\b\d{{4}}-\d{{2}}-\d{{2}}\b|\b\d{{1,2}}/\d{{1,2}}(?:/\d{{2,4}})?\b|"
                        rf"\b(?:{MONTHS})\.?\s+\d{{1,2}}(?:st|nd|rd|th)?\b|"
                        rf"\b\d{{1,2}}(?:st|nd|rd|th)?\s+(?:{MONTHS})\b)", regex.IGNORECASE)


@dataclass
class Persona:
    id: str
    aspect: str
    name: str
    description: str
    traits: list[str] = field(default_factory=list)
    goal: str = ""

    def summary(self) -> str:
        return f"{self.name}: {self.description}"


@dataclass
class Conversation:
    id: str
    persona: Persona
    messages: list[dict[str, str]]  # user/assistant turns only, no system message
    generator: str
    seed: int

    def details(self) -> tuple[list[str], list[str]]:
        text = "\n".join(m["content"] for m in self.messages)
        return sorted(set(ORDER_RE.findall(text))), sorted(set(DATE_RE.findall(text)))

    def to_row(self, system_prompt: str | None) -> dict[str, Any]:
        orders, dates = self.details()
        system = [{"role": "system", "content": system_prompt}] if system_prompt else []
        return {"id": self.id, "prompt": system + self.messages, "aspect": self.persona.aspect,
                "persona_id": self.persona.id, "persona": self.persona.summary(), "turns": len(self.messages),
                "order_numbers": orders, "dates": dates, "generator": self.generator, "seed": self.seed}


def conversation_problem(messages: list[dict[str, str]], min_turns: int, max_turns: int,
                         require_details: bool = True) -> str | None:
    """Why a conversation breaks the schema, or None when it is valid."""
    if not min_turns <= len(messages) <= max_turns:
        return f"has {len(messages)} turns, expected {min_turns}-{max_turns}"
    for i, m in enumerate(messages):
        if m.get("role") not in ("user", "assistant"):
            return f"turn {i + 1} has role {m.get('role')!r}, expected user or assistant"
        if not isinstance(m.get("content"), str) or not m["content"].strip():
            return f"turn {i + 1} is empty"
        if i and m["role"] == messages[i - 1]["role"]:
            return f"turns {i} and {i + 1} are both {m['role']} (roles must alternate)"
    if messages[-1]["role"] != "user":
        return "does not end with an unanswered customer message"
    if require_details:
        text = "\n".join(m["content"] for m in messages)
        if not ORDER_RE.search(text):
            return "mentions no order number (like ORD-12345)"
        if not DATE_RE.search(text):
            return "mentions no date (like March 14 or 2025-03-14)"
    return None
