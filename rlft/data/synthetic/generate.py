"""UBIAI phases 2-4 as one call: aspects -> challenging personas -> multi-turn conversations -> prompt dataset.

`generate_dataset(cfg)` returns the rows and a report; `write_dataset` writes them as JSONL (schema in
`rlft.data.synthetic.schema`) for `rlft label`. The generator is `template` (offline) or `openai` (any
OpenAI-compatible endpoint). Conversations that fail the schema are retried with the next seed up to
`max_attempts` times, then counted as rejected; duplicates are removed and counted. Nothing is dropped silently.

Temperatures (documented defaults): personas 1.0, conversations 0.9 (UBIAI phase 3). Baseline replies are
sampled later by `rlft label` (UBIAI phase 4 uses 0.7) and judged at 0.3 by the judge reward (phase 5).
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from rlft.errors import UserError, did_you_mean
from rlft.data.synthetic.dedup import dedup_indices
from rlft.data.synthetic.schema import DEFAULT_ASPECTS, DEFAULT_SYSTEM_PROMPT, Conversation, Persona, conversation_problem

GENERATORS = ("template", "openai")


@dataclass
class SyntheticConfig:
    aspects: list[str] = field(default_factory=lambda: list(DEFAULT_ASPECTS),
                               metadata={"help": "Training aspects (UBIAI phase 2), e.g. refund handling."})
    personas_per_aspect: int = field(default=2, metadata={"help": "Challenging personas per aspect (phase 3)."})
    conversations_per_persona: int = field(default=3, metadata={"help": "Conversations per persona (phase 4)."})
    min_turns: int = field(default=3, metadata={"help": "Fewest messages per conversation."})
    max_turns: int = field(default=6, metadata={"help": "Most messages per conversation."})
    generator: str = field(default="template", metadata={"help": "template (offline) | openai (any compatible "
                                                                 "endpoint)."})
    base_url: str | None = field(default=None, metadata={"help": "Endpoint, e.g. http://localhost:8000/v1 (null: "
                                                                 "OpenAI)."})
    model: str = field(default="gpt-4o-mini", metadata={"help": "Model name sent to the endpoint."})
    api_key_env: str = field(default="OPENAI_API_KEY", metadata={"help": "Env var holding the API key."})
    persona_temperature: float = field(default=1.0, metadata={"help": "Sampling temperature for personas."})
    conversation_temperature: float = field(default=0.9, metadata={"help": "For conversations (UBIAI: 0.9)."})
    seed: int = field(default=0, metadata={"help": "Run seed; every request gets a seed derived from it."})
    system_prompt: str | None = field(default=DEFAULT_SYSTEM_PROMPT,
                                      metadata={"help": "Agent system message put first in each prompt (null: none)."})
    require_details: bool = field(default=True, metadata={"help": "Reject conversations without an order number "
                                                                  "and a date."})
    dedup_threshold: float = field(default=0.9, metadata={"help": "Word-shingle Jaccard at which two "
                                                                  "conversations are near duplicates (1.0: exact "
                                                                  "only)."})
    max_attempts: int = field(default=3, metadata={"help": "Tries per persona list / conversation."})
    timeout: float = field(default=60.0, metadata={"help": "Seconds per request."})

    def check(self) -> None:
        if self.generator not in GENERATORS:
            raise UserError(f"synthetic: generator '{self.generator}' is not one of {', '.join(GENERATORS)}"
                            f"{did_you_mean(self.generator, GENERATORS)}")
        if not self.aspects or any(not str(a).strip() for a in self.aspects):
            raise UserError("synthetic: aspects must be a non-empty list of names")
        if not 1 <= self.min_turns <= self.max_turns:
            raise UserError(f"synthetic: need 1 <= min_turns <= max_turns, got {self.min_turns}, {self.max_turns}")
        if self.personas_per_aspect < 1 or self.conversations_per_persona < 1 or self.max_attempts < 1:
            raise UserError("synthetic: personas_per_aspect, conversations_per_persona and max_attempts must be >= 1")


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> SyntheticConfig:
    """A YAML file of SyntheticConfig keys (unknown keys are errors), then `overrides`."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"synthetic: config file '{path}' does not exist")
    raw = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    if not isinstance(raw, dict):
        raise UserError(f"{path}: expected a mapping of settings")
    raw.update(overrides or {})
    allowed = SyntheticConfig.__dataclass_fields__
    for key in raw:
        if key not in allowed:
            raise UserError(f"{path}: unknown key '{key}'{did_you_mean(key, allowed)}; allowed: {', '.join(allowed)}")
    return SyntheticConfig(**raw)


def _seed(cfg: SyntheticConfig, *parts: int) -> int:
    value = cfg.seed
    for p in parts:
        value = (value * 1_000_003 + p + 1) % (2**31 - 1)
    return value


def _personas_llm(cfg: SyntheticConfig, client: Any, aspect_index: int, aspect: str, start: int,
                  report: dict[str, Any]) -> list[Persona]:
    from rlft.data.synthetic.llm import parse_personas, persona_request

    system, user = persona_request(aspect, cfg.personas_per_aspect)
    for attempt in range(cfg.max_attempts):
        text = client.complete(system, user, cfg.persona_temperature, _seed(cfg, 1, aspect_index, attempt))
        try:
            return parse_personas(text, aspect, start)[:cfg.personas_per_aspect]
        except (ValueError, AttributeError) as exc:
            report["retries"].append(f"personas for '{aspect}': {exc}")
    raise UserError(f"synthetic: the endpoint gave no valid personas for aspect '{aspect}' in {cfg.max_attempts} "
                    f"attempts (last problem: {report['retries'][-1]})")


def _conversation(cfg: SyntheticConfig, client: Any, persona: Persona, conv_index: int,
                  report: dict[str, Any]) -> Conversation | None:
    from rlft.data.synthetic.templates import make_conversation

    for attempt in range(cfg.max_attempts):
        seed = _seed(cfg, 2, conv_index, attempt)
        conv_id = f"conv-{conv_index:05d}"
        if client is None:
            conv = make_conversation(persona, conv_id, seed, cfg.min_turns, cfg.max_turns)
        else:
            from rlft.data.synthetic.llm import conversation_request, parse_messages

            turns = random.Random(seed).randint(cfg.min_turns, cfg.max_turns)
            system, user = conversation_request(persona, turns)
            text = client.complete(system, user, cfg.conversation_temperature, seed)
            try:
                messages = parse_messages(text)
            except (ValueError, AttributeError) as exc:
                report["retries"].append(f"{conv_id}: {exc}")
                continue
            conv = Conversation(conv_id, persona, messages, f"openai:{cfg.model}", seed)
        problem = conversation_problem(conv.messages, cfg.min_turns, cfg.max_turns, cfg.require_details)
        if problem is None:
            return conv
        report["retries"].append(f"{conv_id}: {problem}")
    report["rejected"] += 1
    return None


def generate_dataset(cfg: SyntheticConfig) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Rows of the prompt dataset and a report (counts of personas, conversations, rejects, duplicates)."""
    from rlft.data.synthetic.templates import make_personas

    cfg.check()
    client = None
    if cfg.generator == "openai":
        from rlft.data.synthetic.llm import ChatGenerator

        client = ChatGenerator(cfg.base_url, cfg.model, cfg.api_key_env, cfg.timeout)
    report: dict[str, Any] = {"retries": [], "rejected": 0}
    personas: list[Persona] = []
    for a, aspect in enumerate(cfg.aspects):
        if client is None:
            personas += make_personas(aspect, cfg.personas_per_aspect, random.Random(_seed(cfg, 1, a)), len(personas))
        else:
            personas += _personas_llm(cfg, client, a, aspect, len(personas), report)
    conversations = []
    for p, persona in enumerate(personas):
        for c in range(cfg.conversations_per_persona):
            conv = _conversation(cfg, client, persona, p * cfg.conversations_per_persona + c, report)
            if conv is not None:
                conversations.append(conv)
    texts = ["\n".join(f"{m['role']}: {m['content']}" for m in conv.messages) for conv in conversations]
    keep, duplicates = dedup_indices(texts, cfg.dedup_threshold)
    rows = [conversations[i].to_row(cfg.system_prompt) for i in keep]
    report.update(personas=len(personas), generated=len(conversations), duplicates=duplicates, rows=len(rows),
                  requests=client.calls if client else 0, config={k: v for k, v in asdict(cfg).items()})
    report["personas_list"] = [asdict(p) for p in personas]
    return rows, report


def write_dataset(rows: list[dict[str, Any]], report: dict[str, Any], out: str | Path) -> Path:
    """Write rows as JSONL at `out` and the report next to it (`<out>.report.json`)."""
    import json

    from rlft.data.labeling.record import atomic_write, dumps

    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, "".join(dumps(r) + "\n" for r in rows))
    atomic_write(path.with_name(path.name + ".report.json"), json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    return path
