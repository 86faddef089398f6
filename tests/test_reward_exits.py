"""Issue 33: a reward that raises `SystemExit` (sys.exit()/exit() at import, in `__init__` or when called) used to end
validate, check and train silently with its exit code (0 included). Now it is one line naming the reward and what
it did: exit 2 (check: the broken-reward line and exit 1, its contract for a reward that fails when called)."""

from __future__ import annotations

import asyncio

import pytest

from rlft.cli import run
from rlft.errors import RewardError
from rlft.scoring.loader import RewardSpec, load_reward
from tests.conftest import tiny_grpo_recipe

FILES = {
    "at_import_0.py": "import sys\nsys.exit(0)\n\ndef r(prompts, completions, **kw):\n    return [1.0] * len(completions)\n",
    "at_import_msg.py": "exit('not a module')\n\ndef r(prompts, completions, **kw):\n    return [1.0] * len(completions)\n",
    "in_init.py": "import sys\n\nclass R:\n    def __init__(self):\n        sys.exit(5)\n\n"
                  "    def __call__(self, prompts, completions, **kw):\n        return [1.0] * len(completions)\n",
    "when_called.py": "import sys\n\ndef r(prompts, completions, **kw):\n    sys.exit(3)\n",
}
HINT = "(a reward module must not exit when imported: put script code under `if __name__ == '__main__':`)"
CALLED = ("reward 'r' called sys.exit(3) on a batch of 4 completions (a reward returns one value or None per "
          "completion, or raises; it must not exit the process)")


@pytest.fixture
def setup(tmp_path, tiny_model_dir):
    for name, text in FILES.items():
        (tmp_path / name).write_text(text)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(tiny_grpo_recipe(tmp_path, tiny_model_dir, completion=4))
    return tmp_path, recipe


def _run(argv, capsys):
    try:
        code = run(argv)
    except SystemExit as exc:  # what the reward used to do to rlft
        pytest.fail(f"rlft exited with the reward's SystemExit({exc.code!r})")
    return code, capsys.readouterr()


@pytest.mark.parametrize("command", ["validate", "check", "train"])
@pytest.mark.parametrize(("file", "did"), [("at_import_0.py", "called sys.exit(0)"),
                                           ("at_import_msg.py", "called sys.exit('not a module')")])
def test_a_reward_file_that_exits_at_import_is_one_line(setup, capsys, command, file, did):
    tmp, recipe = setup
    code, out = _run([command, str(recipe), f"rewards=[{{name: '{tmp}/{file}:r'}}]"], capsys)
    assert code == 2, out.err
    assert "Traceback" not in out.err
    assert out.err.strip().splitlines()[-1].endswith(f"rewards[0]: importing '{tmp}/{file}' {did} {HINT}"), out.err
    assert not (tmp / "out").exists()


@pytest.mark.parametrize("command", ["check", "train"])
def test_a_reward_class_that_exits_when_created_is_one_line(setup, capsys, command):
    tmp, recipe = setup
    code, out = _run([command, str(recipe), f"rewards=[{{name: '{tmp}/in_init.py:R'}}]"], capsys)
    assert code == 2, out.err
    assert out.err.strip().splitlines()[-1].endswith(
        f"rewards[0]: reward '{tmp}/in_init.py:R' called sys.exit(5) when created (a reward returns values or raises; "
        "it must not exit the process)"), out.err


def test_train_with_a_reward_that_exits_when_called_stops_with_one_line(setup, capsys):
    tmp, recipe = setup
    code, out = _run(["train", str(recipe), f"rewards=[{{name: '{tmp}/when_called.py:r'}}]"], capsys)
    assert code == 2, out.err
    assert "Traceback" not in out.err
    assert out.err.strip().splitlines()[-1] == f"error: {CALLED}"


def test_check_reports_a_reward_that_exits_when_called_as_broken(setup, capsys):
    tmp, recipe = setup
    code, out = _run(["check", str(recipe), f"rewards=[{{name: '{tmp}/when_called.py:r'}}]"], capsys)
    assert code == 1, out.err
    assert f"[rlft check] reward 'r': BROKEN: RewardError: {CALLED}" in out.out.splitlines()
    assert "[rlft check] result: broken reward(s): r (exit 1)" in out.out.splitlines()


def test_an_async_reward_or_a_row_search_that_exits_is_named(tmp_path):
    (tmp_path / "a.py").write_text("import sys\n\nasync def r(prompts, completions, **kw):\n    sys.exit(None)\n")
    (tmp_path / "b.py").write_text("import sys\n\ndef r(prompts, completions, **kw):\n"
                                   "    if len(completions) > 1:\n        raise ValueError('batch')\n    sys.exit(1)\n")
    reward = load_reward(RewardSpec(name=f"{tmp_path}/a.py:r"))
    with pytest.raises(RewardError, match=r"^reward 'r' called sys.exit\(\) on a batch of 2 completions"):
        asyncio.run(reward.func(prompts=["p", "q"], completions=["a", "b"]))
    reward = load_reward(RewardSpec(name=f"{tmp_path}/b.py:r"))
    with pytest.raises(RewardError, match=r"^reward 'r' raised ValueError on row 1 of a batch of 2 \(completion 'a'\)"):
        reward.func(prompts=["p", "q"], completions=["a", "b"])


def test_a_module_path_that_exits_at_import_is_named(tmp_path, monkeypatch):
    (tmp_path / "exits_at_import.py").write_text("raise SystemExit(4)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(RewardError) as info:
        load_reward(RewardSpec(name="exits_at_import:r"), "rewards[1]")
    assert str(info.value) == f"rewards[1]: importing 'exits_at_import' called sys.exit(4) {HINT}"
