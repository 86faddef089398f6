"""Judge prompt templates: load them from files, fill them, and keep untrusted text inside library-owned tags.

A template is a text file a user can read and override, with a `[system]` and a `[user]` section and placeholders
in braces. Data placeholders (`{policy}`, `{prompt}`, `{response}`, `{reference}`, `{response_a}`, `{response_b}`)
are replaced by the text wrapped in tags the library writes itself, e.g. ``<response>…</response>``; inside the
text, anything that looks like one of those tags or like the verdict line (``VERDICT:``) is neutralised first, so a
completion cannot close its own tag or pre-write a verdict (look-alike spellings included: see `untrusted`).
Plain placeholders (`{labels}`, `{scale_min}`, `{scale_max}`) are filled with library values. Substitution is one
pass: text put in is never scanned again.

Not here: choosing the guideline (`policies`), reading the judge's reply (`parsing`).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import regex

from rlft.errors import RewardError
from rlft.judge.untrusted import looks_like_injection, neutralize, strip_invisible  # noqa: F401 - re-exported

DATA_FIELDS = ("policy", "prompt", "response", "reference", "response_a", "response_b")
PLAIN_FIELDS = ("labels", "scale_min", "scale_max")
TAG_NAMES = {"policy": "policy", "prompt": "customer_message", "response": "response", "reference": "reference",
             "response_a": "response_a", "response_b": "response_b"}
BUILTIN_TEMPLATES = ("binary", "score", "pairwise")
REQUIRED = {"binary": ("response",), "score": ("response",), "pairwise": ("response_a", "response_b")}
PLACEHOLDER = regex.compile(r"\{([a-z_]+)\}")
SECTION = regex.compile(r"^\[(system|user)\]\s*$", regex.MULTILINE)


def _message_text(message: Any) -> str:
    content = message.get("content", "") if isinstance(message, dict) else message
    if isinstance(content, list):  # content blocks
        return "".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return str(content)


def conversation_text(prompt: Any) -> str:
    """The customer's side of a prompt: the string, or the last user message of a chat-message list."""
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, list):
        users = [m for m in prompt if isinstance(m, dict) and m.get("role") == "user"]
        return _message_text(users[-1] if users else (prompt[-1] if prompt else {}))
    return str(prompt)


def prompt_text(prompt: Any) -> str:
    """Everything the model was shown: the string, or every message of a chat-message list (system included)."""
    if isinstance(prompt, list):
        return "\n".join(_message_text(m) for m in prompt)
    return str(prompt)


@dataclass(frozen=True)
class JudgeTemplate:
    """A loaded template; `source` (the whole file) is part of the judge cache key."""

    name: str
    system: str
    user: str
    source: str

    @classmethod
    def load(cls, ref: str, mode: str) -> JudgeTemplate:
        """`ref` is a built-in name (binary | score | pairwise) or a path to a template file."""
        if ref in BUILTIN_TEMPLATES:
            source = resources.files("rlft.judge").joinpath("templates", f"judge_{ref}.txt").read_text(encoding="utf-8")
        else:
            path = Path(ref).expanduser()
            if not path.is_file():
                raise RewardError(f"judge: template '{ref}' is neither a built-in ({', '.join(BUILTIN_TEMPLATES)}) "
                                  f"nor an existing file")
            source = path.read_text(encoding="utf-8")
        return cls.parse(ref, source, mode)

    @classmethod
    def parse(cls, name: str, source: str, mode: str) -> JudgeTemplate:
        parts = SECTION.split(source)
        sections: dict[str, str] = {}
        if len(parts) == 1:  # no headers: the whole file is the user message
            sections["user"] = source
        for i in range(1, len(parts) - 1, 2):
            sections[parts[i]] = parts[i + 1].strip("\n")
        if not sections.get("user", "").strip():
            raise RewardError(f"judge: template '{name}' has no [user] section")
        used = set(PLACEHOLDER.findall(sections.get("system", "") + sections["user"]))
        unknown = used - set(DATA_FIELDS) - set(PLAIN_FIELDS)
        if unknown:
            raise RewardError(f"judge: template '{name}' uses unknown placeholder(s) {sorted(unknown)}; allowed: "
                              f"{', '.join(DATA_FIELDS + PLAIN_FIELDS)}")
        missing = [f for f in REQUIRED[mode] if f not in used]
        if missing:
            raise RewardError(f"judge: template '{name}' lacks {missing} needed by mode '{mode}'")
        return cls(name, sections.get("system", "").strip(), sections["user"].strip(), source)

    def render(self, data: dict[str, str], plain: dict[str, str], marker: str = "VERDICT") -> list[dict[str, str]]:
        """Chat messages for one judgment; `data` values are untrusted and get wrapped + neutralised."""

        def fill(text: str) -> str:
            def sub(m: regex.Match) -> str:
                key = m.group(1)
                if key in DATA_FIELDS:
                    tag = TAG_NAMES[key]
                    return f"<{tag}>\n{neutralize(data.get(key, ''), marker)}\n</{tag}>"
                return str(plain.get(key, ""))

            return PLACEHOLDER.sub(sub, text)

        messages = [{"role": "system", "content": fill(self.system)}] if self.system else []
        messages.append({"role": "user", "content": fill(self.user)})
        return messages
