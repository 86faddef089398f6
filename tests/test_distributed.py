"""The shipped accelerate configs and `rlft.run.distributed`: what accelerate exports for each config, and the
combinations rlft refuses before loading a model (exact messages). vLLM: the recipe's `trainer.use_vllm` /
`vllm_mode` reach GRPOConfig, and the label constraint reaches `vllm_structured_outputs_regex` (vllm itself is not
installed here, so TRL's trainer constructor is replaced by a recorder)."""

from __future__ import annotations

from pathlib import Path

import pytest
import regex

from rlft.recipe.sections import AdapterConfig, DecodingConfig, Recipe, SignalConfig
from rlft.run.distributed import LaunchEnv, check_launch, launch_env
from rlft.errors import RecipeError

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "recipes" / "accelerate").glob("*.yaml"))
LABELS = ["get_refund", "track_order", "cancel_order"]


def accelerate_env(config: Path) -> tuple[dict[str, str], int]:
    """The environment `accelerate launch --config_file CONFIG` gives each worker (accelerate 1.15's own code)."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils.launch import prepare_deepspeed_cmd_env, prepare_multi_gpu_env, \
        prepare_simple_launcher_cmd_env

    args = launch_command_parser().parse_args(["--config_file", str(config), "train.py"])
    args, defaults, _ = _validate_launch_command(args)
    if args.use_deepspeed:  # what accelerate's launch_command does before the DeepSpeed launcher
        args.deepspeed_fields_from_accelerate_config = ",".join(defaults.deepspeed_config.keys())
        _, env = prepare_deepspeed_cmd_env(args)
    elif args.use_fsdp or args.multi_gpu:
        env = prepare_multi_gpu_env(args)
    else:
        _, env = prepare_simple_launcher_cmd_env(args)
    return env, args.num_processes


def test_all_seven_configs_are_shipped():
    assert [c.stem for c in CONFIGS] == ["cpu_2proc", "deepspeed_zero2", "deepspeed_zero3", "fsdp2", "multi_gpu",
                                         "one_process", "single_gpu"]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.stem)
def test_config_loads_in_accelerate(config):
    """accelerate's loader rejects unknown keys; each config also documents itself in a leading comment."""
    from accelerate.commands.config.config_args import load_config_from_file

    cluster = load_config_from_file(str(config))
    assert cluster.compute_environment.value == "LOCAL_MACHINE"
    assert cluster.num_machines == 1 and cluster.machine_rank == 0
    assert config.read_text().startswith("# ")


EXPECTED = {  # config -> (processes, engine rlft reads from the exported environment, zero stage, fsdp version)
    "cpu_2proc": (2, "none", None, None),  # WORLD_SIZE comes from torchrun at run time, not from the launcher env
    "single_gpu": (1, "none", None, None),
    "one_process": (1, "none", None, None),  # what every recipes/*.py docstring launches with (CPU or one GPU)
    "multi_gpu": (8, "none", None, None),
    "deepspeed_zero2": (8, "deepspeed", 2, None),
    "deepspeed_zero3": (8, "deepspeed", 3, None),
    "fsdp2": (8, "fsdp", None, 2),
}


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.stem)
def test_exported_environment_is_what_rlft_reads(config):
    env, processes = accelerate_env(config)
    launch = launch_env(env)
    assert (processes, launch.engine, launch.zero_stage, launch.fsdp_version) == EXPECTED[config.stem]
    if config.stem == "fsdp2":
        assert env["FSDP_ACTIVATION_CHECKPOINTING"] == "false" and env["FSDP_STATE_DICT_TYPE"] == "FULL_STATE_DICT"


def test_cpu_config_starts_two_workers_through_torchrun():
    """MULTI_CPU would start ONE process without mpirun; the config must reach torchrun with 2 processes."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser

    args = launch_command_parser().parse_args(["--config_file", str(CONFIGS[0]), "train.py"])
    args, _, _ = _validate_launch_command(args)
    assert args.multi_gpu and args.num_processes == 2 and not args.use_deepspeed and not args.use_fsdp


def recipe(**kw) -> Recipe:
    r = Recipe(algorithm=kw.pop("algorithm", "grpo"))
    r.source_file = "r.yaml"
    r.adapter = AdapterConfig(type=kw.pop("adapter", "lora"))
    r.signal = kw.pop("signal", SignalConfig())
    r.decoding = kw.pop("decoding", DecodingConfig())
    r.trainer = kw.pop("trainer", {})
    return r


ZERO3 = {"ACCELERATE_USE_DEEPSPEED": "true", "ACCELERATE_DEEPSPEED_ZERO_STAGE": "3", "WORLD_SIZE": "8"}
FSDP2 = {"ACCELERATE_USE_FSDP": "true", "FSDP_VERSION": "2", "WORLD_SIZE": "8"}
QLORA_MSG = ("r.yaml: adapter.type: qlora cannot run under {}: it shards parameters and bitsandbytes 4-bit weights "
             "are not shardable as rlft loads them; use adapter.type: lora, or QLoRA with DDP / DeepSpeed ZeRO-2 "
             "(recipes/accelerate/multi_gpu.yaml, deepspeed_zero2.yaml)")
GROUP_MSG = ("r.yaml: trainer.per_device_train_batch_size: on 2 processes each one's generation batch "
             "(per_device_train_batch_size 6 x steps_per_generation 1 = 6) must be a multiple of num_generations (4), "
             "so no prompt's group is split across processes (rlft's signal: features drop and refill whole groups)")

REFUSED = [  # (why, recipe, environment, exact message)
    ("QLoRA + ZeRO-3", recipe(adapter="qlora"), ZERO3,
     QLORA_MSG.format("DeepSpeed ZeRO-3 (ACCELERATE_DEEPSPEED_ZERO_STAGE)")),
    ("QLoRA + FSDP2", recipe(adapter="qlora"), FSDP2, QLORA_MSG.format("FSDP2 (ACCELERATE_USE_FSDP)")),
    ("QLoRA + FSDP1 (no FSDP_VERSION: accelerate's default 1)", recipe(adapter="qlora"),
     {"ACCELERATE_USE_FSDP": "true"}, QLORA_MSG.format("FSDP1 (ACCELERATE_USE_FSDP)")),
    ("QLoRA + trainer.fsdp in the recipe", recipe(adapter="qlora", trainer={"fsdp": "full_shard"}), {},
     QLORA_MSG.format("FSDP1 (trainer.fsdp)")),
    ("shared_prefix + FSDP activation checkpointing", recipe(signal=SignalConfig(shared_prefix=True)),
     {**FSDP2, "FSDP_ACTIVATION_CHECKPOINTING": "true"},
     "r.yaml: signal.shared_prefix cannot run with FSDP activation checkpointing (FSDP_ACTIVATION_CHECKPOINTING=true): "
     "recomputing layers in backward would extend the shared KV cache twice; set fsdp_activation_checkpointing: "
     "false in the accelerate config or signal.shared_prefix: false"),
    ("a signal GRPO group would straddle two processes",
     recipe(signal=SignalConfig(drop_zero_std=True), trainer={"per_device_train_batch_size": 6, "num_generations": 4}),
     {"WORLD_SIZE": "2"}, GROUP_MSG),
    ("use_vllm without vllm", recipe(trainer={"use_vllm": True}), {},
     "r.yaml: trainer.use_vllm: needs vllm installed (pip install vllm, on a CUDA machine), or set "
     "trainer.use_vllm: false"),
    ("unknown vllm_mode", recipe(trainer={"use_vllm": True, "vllm_mode": "remote"}), {},
     "r.yaml: trainer.vllm_mode: expected colocate or server, got 'remote'"),
]


@pytest.mark.parametrize("case", REFUSED, ids=[c[0] for c in REFUSED])
def test_refused_combinations(case):
    _, r, env, message = case
    with pytest.raises(RecipeError) as err:
        check_launch(r, env)
    assert str(err.value) == message


ALLOWED = [  # (why, recipe, environment, engine)
    ("QLoRA + ZeRO-2 (4-bit base replicated)", recipe(adapter="qlora"),
     {"ACCELERATE_USE_DEEPSPEED": "true", "ACCELERATE_DEEPSPEED_ZERO_STAGE": "2"}, "deepspeed"),
    ("QLoRA + DDP", recipe(adapter="qlora"), {"WORLD_SIZE": "4"}, "ddp"),
    ("LoRA + ZeRO-3", recipe(), ZERO3, "deepspeed"),
    ("LoRA + FSDP2, shared_prefix without activation checkpointing", recipe(signal=SignalConfig(shared_prefix=True)),
     {**FSDP2, "FSDP_ACTIVATION_CHECKPOINTING": "false"}, "fsdp"),
    ("whole groups per process: 8 x 1 with 4 generations", recipe(
        signal=SignalConfig(drop_zero_std=True), trainer={"per_device_train_batch_size": 8, "num_generations": 4}),
     {"WORLD_SIZE": "2"}, "ddp"),
    ("uneven local batch is fine for plain TRL GRPO (it gathers before normalising)",
     recipe(trainer={"per_device_train_batch_size": 6, "num_generations": 4}), {"WORLD_SIZE": "2"}, "ddp"),
    ("one process: TRL's own divisibility check applies", recipe(signal=SignalConfig(drop_zero_std=True)), {},
     "none"),
]


@pytest.mark.parametrize("case", ALLOWED, ids=[c[0] for c in ALLOWED])
def test_allowed_combinations(case):
    _, r, env, engine = case
    assert check_launch(r, env).engine == engine


def test_deepspeed_stage_from_config_file(tmp_path):
    ds = tmp_path / "ds.json"
    ds.write_text('{"zero_optimization": {"stage": 3}}')
    launch = launch_env({"ACCELERATE_USE_DEEPSPEED": "true", "ACCELERATE_DEEPSPEED_CONFIG_FILE": str(ds)})
    assert launch == LaunchEnv(1, "deepspeed", zero_stage=3, source="ACCELERATE_DEEPSPEED_CONFIG_FILE")
    assert launch_env({}, {"deepspeed": {"zero_optimization": {"stage": 3}}}).shards_parameters


def test_validate_refuses_before_loading(tmp_path, monkeypatch, write_recipe):
    """`rlft validate` (and so `rlft train`, before the model loads) runs the launch checks."""
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    monkeypatch.setenv("FSDP_VERSION", "2")
    from rlft.recipe.load import load_recipe

    path = write_recipe(f"algorithm: dpo\noutput_dir: {tmp_path / 'out'}\nadapter: {{type: qlora}}\n"
                        f"data: {{source: 'demo:intent_pairs'}}\n")
    with pytest.raises(RecipeError, match=r"adapter.type: qlora cannot run under FSDP2 \(ACCELERATE_USE_FSDP\)"):
        load_recipe(path)


def test_vllm_options_reach_grpo_config():
    from rlft.trainers.args import build_args

    r = recipe(trainer={"use_vllm": True, "vllm_mode": "server", "max_steps": 1, "num_generations": 2,
                        "per_device_train_batch_size": 2})
    r.output_dir = "/tmp/rlft-vllm-args"
    args = build_args(r, "cpu")
    assert (args.use_vllm, args.vllm_mode) == (True, "server")


def test_signal_trainer_passes_the_label_constraint_to_vllm(monkeypatch, smollm2_tokenizer_dir):
    """With use_vllm, SignalGRPOTrainer sets `vllm_structured_outputs_regex` from rlft.decoding.prompting (TRL constructor
    replaced: vllm is not installed here); the regex accepts exactly the labels + suffix."""
    import types

    from transformers import AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    from rlft.decoding.prompting import structured_output_regex
    from rlft.grpo import SignalGRPOTrainer

    seen = {}

    def recorder(self, *args, **kwargs):
        seen.update(kwargs)
        self.callback_handler = types.SimpleNamespace(callbacks=[])
        self.accelerator = types.SimpleNamespace(process_index=0, num_processes=1)

    monkeypatch.setattr(GRPOTrainer, "__init__", recorder)
    args = GRPOConfig("/tmp/rlft-vllm-trainer", use_vllm=True, vllm_mode="colocate", num_generations=2,
                      per_device_train_batch_size=2, use_cpu=True, report_to=[])
    decoding = DecodingConfig(prefill="<intent>", constrain_labels=True)
    tokenizer = AutoTokenizer.from_pretrained(smollm2_tokenizer_dir)
    SignalGRPOTrainer(model=None, reward_funcs=[], args=args, processing_class=tokenizer, decoding=decoding,
                      labels=LABELS)
    pattern = seen["args"].vllm_structured_outputs_regex
    assert pattern == structured_output_regex(LABELS, decoding)
    for label in LABELS:
        assert regex.fullmatch(pattern, f"{label}</intent>")
    for text in ("refund</intent>", "get_refund", "<intent>get_refund</intent>", "track_order</intent> and more"):
        assert not regex.fullmatch(pattern, text), text
    assert structured_output_regex(LABELS, DecodingConfig(prefill="<intent>")) is None  # no constraint: no regex


def test_only_rank_zero_writes_run_files(tmp_path, monkeypatch):
    """Under torchrun every process runs the pipeline: rank 1 must neither clear the folder nor write into it."""
    from rlft.run.distributed import is_main_process
    from rlft.run.outputs import claim_output_dir, write_metrics

    old = tmp_path / "run"
    old.mkdir()
    (old / "recipe.yaml").write_text("old run")
    (old / "metrics.json").write_text("{}")
    r = recipe()
    r.output_dir, r.overwrite = str(old), True
    monkeypatch.setenv("RANK", "1")
    assert not is_main_process()
    assert claim_output_dir(r) == old
    write_metrics({"global_step": 1}, old)
    assert sorted(p.name for p in old.iterdir()) == ["metrics.json", "recipe.yaml"]
    assert (old / "metrics.json").read_text() == "{}"
    monkeypatch.setenv("RANK", "0")
    claim_output_dir(r)  # rank 0 clears the old run (overwrite: true) and writes
    write_metrics({"global_step": 1}, old)
    assert sorted(p.name for p in old.iterdir()) == ["metrics.json"]
    assert is_main_process({}) and is_main_process({"RANK": "0"}) and not is_main_process({"RANK": "3"})
