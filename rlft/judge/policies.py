"""Guidelines the judge grades against: one free-form text, or one policy per intent read from YAML or Markdown.

YAML: a mapping `{intent: policy text}`; an optional `default:` entry applies to intents without their own.
Markdown: one `## intent_name` heading per policy, the text below it is the policy; `## default` likewise::

    ## cancel_order
    Confirm which order is cancelled and mention the $4.99 cancellation fee before confirming.

`policies: demo` names the shipped demo file (`rewards/policies/demo_policies.yaml`, one policy per Bitext intent);
`demo:articles` the customer-facing help-centre articles with the same facts (`demo_help_articles.yaml`), which
recipes show the model as retrieved context (`data.policies`) while the judge and rubric keep `demo`.
Keys are matched after normalising (lower case, spaces and hyphens to `_`), so `Cancel Order` finds
`cancel_order`. The dataset column that picks the policy is the judge reward's `policy_column` (default `intent`).
A top-level `rubric:` key (a `## rubric` section in Markdown) belongs to the rubric reward (`rewards/rubric.py`) and
is not a policy: the same file drives both.

Not here: filling the template (`prompts`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import regex
import yaml

from rlft.errors import RewardError

DEFAULT_KEY = "default"
RUBRIC_KEY = "rubric"  # the rubric reward's section of a policy file; never a policy text


SHIPPED_POLICY_FILES = {"demo": "demo_policies.yaml", "demo:articles": "demo_help_articles.yaml"}


def shipped_policy_path(name: str = "demo") -> Path:
    """A policy file shipped inside the installed `rlft.rewards` package (the top-level `rewards/` folder)."""
    from importlib import resources

    return Path(str(resources.files("rlft.rewards").joinpath("policies", SHIPPED_POLICY_FILES[name])))


def normalize_key(text: str) -> str:
    return regex.sub(r"[\s\-]+", "_", str(text).strip().lower()).strip("_")


@dataclass
class Guidelines:
    """`for_key(k)` -> the policy text for one sample, or None when neither a policy nor a default exists."""

    policies: dict[str, str] = field(default_factory=dict)
    default: str | None = None
    source: str = "guideline"

    @classmethod
    def from_params(cls, guideline: str | None, policies: str | dict | None) -> Guidelines:
        if policies is None:
            if not guideline or not str(guideline).strip():
                raise RewardError("judge: give params.guideline (text) or params.policies (a YAML/Markdown file or a "
                                  "mapping intent -> policy)")
            return cls({}, str(guideline).strip(), "guideline")
        if isinstance(policies, dict):
            table, source = {k: v for k, v in policies.items() if k != RUBRIC_KEY}, "params.policies"
        elif policies in SHIPPED_POLICY_FILES:  # shipped with rlft (27 Bitext intents), wherever it is installed
            table, source = load_policy_file(shipped_policy_path(policies)), policies
        else:
            table, source = load_policy_file(policies), str(policies)
        parsed = {normalize_key(k): str(v).strip() for k, v in table.items() if str(v).strip()}
        default = parsed.pop(DEFAULT_KEY, None) or (str(guideline).strip() if guideline else None)
        if not parsed and default is None:
            raise RewardError(f"judge: {source} defines no policies")
        return cls(parsed, default, source)

    def for_key(self, key: object) -> str | None:
        if key is not None and self.policies:
            hit = self.policies.get(normalize_key(str(key)))
            if hit is not None:
                return hit
        return self.default


def load_policy_file(path: str | Path) -> dict[str, str]:
    """Read `{key: text}` from a .yaml/.yml or .md file."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise RewardError(f"judge: policies file '{path}' does not exist")
    text = p.read_text(encoding="utf-8")
    if p.suffix.lower() in (".yaml", ".yml"):
        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            raise RewardError(f"judge: policies file '{path}' is not valid YAML: {getattr(exc, 'problem', exc)}"
                              ) from None
        if isinstance(data, dict):
            data.pop(RUBRIC_KEY, None)
        if isinstance(data, dict) and set(data) == {"policies"}:  # tolerate a wrapping `policies:` key
            data = data["policies"]
        if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
            raise RewardError(f"judge: policies file '{path}' must map each intent to a policy text")
        return {str(k): v for k, v in data.items()}
    if p.suffix.lower() in (".md", ".markdown"):
        sections = regex.split(r"(?m)^##[ \t]+(.+?)[ \t]*$", text)
        out = {sections[i].strip(): sections[i + 1].strip() for i in range(1, len(sections) - 1, 2)}
        out = {k: v for k, v in out.items() if normalize_key(k) != RUBRIC_KEY}
        if not out:
            raise RewardError(f"judge: policies file '{path}' has no '## intent' sections")
        return out
    raise RewardError(f"judge: policies file '{path}' must be .yaml, .yml or .md")
