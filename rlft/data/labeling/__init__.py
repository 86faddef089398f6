"""Turn rewards into offline preference data: sample completions, score them, write KTO and DPO sets.

`rlft label` and `label_dataset()` sample N completions per prompt from a model (the base, or base + adapter),
score them with any reward list through `rlft.scoring.completions.score`, and write:

- `kto.jsonl` (`prompt, completion, label`) and its UBIAI export (`system_prompt, input, output, rating`);
- `dpo.jsonl` (`prompt, chosen, rejected`, best vs worst sample) and its Tinker export
  (`prompt, response_a, response_b, winner`);
- `records.jsonl`, the resumable per-prompt log everything else is rebuilt from, and `summary.json`.

Not here: training (recipes read these files through `rlft.data.loading`), judge clients (`rlft.rewards.judge`).
"""

from rlft.data.labeling.label import LabelConfig, LabelResult, build_dpo, build_kto, label_dataset
from rlft.data.labeling.sample import SamplingConfig

__all__ = ["LabelConfig", "LabelResult", "SamplingConfig", "build_dpo", "build_kto", "label_dataset"]
