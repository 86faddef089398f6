"""Echo detection: does a reply repeat, word for word, what its prompt told the agent to do?

When the policy is shown to the model as context, pasting it back is the cheapest way to meet a keyword rubric:
GRPO on recipes/support_agent.yaml learned exactly that in an hour ("Ask for the order number and which payment
method was used; ... If the customer was charged twice, say ...": docs/support_agent.md#echo). A reply to the
customer may well repeat the policy's FACTS ("credit and debit cards, PayPal and gift cards"), but never its words
to the agent ("the customer", "ask for", "explain that"). So the check is: a verbatim run of >= `min_words` words
of the prompt that holds one of those cues. Used by the rubric reward's `copied` gate (rewards/rubric.py).

    >>> copied_runs("Sure! Ask for the order number and the new address.", "Ask for the order number and the new "
    ...             "address. Say it can change before shipping.")
    ['ask for the order number and the new address']
"""

from __future__ import annotations

import regex

# Words: letters/digits plus "$", "'" and ">" ("$4.99" -> "$4", "99"; "Account > Orders" keeps its ">").
_WORD = regex.compile(r"[\w$'>]+")
# The policy's words to the AGENT (instructions about the customer), which a reply to the customer never repeats.
DEFAULT_ECHO_CUES = ("the customer", "ask for", "ask the", "ask them", "tell them", "tell the", "say that", "say the",
                     "say you", "explain that", "explain how", "explain the", "mention that", "mention the",
                     "point the", "list the", "give the", "state the", "offer to", "offer a", "suggest",
                     "acknowledge", "apologise", "never ask", "do not", "confirm which", "before confirming")


def copied_runs(reply: str, source: str, min_words: int = 6) -> list[str]:
    """The reply's maximal runs of words that repeat `source` verbatim for >= `min_words` words (lower-cased,
    punctuation ignored), each as one space-joined string."""
    words, src = _WORD.findall(reply.lower()), _WORD.findall(source.lower())
    if len(words) < min_words or len(src) < min_words:
        return []
    grams = {tuple(src[i:i + min_words]) for i in range(len(src) - min_words + 1)}
    covered = [False] * len(words)
    for i in range(len(words) - min_words + 1):
        if tuple(words[i:i + min_words]) in grams:
            covered[i:i + min_words] = [True] * min_words
    runs, current = [], []
    for word, inside in zip(words, covered, strict=True):
        if inside:
            current.append(word)
        elif current:
            runs.append(" ".join(current))
            current = []
    return runs + ([" ".join(current)] if current else [])
