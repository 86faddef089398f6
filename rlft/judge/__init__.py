"""LLM-as-a-judge machinery for RLAIF rewards: backends, prompts, parsing, cache, guidelines, budget.

The reward users put in a recipe is `rlft.rewards.judge.JudgeReward` (built-in name `judge`); this package is what
it is made of, usable on its own (e.g. to label data or evaluate). Guide: docs/judge.md.
"""

from rlft.judge.budget import Budget, JudgeBudgetExceeded, Usage
from rlft.judge.cache import JudgeCache
from rlft.judge.client import (ChatClient, CircuitBreaker, JudgeCallError, JudgeEndpointError, LocalChatClient,
                               OpenAIChatClient, Reply)
from rlft.judge.judgment import Judge, Judgment, Sample
from rlft.judge.parsing import Parsed, VerdictParser
from rlft.judge.policies import Guidelines
from rlft.judge.prompt_templates import JudgeTemplate, neutralize, strip_invisible

__all__ = ["Budget", "ChatClient", "CircuitBreaker", "Guidelines", "Judge", "JudgeBudgetExceeded", "JudgeCache",
           "JudgeCallError", "JudgeEndpointError", "JudgeTemplate", "Judgment", "LocalChatClient", "OpenAIChatClient",
           "Parsed", "Reply", "Sample", "Usage", "VerdictParser", "neutralize", "strip_invisible"]
