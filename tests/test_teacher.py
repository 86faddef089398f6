"""Context distillation (`signal.teacher_lookup`, rlft.grpo.teacher): the student's prompt holds the customer only;
a teacher scores the student's reply tokens with the GOLD label's article inserted after the head, and the
log-ratio reaches the reply tokens' advantages (never the head's). Pinned: the article is in the teacher's ids and
not in the student's; the per-token terms; the log-probs against a direct forward; a tiny GRPO run that logs the
teacher's metrics and is not an oracle; bad settings are one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
import yaml

import rlft
from rlft.grpo.teacher import distill_advantages, teacher_rows, token_logprobs
from tests.conftest import ROOT, tiny_grpo_recipe


def test_the_article_is_in_the_teacher_ids_only_and_the_reply_tokens_line_up():
    prompts, completions = [[1, 2, 3], [4, 5]], [[10, 11, 20, 21, 22], [12, 30]]
    heads, articles = [2, 1], [[7, 8, 9], [6]]
    students, teachers, s_start, t_start = teacher_rows(prompts, completions, heads, articles)
    assert students == [[1, 2, 3, 10, 11, 20, 21, 22], [4, 5, 12, 30]]
    assert teachers == [[1, 2, 3, 10, 11, 7, 8, 9, 20, 21, 22], [4, 5, 12, 6, 30]]
    assert not any(a in s for a in (7, 8, 9, 6) for s in students)
    for s, t, i, j, c, h in zip(students, teachers, s_start, t_start, completions, heads, strict=True):
        assert s[i:] == t[j:] == c[h:]  # the same reply tokens are scored in both


def test_terms_go_to_reply_tokens_only_scaled_and_clipped():
    student = [torch.tensor([-1.0, -2.0, -9.0]), torch.tensor([])]
    teacher = [torch.tensor([-0.5, -4.0, -0.5]), torch.tensor([])]
    terms, mean = distill_advantages(student, teacher, head_lengths=[2, 3], width=6, coef=0.5, clip=3.0)
    assert terms[0].tolist() == [0.0, 0.0, 0.25, -1.0, 1.5, 0.0]  # 0.5 * clip([0.5, -2, 8.5], 3)
    assert terms[1].tolist() == [0.0] * 6  # head only: nothing from the teacher
    assert mean.tolist() == pytest.approx([(0.5 - 2.0 + 8.5) / 3, 0.0])


def test_token_logprobs_match_a_direct_forward(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    seqs = [[5, 6, 7, 8, 9], [11, 12, 13]]
    got = token_logprobs(model, seqs, starts=[3, 1], counts=[2, 2], pad_token_id=0, batch_size=2)
    for seq, start, lp in zip(seqs, [3, 1], got, strict=True):
        with torch.no_grad():
            logp = torch.log_softmax(model(torch.tensor([seq])).logits[0].float(), -1)
        want = [logp[t - 1, seq[t]].item() for t in range(start, start + 2)]
        assert lp.tolist() == pytest.approx(want, abs=1e-5)


TEACHER = """
decoding: {{prefill: "<intent>", constrain_labels: true, free_reply: true, reply_min_tokens: 2}}
signal: {{teacher_lookup: "demo:articles", teacher_coef: 2.0{extra}}}
"""


def _recipe(tmp_path, model, extra: str = "") -> str:
    path = tmp_path / "recipe.yaml"
    body = yaml.safe_load(tiny_grpo_recipe(tmp_path, model, completion=12))
    body.update(yaml.safe_load(TEACHER.format(extra=extra)))
    body["trainer"].update(max_steps=2, logging_steps=1)
    path.write_text(yaml.safe_dump(body))
    return str(path)


def test_a_grpo_run_with_the_self_teacher_logs_its_terms_and_is_no_oracle(tiny_model_dir, tmp_path):
    recipe = _recipe(tmp_path, tiny_model_dir)
    rlft.train(recipe)
    history = json.loads((tmp_path / "out" / "metrics.json").read_text())["log_history"]
    steps = [h for h in history if "teacher/advantage_abs" in h]
    assert len(steps) == 2 and all(h["teacher/advantage_abs"] > 0 for h in steps), history
    check = subprocess.run([sys.executable, "-m", "rlft", "check", recipe], cwd=ROOT, capture_output=True, text=True,
                           timeout=600)
    assert check.returncode == 0, check.stderr[-2000:]
    assert "oracle" not in check.stdout.lower()  # the article is the teacher's, never the deployed prompt's


def test_a_frozen_teacher_adapter_is_loaded_and_used(tiny_model_dir, tmp_path):
    first = tmp_path / "first"
    first.mkdir()
    rlft.train(_recipe(first, tiny_model_dir))  # any LoRA adapter on this base serves as a teacher
    second = tmp_path / "second"
    second.mkdir()
    rlft.train(_recipe(second, tiny_model_dir, extra=f", teacher_adapter: {first / 'out'}"))
    history = json.loads((second / "out" / "metrics.json").read_text())["log_history"]
    assert [h for h in history if h.get("teacher/advantage_abs", 0) > 0], history


@pytest.mark.parametrize(("extra", "message"), [
    (', teacher_coef: .nan', "signal.teacher_coef: expected a finite number > 0, got nan"),
    (', teacher_lookup_template: "no slot"', "signal.teacher_lookup_template: expected text containing {article}, "
                                             "got 'no slot'"),
    (', teacher_adapter: /nonexistent', "signal.teacher_adapter: expected a LoRA adapter folder (with "
                                        "adapter_config.json), got '/nonexistent'"),
])
def test_bad_teacher_settings_are_one_line_errors(tiny_model_dir, tmp_path, extra, message):
    recipe = _recipe(tmp_path, tiny_model_dir, extra=extra)
    done = subprocess.run([sys.executable, "-m", "rlft", "validate", recipe], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert [line for line in done.stderr.splitlines() if line.strip()] == [f"error: {recipe}: {message}"]


def test_the_student_may_not_see_a_looked_up_article(tiny_model_dir, tmp_path):
    recipe = _recipe(tmp_path, tiny_model_dir)
    body = yaml.safe_load(open(recipe).read())
    body["decoding"]["lookup"] = "demo:articles"
    open(recipe, "w").write(yaml.safe_dump(body))
    done = subprocess.run([sys.executable, "-m", "rlft", "validate", recipe], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 2
    assert "signal.teacher_lookup: the student must not see a looked-up article" in done.stderr
