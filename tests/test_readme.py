"""The README's tour runs as written: its custom reward on both completion shapes, its `rlft validate` line and
error, and its Python API (on the tiny model, one step); then the model card the run wrote loads and decodes the
adapter with nothing but its own snippet. Secrets in a recipe never reach recipe.yaml or the card."""

from __future__ import annotations

import re

from rlft.cli import run
from tests.conftest import ROOT

README = (ROOT / "README.md").read_text()


def _blocks(lang: str, text: str = README) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", text, flags=re.S)


def _block_with(lang: str, needle: str, text: str = README) -> str:
    return next(b for b in _blocks(lang, text) if needle in b)


def test_readme_custom_reward_reads_strings_and_chat_messages():
    namespace: dict = {}
    exec(_block_with("python", "def brevity"), namespace)  # noqa: S102 - the README's own code
    brevity = namespace["brevity"]
    long = "word " * 41
    assert brevity(["p", "p"], ["short reply", long]) == [1.0, 0.0]  # evaluation / labelling: strings
    chats = [[{"role": "assistant", "content": "short reply"}], [{"role": "assistant", "content": long}]]
    assert brevity(["p", "p"], chats) == [1.0, 0.0]  # GRPO training: chat messages


def test_readme_validate_line_prints_the_error_it_shows(capsys, monkeypatch):
    block = _block_with("bash", "rlft validate")
    command = next(line for line in block.splitlines() if "rlft validate" in line)
    shown = next(line for line in block.splitlines() if line.startswith("# error:"))[2:].removesuffix("...")
    assert command.startswith(".venv/bin/rlft validate ")
    monkeypatch.chdir(ROOT)
    assert run(command.split()[1:]) == 2
    assert capsys.readouterr().err.startswith(shown.rstrip())


def test_readme_install_and_tour_use_the_venv_programs():
    for block in _blocks("bash"):
        for line in block.splitlines():
            for program in ("rlft", "accelerate", "pytest", "pip"):
                assert not re.match(rf"^{program}\b", line.strip()), line


def test_readme_python_api_trains_and_the_model_card_serves_the_adapter(tiny_model_dir, tmp_path, monkeypatch,
                                                                         capfd):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "my_rewards.py").write_text(_block_with("python", "def brevity"))
    overrides = [f"model.name={tiny_model_dir}", "trainer.max_steps=1", f"output_dir={tmp_path / 'run'}",
                 "data.demo_size=40", "evaluation.max_samples=4", "trainer.per_device_train_batch_size=8",
                 "trainer.num_generations=4", "trainer.max_completion_length=8", "signal.refill_rounds=0",
                 "signal.drop_zero_std=false"]
    code = _block_with("python", "import rlft\nrecipe = rlft.load_recipe")
    code = code.replace('"recipes/intent_grpo.yaml"', repr(str(ROOT / "recipes" / "intent_grpo.yaml")))
    code = code.replace('["trainer.max_steps=50", "output_dir=runs/intent_brevity"]', repr(overrides))
    assert repr(overrides) in code  # the README's overrides were replaced (a new folder, not command 1's run)
    namespace: dict = {}
    exec(code, namespace)  # noqa: S102 - the README's own code
    result = namespace["result"]
    assert set(result.metrics["eval_after"]) >= {"intent_accuracy", "reward/intent", "reward/brevity"}
    out = result.output_dir
    saved = (out / "recipe.yaml").read_text()
    assert "labels:\n  - " in saved and "labels: null" not in saved  # the resolved label list is kept

    card = (out / "README.md").read_text()
    assert "Prefill (every reply starts with it): `'<intent>'`" in card and "Label constraint: on" in card
    assert "/.cache/" not in card
    monkeypatch.chdir(out)
    capfd.readouterr()
    exec(_block_with("python", "from peft import PeftModel", card), {})  # noqa: S102 - the card's snippet
    reply = capfd.readouterr().out.strip().splitlines()[-1]
    labels = result.metrics["labels"]
    assert any(reply == f"<intent>{label}</intent>" for label in labels), reply  # constrained: one allowed label


def test_secrets_in_a_recipe_never_reach_recipe_yaml_or_the_card(tmp_path):
    from rlft.recipe.sections import Recipe
    from rlft.run.outputs import write_metrics, write_model_card, write_recipe
    from rlft.scoring.loader import RewardSpec

    url = "http://user:HUNTER2@judge.local:8000/v1?api_key=sk-SECRET"
    recipe = Recipe(output_dir=str(tmp_path), rewards=[RewardSpec(name="judge", params={"base_url": url})])
    write_recipe(recipe, tmp_path, ["refund"])
    write_metrics({"labels": ["refund"], "note": url}, tmp_path)
    write_model_card(recipe, "/root/.cache/rlft/models/x", {"labels": ["refund"]}, tmp_path)
    for name in ("recipe.yaml", "metrics.json", "README.md"):
        text = (tmp_path / name).read_text()
        assert "HUNTER2" not in text and "sk-SECRET" not in text, name
        assert "judge.local:8000" in text, name
    card = (tmp_path / "README.md").read_text()
    assert "base_model: HuggingFaceTB/SmolLM2-135M-Instruct" in card and "/root/.cache" not in card
    assert 'resolve_model_path(ModelConfig(name="smollm2-135m-instruct"))' in card
