"""`algorithm: rft` on two CPU processes (`accelerate launch --config_file recipes/accelerate/cpu_2proc.yaml`, gloo):
each process samples and scores only its share of the picked prompts, both end with the whole kept list in the order
one process lists it, and only the main process writes rft_samples.jsonl and rft_summary.json.

The launched half is this module run as a script (`_worker`, `python -m tests.test_rft_processes MODEL_DIR TMP`): it
builds the rft trainer as tests/test_rft.py does, each rank into its own output folder (so a write by rank 1 shows),
with a reward that records the prompts it scored, and dumps those and the trainer's examples per rank. One launch,
~30-60 s on two shared cores.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

from rlft.recipe.sections import DecodingConfig, RFTConfig
from rlft.trainers.rft.collect import merge, share
from rlft.trainers.rft.selection import pick_prompts
from tests.conftest import ROOT
from tests.test_lookup import LABELS
from tests.test_multiprocess import ACCELERATE, CONFIG, run_own_session

PROMPTS, SAMPLES = 7, 2  # 7 of the 8 rows: shares of 4 and 3


def _worker(tiny_model_dir: str, tmp: str) -> None:
    from accelerate import PartialState

    from rlft.trainers.rft.trainer import build_trainer
    from tests.test_rft import _rft_context

    rank = int(os.environ["RANK"])
    scored: list[str] = []

    def passes(prompts, completions, intent, **kwargs):  # every label but review passes
        scored.extend(p[-1]["content"] for p in prompts)
        return [0.0 if label == "review" else 1.0 for label in intent]

    decoding = DecodingConfig(prefill="<intent>", constrain_labels=True)  # the head only: short completions
    ctx, tok = _rft_context(tiny_model_dir, Path(tmp) / f"rank{rank}", decoding, passes,
                            RFTConfig(prompts=PROMPTS, samples=SAMPLES, min_reward=1.0))
    trainer = build_trainer(ctx)
    kept = [tok.decode(e["input_ids"]) for e in trainer.train_dataset]
    (Path(tmp) / f"rank{rank}.json").write_text(json.dumps({"scored": scored, "kept": kept}))
    PartialState().destroy_process_group()


def _launch(tiny_model_dir: Path, tmp_path: Path, timeout: int = 300) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "HF_HOME": str(tmp_path / "hf_home")}
    env.pop("RANK", None)
    cmd = [str(ACCELERATE), "launch", "-q", "--config_file", str(CONFIG), "--num_processes", "2", "-m",
           "tests.test_rft_processes", str(tiny_model_dir), str(tmp_path)]
    run_own_session(cmd, env, timeout, "2-process rft")


def _question(text: str) -> int:
    """The data row a prompt (or a decoded example holding it) comes from: tiny_lora_rows' "question {i}"."""
    return int(re.search(r"question (\d+)", text).group(1))


def test_two_processes_split_the_sampling_and_share_one_kept_list(tiny_model_dir, tmp_path):
    _launch(tiny_model_dir, tmp_path)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    picked = pick_prompts([LABELS[i % 4] for i in range(8)], 8, PROMPTS, seed=0)  # the rows, in one process's order

    scored = [[_question(p) for p in rank["scored"]] for rank in ranks]
    for r, rows in enumerate(scored):  # each rank scored its own share, each prompt's samples once
        assert sorted(rows) == sorted(picked[k] for k in share(PROMPTS, r, 2) for _ in range(SAMPLES))
    assert not set(scored[0]) & set(scored[1]) and set(scored[0]) | set(scored[1]) == set(picked)

    passing = [i for i in picked if LABELS[i % 4] != "review"]  # one kept completion each, in picked order
    assert ranks[0]["kept"] == ranks[1]["kept"]  # the same examples on both ranks, in the same order
    assert [_question(text) for text in ranks[0]["kept"]] == passing

    out, other = tmp_path / "rank0" / "out", tmp_path / "rank1" / "out"
    assert not (other / "rft_samples.jsonl").exists() and not (other / "rft_summary.json").exists()
    lines = [json.loads(line) for line in (out / "rft_samples.jsonl").read_text().splitlines()]
    assert [_question(k["prompt"][-1]["content"]) for k in lines] == passing
    assert all(k["intent"] == LABELS[_question(k["prompt"][-1]["content"]) % 4] for k in lines)  # its own row's label
    summary = json.loads((out / "rft_summary.json").read_text())
    assert (summary["prompts"], summary["completions"], summary["kept"]) == (PROMPTS, PROMPTS * SAMPLES, len(passing))
    assert summary["processes"] == 2 and len(summary["sampling_cpu_s_per_process"]) == 2
    assert summary["prompts_per_label"] == {"cancel_order": 2, "get_refund": 2, "review": 2, "track_order": 1}


def _kept(prompt: int, name: str, head_only: bool = False, hint: str = "") -> dict:
    return {"prompt": prompt, "text": name, "reward": 1.0, "hint": hint, "head_only": head_only}


def _summary(prompts: int, kept: int, heads: int, best: float | None, cpu: float) -> dict:
    return {"prompts": prompts, "samples": 2, "completions": 2 * prompts, "hinted_tried": 1, "greedy_kept": 1,
            "greedy_failed_kept_sample": 1, "departures": 1, "kept": kept, "heads_only": heads, "kept_after_hint": 0,
            "best_reward": best, "min_reward": 1.0, "sampling_cpu_s": cpu}


def test_merge_lists_the_shares_as_one_process_would():
    # picked rows 0..4 on two processes: process 0 sampled rows 0, 2, 4 (its local 0, 1, 2), process 1 rows 1, 3
    zero = [_kept(0, "row 0"), _kept(0, "row 0 second"), _kept(2, "row 4"), _kept(1, "row 2 head", head_only=True)]
    one = [_kept(0, "row 1", hint=" Could you"), _kept(1, "row 3 head", head_only=True)]
    kept, summary = merge([(share(5, 0, 2), zero, _summary(3, 3, 1, 1.0, 2.0)),
                           (share(5, 1, 2), one, _summary(2, 1, 1, 1.5, 3.5))])
    # whole completions by prompt (a prompt's best first, as sampled), then the heads only by prompt
    assert [(k["prompt"], k["text"]) for k in kept] == [(0, "row 0"), (0, "row 0 second"), (1, "row 1"),
                                                        (4, "row 4"), (2, "row 2 head"), (3, "row 3 head")]
    assert summary == {"prompts": 5, "samples": 2, "completions": 10, "hinted_tried": 2, "greedy_kept": 2,
                       "greedy_failed_kept_sample": 2, "departures": 2, "kept": 4, "heads_only": 2,
                       "kept_after_hint": 0, "best_reward": 1.5, "min_reward": 1.0, "sampling_cpu_s": 5.5,
                       "processes": 2, "sampling_cpu_s_per_process": [2.0, 3.5]}
    # a process with no share (fewer prompts than processes) sampled nothing: counted as zero
    kept, summary = merge([([0], [_kept(0, "x")], _summary(1, 1, 0, None, 1.0)), ([], [], None)])
    assert [k["text"] for k in kept] == ["x"] and summary["prompts"] == 1 and summary["best_reward"] is None
    assert summary["sampling_cpu_s_per_process"] == [1.0, 0.0]


if __name__ == "__main__":
    _worker(*sys.argv[1:])
