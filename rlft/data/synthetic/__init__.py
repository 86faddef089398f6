"""Synthetic support conversations (UBIAI phases 2-4): aspects -> personas -> conversations -> prompt dataset.

`rlft generate` and `generate_dataset()` write a JSONL prompt dataset (`prompt` = chat messages ending with an
unanswered customer message, plus metadata columns) that `rlft label` samples and scores. Generators: `template`
(offline, no endpoint) and `openai` (any OpenAI-compatible endpoint). Not here: labelling, judging, training.
"""

from rlft.data.synthetic.generate import SyntheticConfig, generate_dataset, load_config, write_dataset
from rlft.data.synthetic.schema import DEFAULT_ASPECTS, Conversation, Persona, conversation_problem

__all__ = ["DEFAULT_ASPECTS", "Conversation", "Persona", "SyntheticConfig", "conversation_problem",
           "generate_dataset", "load_config", "write_dataset"]
