"""One torch thread count for a CPU run whatever the entry point (issue 33: the Python API ran 2 threads where
`accelerate launch` ran 1, several times slower beside other jobs). The rule (rlft.run.threads): OMP_NUM_THREADS when
set, else 1; accelerate's own launcher code builds the children's environment here, as `accelerate launch` does."""

from __future__ import annotations

import pytest
import torch

from rlft.run.checkpoints import marker_text, recorded_threads
from rlft.run.threads import torch_threads
from tests.conftest import ROOT


def _accelerate_child_env(monkeypatch, shell: dict[str, str], config: str) -> dict[str, str]:
    """The environment `accelerate launch --config_file CONFIG script.py` (accelerate 1.15) gives each process."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils.launch import prepare_multi_gpu_env, prepare_simple_launcher_cmd_env

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    for key, value in shell.items():
        monkeypatch.setenv(key, value)
    args = launch_command_parser().parse_args(["--config_file", str(ROOT / config), "recipes/intent_grpo.py"])
    args, _, _ = _validate_launch_command(args)
    if config.endswith("one_process.yaml"):
        return prepare_simple_launcher_cmd_env(args)[1]
    return prepare_multi_gpu_env(args)  # cpu_2proc: torchrun workers


@pytest.mark.parametrize("config", ["recipes/accelerate/one_process.yaml", "recipes/accelerate/cpu_2proc.yaml"])
@pytest.mark.parametrize("shell", [{}, {"OMP_NUM_THREADS": "1"}, {"OMP_NUM_THREADS": "3"}])
def test_api_and_accelerate_launch_get_the_same_count(monkeypatch, shell, config):
    api = torch_threads(shell)  # `import rlft; rlft.train(...)` / `rlft train` in that shell
    launched = torch_threads(_accelerate_child_env(monkeypatch, shell, config))
    assert api == launched == int(shell.get("OMP_NUM_THREADS", 1))


@pytest.mark.parametrize("value, threads", [(None, 1), ("2", 2), (" 4 ", 4), ("0", 1), ("two", 1), ("", 1)])
def test_rule(value, threads):
    assert torch_threads({} if value is None else {"OMP_NUM_THREADS": value}) == threads


def test_train_sets_the_rule_not_torchs_default(monkeypatch):
    """torch defaults to every core when OMP_NUM_THREADS is unset (2 here): rlft.train uses the rule's 1."""
    import rlft.run.pipeline as pipeline
    from rlft.recipe.load import load_recipe

    class Claimed(Exception):
        pass

    def stop(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202 - the first thing after the thread count
        raise Claimed

    set_to = []
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    monkeypatch.setattr(torch, "set_num_threads", set_to.append)
    monkeypatch.setattr(pipeline, "held_output_dir", stop)
    with pytest.raises(Claimed):
        pipeline.train(load_recipe(ROOT / "recipes" / "intent_grpo.yaml", ["model.device=cpu"]))
    assert set_to == [1]


def test_a_checkpoint_records_the_count_and_resume_keeps_it(tmp_path, monkeypatch, capsys):
    from rlft.run.checkpoints import MARKER
    from rlft.run.pipeline import keep_threads

    (tmp_path / MARKER).write_text(marker_text(7, 3))
    assert recorded_threads(tmp_path) == 3
    set_to = []
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)
    monkeypatch.setattr(torch, "set_num_threads", set_to.append)
    keep_threads(str(tmp_path), "cpu")
    assert set_to == [3]
    assert "resuming with 3 torch thread(s)" in capsys.readouterr().out
    (tmp_path / MARKER).write_text("7")  # a marker from before the count was recorded: nothing changes
    set_to.clear()
    keep_threads(str(tmp_path), "cpu")
    assert set_to == []
