"""Bad input, table-driven: each row is what an adversarial user gives rlft (recipe text, overrides, a data file)
and the exact one line `rlft train` must answer with: exit code 2, no traceback, and an earlier run in output_dir
left untouched. Rows say why they are here. `{file}`: the recipe, `{cli}`: command line, `{data}`: the data file,
`{tmp}`: the test's folder."""

from __future__ import annotations

import pytest

from rlft.cli import run

BASE = """algorithm: grpo
output_dir: {out}
model: {{name: {model}}}
data: {{source: demo:intents, demo_size: 40}}
rewards:
  - name: intent
trainer: {{max_steps: 1, per_device_train_batch_size: 4, num_generations: 4, max_completion_length: 8}}
evaluation: {{before: false, after: false}}
"""
BASE_LINES = BASE.count("\n")
BOMB = "trainer:\n  model_init_kwargs:\n    a: &a [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]\n" + "".join(
    f"    {c}: &{c} [{', '.join([f'*{p}'] * 10)}]\n" for p, c in zip("abcdefgh", "bcdefghi"))
BAD_REGEX = "(<intent"

# (why, extra recipe text, overrides, data file (name, bytes) or None, expected stderr line)
CASES = [
    ("negative learning rate trains backwards", "", ["trainer.learning_rate=-1"], None,
     "{cli}: trainer.learning_rate: expected a number >= 0.0, got -1"),
    ("NaN learning rate poisons every weight", "", ["trainer.learning_rate=.nan"], None,
     "{cli}: trainer.learning_rate: expected a number >= 0.0, got nan"),
    ("batch size 0 divides by zero in TRL", "", ["trainer.per_device_train_batch_size=0"], None,
     "{cli}: trainer.per_device_train_batch_size: expected a number >= 1, got 0"),
    ("negative temperature", "", ["trainer.temperature=-2"], None,
     "{cli}: trainer.temperature: expected a number > 0.0, got -2"),
    ("max_steps 0 was silently a no-op run", "", ["trainer.max_steps=0"], None,
     "{cli}: trainer.max_steps: expected -1 (use num_train_epochs) or 1..1000000000, got 0"),
    ("max_steps absurdly large (as an int)", "", ["trainer.max_steps=100000000000000000000000"], None,
     "{cli}: trainer.max_steps: expected -1 (use num_train_epochs) or 1..1000000000, got "
     "100000000000000000000000"),
    ("max_steps 1e23 is a float", "", ["trainer.max_steps=1e23"], None,
     "{cli}: trainer.max_steps: expected int, got 1e+23"),
    ("max_train_samples 0 trained on nothing", "", ["data.max_train_samples=0"], None,
     "{cli}: data.max_train_samples: expected >= 1 or null, got 0"),
    ("output_dir is an existing file", "", ["output_dir={tmp}/a_file"], None,
     "{cli}: output_dir: '{tmp}/a_file' is a file; expected a directory (new or empty, or a run to resume)"),
    ("duplicate keys: the second silently won", "seed: 1\nseed: 2\n", [], None,
     f"{{file}}: line {BASE_LINES + 2} is not valid YAML: duplicate key 'seed' (first at line {BASE_LINES + 1})"),
    ("alias bomb (1e9 values from 1 KB) hung the run", BOMB.replace("trainer:\n", "export:\n"), [], None,
     "{file}: YAML aliases expand to more than 100000 values (an alias bomb?); write the values out"),
    ("recursive alias", "signal: &s {x: *s}\n", [], None,
     f"{{file}}: line {BASE_LINES + 1} is not valid YAML: a recursive alias (a value that contains itself)"),
    ("a label holding the closing tag breaks the reply format", "", ["data.labels=[refund</intent>, cancel]"], None,
     "{cli}: data.labels: label 'refund</intent>' contains '</intent>': the label suffix"),
    ("a label holding {labels} breaks the system prompt", "", ["data.source={data}"],
     ("braces.csv", b"utterance,intent\nhi,greet\nmoney back,{labels}\nbye,leave\n"),
     "{data}: row 2: label '{{labels}}' contains '{{': a brace, which system prompts use for {{labels}}"),
    ("an invalid intent regex failed only at the first step", "", [f"rewards.0.params={{pattern: '{BAD_REGEX}'}}"],
     None, "{cli}: rewards[0].params.pattern: invalid regular expression '(<intent': missing ) at position 8"),
    ("a reward function without prompts/completions", "", ["rewards=[{name: '{tmp}/noargs.py:score'}]"], None,
     "{cli}: rewards[0]: reward '{tmp}/noargs.py:score' has no parameter prompts or completions; a reward is called "
     "as f(prompts, completions, **columns) (add them, and **kwargs)"),
    ("CSV without the label column gave an eval_fraction message", "", ["data.source={data}"],
     ("nolabel.csv", b"utterance\nhello\nbye\n"),
     "{data}: missing column(s) intent needed by grpo (data.prompt_template / data.label_column); columns are "
     "utterance (map yours with data.columns)"),
    ("broken quotes gave DatasetGenerationError", "", ["data.source={data}"],
     ("quotes.csv", b'utterance,intent\nhello,greet\n"where is it,track_order\nbye,leave\n'),
     "{data}: line 3: broken CSV quoting (unexpected end of data); quote fields that hold commas, quotes or line "
     "breaks, and double quotes inside them"),
    ("an unquoted comma shifts columns", "", ["data.source={data}"],
     ("comma.csv", b"utterance,intent\nhello, there,greet\nbye,leave\n"),
     "{data}: row 1 has 3 fields, the header has 2 (an unquoted comma or a broken quote?)"),
    ("non-UTF-8 text gave DatasetGenerationError", "", ["data.source={data}"],
     ("latin1.csv", "utterance,intent\nhello,greet\nmy caf\u00e9 order,track_order\n".encode("latin-1")),
     "{data}: line 3: not UTF-8 text (byte 35: b'\\xe9'); save the file as UTF-8"),
    ("a truncated JSONL line gave DatasetGenerationError", "", ["data.source={data}"],
     ("cut.jsonl", b'{"utterance": "hi", "intent": "greet"}\n{"utterance": "where is my ord'),
     "{data}: line 2: not valid JSON (Unterminated string starting at, column 15); one JSON object per line"),
    ("one huge line: no row to hold out", "", ["data.source={data}"],
     ("one.csv", b"utterance,intent\n" + b"x" * 200_000 + b",greet\n"),
     "{data}: 1 row(s); holding out data.eval_fraction needs 2+ rows (or set data.eval_source)"),
    ("a resume path that is not a checkpoint", "", ["trainer.resume_from_checkpoint={tmp}/nowhere"], None,
     "{cli}: trainer.resume_from_checkpoint: '{tmp}/nowhere' is not a checkpoint directory (or 'last')"),
]


@pytest.fixture
def setup(tmp_path, tiny_model_dir):
    """A recipe whose output_dir holds an earlier run, plus the files some rows point at."""
    out = tmp_path / "out"
    out.mkdir()
    earlier = {"recipe.yaml": "algorithm: dpo  # the earlier run\n", "metrics.json": '{"earlier": true}',
               "adapter_model.safetensors": "weights of the earlier run"}
    for name, text in earlier.items():
        (out / name).write_text(text)
    (tmp_path / "a_file").write_text("not a directory")
    (tmp_path / "noargs.py").write_text("def score(texts):\n    return [1.0 for _ in texts]\n")
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(BASE.format(out=out, model=tiny_model_dir))
    return tmp_path, recipe, out, earlier


@pytest.mark.parametrize(("why", "extra", "overrides", "data", "message"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2_and_overwrites_nothing(setup, capsys, why, extra, overrides, data, message):
    tmp, recipe, out, earlier = setup
    data_path = ""
    if data:
        data_path = tmp / data[0]
        data_path.write_bytes(data[1])
    if extra:
        recipe.write_text(recipe.read_text() + extra)
    fill = {"tmp": tmp, "data": data_path}
    code = run(["train", str(recipe), *[o.replace("{tmp}", str(tmp)).replace("{data}", str(data_path))
                                        for o in overrides]])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert "Traceback" not in err and "\n" not in err, err
    assert err == "error: " + message.format(file=recipe, cli="command line", **fill)
    assert {p.name: p.read_text() for p in out.iterdir()} == earlier  # nothing overwritten, nothing added


def test_an_earlier_run_is_refused_and_overwrite_replaces_it(setup, capsys):
    tmp, recipe, out, earlier = setup
    assert run(["train", str(recipe)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: {recipe}: output_dir: '{out}' already holds files (adapter_model.safetensors, metrics.json, "
        f"recipe.yaml); set trainer.resume_from_checkpoint=last to continue that run, overwrite=true to replace "
        f"it, or choose another output_dir")
    assert {p.name: p.read_text() for p in out.iterdir()} == earlier
    (out / "recipe.yaml").unlink()  # not an rlft run any more: overwrite refuses to delete what rlft did not write
    assert run(["train", str(recipe), "overwrite=true"]) == 2
    assert "is not an rlft run (no recipe.yaml)" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["adapter_model.safetensors", "metrics.json"]


def test_save_strategy_no_read_by_yaml_as_false_is_mapped_back(setup):
    from rlft.recipe.load import load_recipe

    _, recipe, _, _ = setup
    recipe.write_text(recipe.read_text().replace("max_steps: 1,", "max_steps: 1, save_strategy: no,"))
    assert load_recipe(recipe, check=False).trainer["save_strategy"] == "no"
    assert load_recipe(recipe, ["trainer.save_strategy=no"], check=False).trainer["save_strategy"] == "no"


def test_a_reward_that_raises_is_named_with_its_row(tmp_path):
    from rlft.errors import RewardError
    from rlft.scoring.loader import RewardSpec, load_reward

    (tmp_path / "fragile.py").write_text(
        "def score(prompts, completions, **kw):\n    return [1.0 / len(c) for c in completions]\n")
    reward = load_reward(RewardSpec(name=f"{tmp_path}/fragile.py:score"))
    with pytest.raises(RewardError) as info:
        reward.func(prompts=["a", "b", "c"], completions=["ok", "", "fine"])
    assert str(info.value) == ("reward 'score' raised ZeroDivisionError on row 2 of a batch of 3 (completion ''): "
                               "float division by zero")


def test_a_tiny_held_out_split_warns(tmp_path, capsys):
    from rlft.recipe.sections import DataConfig
    from rlft.data.loading import prepare

    prepare(DataConfig(demo_size=20), "grpo", 0)
    assert ("[rlft] warning: the held-out split has only 2 row(s); before/after numbers on it are noise (raise "
            "data.eval_fraction or give data.eval_source)") in capsys.readouterr().out


def test_over_long_prompts_are_dropped_and_counted(tiny_model_dir, capsys):
    import datasets
    from transformers import AutoTokenizer

    from rlft.data.loading import drop_long_prompts

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    rows = [[{"role": "user", "content": "short"}], [{"role": "user", "content": "word " * 300}],
            [{"role": "user", "content": "x" * 2_000_000}]]  # 2 MB: dropped without being tokenized
    dropped: dict[str, int] = {}
    kept = drop_long_prompts(datasets.Dataset.from_list([{"prompt": p} for p in rows]), tok, 64, "my.csv", dropped)
    assert kept["prompt"] == rows[:1] and dropped == {"too_long": 2}
    assert "[rlft] my.csv: dropped 2 row(s) longer than data.max_prompt_tokens=64 tokens" in capsys.readouterr().out


def test_overwrite_replaces_an_earlier_rlft_run_and_a_failed_start_is_reused(tmp_path):
    from rlft.recipe.sections import Recipe
    from rlft.run.outputs import claim_output_dir

    out = tmp_path / "run"
    (out / "checkpoint-2").mkdir(parents=True)
    for name in ("recipe.yaml", "metrics.json", "adapter_model.safetensors"):
        (out / name).write_text("earlier")
    assert claim_output_dir(Recipe(output_dir=str(out), overwrite=True)) == out and list(out.iterdir()) == []
    (out / "recipe.yaml").write_text("a run that failed before training")
    claim_output_dir(Recipe(output_dir=str(out)))  # only a provisional recipe.yaml: reused without overwrite
    resumed = Recipe(output_dir=str(out), trainer={"resume_from_checkpoint": "last"})
    (out / "metrics.json").write_text("earlier")
    (out / "checkpoint-1").mkdir()  # a finished run resumes from a complete checkpoint (tests/test_run_folder.py)
    (out / "checkpoint-1" / ".rlft-complete").write_text("1")
    claim_output_dir(resumed)  # resuming keeps everything
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint-1", "metrics.json", "recipe.yaml"]


def test_a_length_limit_that_drops_every_preference_row_is_one_line(tmp_path, tiny_model_dir, capsys):
    # TRL's DPO drops rows that do not fit max_length while tokenizing; with none left torch raised
    # `num_samples should be a positive integer value, but got num_samples=0`
    recipe = tmp_path / "dpo.yaml"
    recipe.write_text(f"algorithm: dpo\noutput_dir: {tmp_path / 'out'}\nmodel: {{name: {tiny_model_dir}}}\n"
                      "adapter: {type: lora, r: 4, alpha: 8}\ndata: {source: demo:intent_pairs, demo_size: 40}\n"
                      "trainer: {max_steps: 1, per_device_train_batch_size: 4, max_length: 4}\n"
                      "evaluation: {before: false, after: false}\n")
    assert run(["train", str(recipe)]) == 2
    err = capsys.readouterr().err.strip().splitlines()  # above it: TRL's tokenizing progress bars
    assert "Traceback" not in "\n".join(err)
    assert err[-1] == (f"error: {recipe}: trainer.max_length: dpo kept 0 of the 36 training rows of demo:intent_pairs "
                   "after tokenizing (trainer.max_length=4 leaves no room: raise it or shorten the prompts)")
