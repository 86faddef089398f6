"""Issue 33, "where it came from": an error names where the bad value was given -- the command line, the child
recipe or the parent it extends -- also for reward entries (`rewards.0.x=` is `rewards[0].x` in messages) and for
the checks a section runs itself (decoding); an empty recipe file says it is empty."""

from __future__ import annotations

import pytest

from rlft.cli import run

PARENT = """algorithm: grpo
output_dir: {tmp}/out
model: {{name: {model}}}
data: {{source: demo:intents, demo_size: 40}}
rewards:
  - name: intent
trainer: {{max_steps: 1, per_device_train_batch_size: 4, num_generations: 4, max_completion_length: 8}}
"""
PARAMZ = "rewards[0].paramz: unknown key (did you mean 'params'?); allowed: name, weight, params, alias, timeout"
CASES = [  # (override, or a line for the parent / the child, the message after "<where>: ")
    ("rewards.0.paramz=1", "rewards: [{name: intent, paramz: 1}]", PARAMZ),
    ("rewards.0.weight=x", "rewards: [{name: intent, weight: x}]", "rewards[0].weight: expected float, got 'x'"),
    ("decoding.reply_max_tokens=-1", "decoding: {reply_max_tokens: -1}",
     "decoding.reply_max_tokens: expected >= 0, got -1"),
    ("decoding.analysis_max_tokens=-5", "decoding: {analysis_max_tokens: -5}",
     "decoding.analysis_max_tokens: expected >= 0, got -5"),
    ("adapter.r=0", "adapter: {r: 0}", "adapter.r and adapter.alpha must be positive, got r=0, alpha=32"),
    ("adapter.dropout=1.5", "adapter: {dropout: 1.5}", "adapter.dropout: expected 0 <= dropout < 1, got 1.5"),
]


@pytest.fixture
def files(tmp_path, tiny_model_dir):
    def write(parent_extra: str = "", child_extra: str = ""):
        parent = PARENT.format(tmp=tmp_path, model=tiny_model_dir)
        if parent_extra.startswith("rewards:"):  # the parent's own list, replaced
            parent = parent.replace("rewards:\n  - name: intent\n", "")
        (tmp_path / "parent.yaml").write_text(parent + parent_extra)
        (tmp_path / "child.yaml").write_text("extends: parent.yaml\nseed: 3\n" + child_extra)
        return tmp_path

    return write


def _error(capsys, argv):
    code = run(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


@pytest.mark.parametrize(("override", "line", "message"), CASES, ids=[c[0] for c in CASES])
def test_a_command_line_override_is_named_as_such(files, capsys, override, line, message):
    tmp = files()
    assert _error(capsys, ["validate", str(tmp / "child.yaml"), override]) == f"error: command line: {message}"


@pytest.mark.parametrize(("override", "line", "message"), CASES, ids=[c[0] for c in CASES])
def test_the_file_that_set_it_is_named(files, capsys, override, line, message):
    tmp = files(child_extra=line + "\n")
    assert _error(capsys, ["validate", str(tmp / "child.yaml")]) == f"error: {tmp / 'child.yaml'}: {message}"
    tmp = files(parent_extra=line + "\n")
    assert _error(capsys, ["validate", str(tmp / "child.yaml")]) == f"error: {tmp / 'parent.yaml'}: {message}"


@pytest.mark.parametrize(("text", "what"), [("", "empty"), ("\n\n", "empty"), ("# my recipe\n# todo\n", "only comments")])
def test_an_empty_recipe_file_says_so(tmp_path, capsys, text, what):
    (tmp_path / "empty.yaml").write_text(text)
    assert _error(capsys, ["validate", str(tmp_path / "empty.yaml")]) == (
        f"error: {tmp_path / 'empty.yaml'}: the recipe file is {what}; a recipe sets at least algorithm, model, data "
        "and rewards (start from one in recipes/, or write extends: <recipe> and the keys you change)")
