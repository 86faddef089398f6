"""Issue 33's tracebacks that validate accepted: each command line (as a user types it, through `rlft.cli.run`) and
the one line it must answer with now: exit 2, no traceback, found before any model loads. `{tmp}`: the test's
folder (holding `a_file`, an `empty/` folder and a JSONL-less `nolabel/` dataset), `{model}`: the tiny model."""

from __future__ import annotations

import pytest

from rlft.cli import run
from tests.conftest import tiny_grpo_recipe

LINEAR = "down_proj, gate_proj, k_proj, lm_head, o_proj, q_proj, up_proj, v_proj"
BRACES = "fields are {column}, a literal brace is written {{ or }}"
EVAL = ["eval", "{recipe}", "--model", "base", "--out"]

# (why, command after `rlft`, the line on stderr after "error: ")
CASES = [
    ("a LoRA target the model does not have (PEFT ValueError after loading)",
     ["validate", "{recipe}", "adapter.target_modules=[no_such_proj]"],
     "command line: adapter.target_modules: no_such_proj is not a layer of {model}; its linear layers are "
     f"{LINEAR} (or use 'all-linear')"),
    ("an empty list of LoRA targets", ["validate", "{recipe}", "adapter.target_modules=[]"],
     "command line: adapter.target_modules: expected 'all-linear' or a list of module names, got []"),
    ("init_from an empty folder (PEFT ValueError: no adapter_config.json)",
     ["validate", "{recipe}", "adapter.init_from={tmp}/empty"],
     "command line: adapter.init_from: '{tmp}/empty' is not a PEFT adapter folder (no adapter_config.json); give "
     "the folder of a finished run or a checkpoint"),
    ("init_from a folder that does not exist", ["validate", "{recipe}", "adapter.init_from={tmp}/nowhere"],
     "command line: adapter.init_from: '{tmp}/nowhere' does not exist"),
    ("an unclosed brace in the prompt template (ValueError in datasets.map)",
     ["validate", "{recipe}", "data.prompt_template={utterance"],
     "command line: data.prompt_template: '{utterance': not a valid template (expected '}' before end of string); "
     + BRACES),
    ("a positional field in the prompt template (IndexError)", ["validate", "{recipe}", "data.prompt_template='Q: {0}'"],
     "command line: data.prompt_template: 'Q: {0}': field {0} is not a column name; " + BRACES),
    ("a numeric format spec on a text column", ["validate", "{recipe}", "data.prompt_template='{utterance:d}'"],
     "command line: data.prompt_template: '{utterance:d}': cannot be filled with text columns (ValueError: Unknown "
     "format code 'd' for object of type 'str')"),
    ("the GGUF cache is a file", ["validate", "{recipe}", "model.cache_dir={tmp}/a_file"],
     "command line: model.cache_dir: '{tmp}/a_file' is a file; expected a directory"),
    ("the GGUF cache under a file", ["validate", "{recipe}", "model.cache_dir={tmp}/a_file/models"],
     "command line: model.cache_dir: '{tmp}/a_file/models' cannot be created: '{tmp}/a_file' is a file"),
    ("a judge cache that is a folder (sqlite3.OperationalError at the first call)",
     ["validate", "{recipe}", "rewards=[{name: judge, params: {model: m, cache: '{tmp}/empty'}}]"],
     "command line: rewards[0].params: cache must be the path of an SQLite file, got the folder '{tmp}/empty' (e.g. "
     "'{tmp}/empty/judge_cache.sqlite')"),
    ("a judge cache under a file",
     ["validate", "{recipe}", "rewards=[{name: judge, params: {model: m, cache: '{tmp}/a_file/c.sqlite'}}]"],
     "command line: rewards[0].params: cache '{tmp}/a_file/c.sqlite' cannot be created: '{tmp}/a_file' is a file"),
    ("output_dir under a file (NotADirectoryError)", ["validate", "{recipe}", "output_dir={tmp}/a_file/run"],
     "command line: output_dir: '{tmp}/a_file/run' cannot be created: '{tmp}/a_file' is a file"),
    ("output_dir in an unwritable place (even for root)", ["validate", "{recipe}", "output_dir=/proc/self/rlft_run"],
     "command line: output_dir: '/proc/self/rlft_run' cannot be created: '/proc/self' is not writable"),
    ("eval --out under a file (NotADirectoryError)", [*EVAL, "{tmp}/a_file/eval"],
     "--out '{tmp}/a_file/eval' cannot be created: '{tmp}/a_file' is a file"),
    ("eval --out in an unwritable place", [*EVAL, "/proc/self/rlft_eval"],
     "--out '/proc/self/rlft_eval' cannot be created: '/proc/self' is not writable"),
    ("a label constraint without a label column at train (ValueError in build_trie; check said it cleanly)",
     ["train", "{recipe}", "data.source={tmp}/nolabel", "decoding.constrain_labels=true", "rewards=[{name: length}]"],
     "command line: decoding.constrain_labels needs the label set: {tmp}/nolabel has no label column 'intent' "
     "(columns: utterance) and data.labels is not set"),
]


@pytest.fixture
def setup(tmp_path, tiny_model_dir):
    import datasets

    (tmp_path / "a_file").write_text("not a directory")
    (tmp_path / "empty").mkdir()
    datasets.Dataset.from_list([{"utterance": u} for u in ("hello there", "where is my order", "cancel it",
                                                          "refund now", "bye then", "hi")]).save_to_disk(
        str(tmp_path / "nolabel"))
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(tiny_grpo_recipe(tmp_path, tiny_model_dir))
    return tmp_path, recipe, tiny_model_dir


@pytest.mark.parametrize(("why", "command", "message"), CASES, ids=[c[0] for c in CASES])
def test_a_former_traceback_is_one_line_exit_2(setup, capsys, monkeypatch, why, command, message):
    tmp, recipe, model = setup
    import rlft.run.models

    def no_model(*args, **kwargs):
        raise AssertionError("a model was loaded before the error")

    monkeypatch.setattr(rlft.run.models, "load_model", no_model)
    monkeypatch.setattr("rlft.run.pipeline.load_model", no_model)
    fill = {"tmp": str(tmp), "recipe": str(recipe), "model": str(model)}
    argv = [a.replace("{tmp}", fill["tmp"]).replace("{recipe}", fill["recipe"]) for a in command]
    code = run(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert "Traceback" not in err, err
    expected = message.replace("{tmp}", fill["tmp"]).replace("{model}", fill["model"])
    assert err.splitlines()[-1] == "error: " + expected


def test_a_lora_target_missing_from_a_loaded_model_is_one_line(tiny_model_dir):
    """Models validate cannot inspect (hub ids, GGUF files) are checked when loaded: PEFT's ValueError is named."""
    from rlft.recipe.sections import AdapterConfig, ModelConfig
    from rlft.errors import RecipeError
    from rlft.run.models import load_model

    with pytest.raises(RecipeError) as info:
        load_model(ModelConfig(name=str(tiny_model_dir)), AdapterConfig(target_modules=["no_such_proj"]), "cpu")
    assert str(info.value) == (f"adapter.target_modules: ['no_such_proj'] matches no layer of {tiny_model_dir}; its "
                               f"linear layers are {LINEAR} (or use 'all-linear')")


def test_valid_templates_targets_and_folders_still_pass(setup, capsys):
    tmp, recipe, _ = setup
    assert run(["validate", str(recipe), "data.prompt_template=Customer: {utterance} {{literal}}",
                "adapter.target_modules=[q_proj, v_proj]", f"model.cache_dir={tmp}/cache/models",
                f"output_dir={tmp}/new/run",
                f"rewards=[{{name: judge, params: {{model: m, cache: '{tmp}/new/c.sqlite', "
                "base_url: 'http://127.0.0.1:8000/v1'}}]"]) == 0, capsys.readouterr().err
    assert not (tmp / "new").exists() and not (tmp / "cache").exists()  # validate creates nothing
