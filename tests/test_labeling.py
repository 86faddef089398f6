"""`rlft label`: KTO/DPO sets whose labels match the reward exactly, exports rlft can read back, validation that
never drops silently, and sampling from a base model or base + adapter (tiny random Llama, real files)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rlft.cli import run
from rlft.recipe.sections import DataConfig
from rlft.data.loading import prepare
from rlft.errors import DataError, UserError
from rlft.data.labeling import LabelConfig, SamplingConfig, build_dpo, build_kto, label_dataset
from rlft.data.labeling.formats import to_tinker, to_ubiai, transcript
from rlft.data.labeling.label import score_prompt
from rlft.data.labeling.sources import PromptRow
from rlft.data.labeling.record import RecordLog
from rlft.data.labeling.row_checks import check_dpo_rows, check_kto_rows, validate_file
from rlft.recipe.load import load_recipe
from rlft.scoring.loader import RewardSpec, load_reward, load_rewards

LABELS = ["cancel_order", "get_refund", "track_order"]
REWARD_FILE = '''
def charsum(prompts, completions, **kwargs):
    """Deterministic and spread out: (sum of code points mod 7) / 6, in [0, 1]."""
    return [float(sum(map(ord, c)) % 7) / 6 for c in completions]
'''


def intent_record(key: str, truth: str, completions: list[str]) -> dict:
    rewards = load_rewards([RewardSpec(name="intent", params={"labels": LABELS})])
    row = PromptRow(key, [{"role": "system", "content": "Classify."}, {"role": "user", "content": f"msg {key}"}],
                    {"intent": truth})
    return score_prompt(rewards, row, completions)


def tag(label: str) -> str:
    return f"<intent>{label}</intent>"


# ---- labels from scores (plain lists, the real intent reward) -------------------------------------------------

def test_kto_and_dpo_labels_follow_the_intent_reward_exactly():
    records = [
        intent_record("0:a", "get_refund", [tag("get_refund"), tag("track_order"), "no tag", tag("bogus")]),
        intent_record("1:b", "track_order", [tag("track_order"), tag("track_order")]),  # tie at the top and bottom
        intent_record("2:c", "cancel_order", [tag("get_refund"), "", tag("cancel_order")]),
    ]
    assert records[0]["scores"]["intent"] == [1.0, 0.0, -1.0, -0.5]
    kto, report = build_kto(records, LabelConfig(threshold=0.5))
    assert [(r["completion"], r["label"]) for r in kto] == [
        (tag("get_refund"), True), (tag("track_order"), False), ("no tag", False), (tag("bogus"), False),
        (tag("track_order"), True), (tag("track_order"), True), (tag("get_refund"), False),
        (tag("cancel_order"), True)]
    assert report["desirable"] == 4 and report["undesirable"] == 4
    assert report["dropped"] == {"empty_completion": 1}
    assert all(r["meta"]["scores"]["intent"] == r["meta"]["label_score"] for r in kto)
    assert kto[0]["intent"] == "get_refund" and kto[0]["meta"]["key"] == "0:a"

    dpo, dpo_report = build_dpo(records, LabelConfig())
    assert [(r["chosen"], r["rejected"]) for r in dpo] == [(tag("get_refund"), "no tag"),
                                                           (tag("cancel_order"), tag("get_refund"))]
    assert dpo[0]["meta"]["margin"] == 2.0 and dpo[1]["meta"]["chosen_score"] == 1.0
    assert dpo_report["dropped"] == {"tie": 1, "samples_unscored_or_empty": 1}

    strict, strict_report = build_dpo(records, LabelConfig(min_margin=1.5))
    assert len(strict) == 1 and strict_report["dropped"]["below_margin"] == 1


def test_best_vs_rest_pairs_and_chosen_min_score():
    records = [
        intent_record("0:a", "get_refund", [tag("track_order"), tag("get_refund"), "no tag", tag("track_order")]),
        intent_record("1:b", "track_order", [tag("get_refund"), "no tag"]),  # best is wrong: no correct answer
    ]
    rest, report = build_dpo(records, LabelConfig(pairs="best_vs_rest", chosen_min_score=0.5))
    assert [(r["chosen"], r["rejected"]) for r in rest] == [(tag("get_refund"), tag("track_order")),
                                                            (tag("get_refund"), "no tag")]
    assert report["dropped"] == {"chosen_below_min_score": 1, "duplicate_rejected": 1}
    assert [r["meta"]["rejected_score"] for r in rest] == [0.0, -1.0]
    worst_only, _ = build_dpo(records, LabelConfig())
    assert len(worst_only) == 2
    with pytest.raises(UserError, match="pairs must be one of"):
        build_dpo(records, LabelConfig(pairs="all"))


def test_kto_contrast_keeps_only_prompts_with_both_labels():
    records = [
        intent_record("0:a", "get_refund", [tag("get_refund"), tag("track_order"), "no tag"]),   # contrast: kept
        intent_record("1:b", "track_order", [tag("get_refund"), tag("bogus")]),                  # all wrong
        intent_record("2:c", "cancel_order", [tag("cancel_order"), tag("cancel_order")]),        # all right
    ]
    kto, report = build_kto(records, LabelConfig(kto_prompts="contrast"))
    assert [(r["completion"], r["label"]) for r in kto] == [
        (tag("get_refund"), True), (tag("track_order"), False), ("no tag", False)]
    assert report["dropped"] == {"no_contrast": 4} and report["desirable"] == 1 and report["undesirable"] == 2
    assert len(build_kto(records, LabelConfig())[0]) == 7
    with pytest.raises(UserError, match="kto_prompts must be one of"):
        build_kto(records, LabelConfig(kto_prompts="some"))


def test_abstentions_and_label_reward():
    record = {"key": "0:x", "prompt": [{"role": "user", "content": "q"}], "columns": {},
              "completions": ["a", "b", "c"], "scores": {"judge": [1.0, None, 0.0], "length": [0.2, 0.9, 0.9]},
              "total": [1.2, 0.9, 0.9]}
    kto, report = build_kto([record], LabelConfig(threshold=0.5, label_reward="judge"))
    assert [(r["completion"], r["label"]) for r in kto] == [("a", True), ("c", False)]
    assert report["dropped"] == {"abstained": 1}
    assert report["suggested_desirable_weight"] == 1.0 and report["suggested_undesirable_weight"] == 1.0
    _, skewed = build_kto([record], LabelConfig(threshold=1.0))
    assert skewed["suggested_desirable_weight"] == 2.0 and skewed["suggested_undesirable_weight"] == 1.0
    by_total, _ = build_kto([record], LabelConfig(threshold=1.0))
    assert [r["label"] for r in by_total] == [True, False, False]
    with pytest.raises(UserError, match="nope"):
        build_kto([record], LabelConfig(label_reward="nope"))


def test_identical_best_and_worst_texts_are_dropped_and_counted():
    record = {"key": "0:x", "prompt": [{"role": "user", "content": "q"}], "columns": {},
              "completions": ["same", "same "], "scores": {"r": [1.0, 0.0]}, "total": [1.0, 0.0]}
    rows, report = build_dpo([record], LabelConfig())
    assert rows == [] and report["dropped"] == {"identical": 1}


# ---- exports ---------------------------------------------------------------------------------------------------

def test_exports_are_well_formed_and_read_back_by_rlft_data(tmp_path):
    records = [intent_record(f"{i}:k", truth, [tag(truth), tag("track_order" if truth != "track_order" else
                                                                  "get_refund"), "nothing"])
               for i, truth in enumerate(["get_refund", "cancel_order", "track_order", "get_refund"])]
    kto, _ = build_kto(records, LabelConfig())
    dpo, _ = build_dpo(records, LabelConfig())
    ubiai, tinker = to_ubiai(kto), to_tinker(dpo)
    assert set(ubiai[0]) >= {"system_prompt", "input", "output", "rating", "meta"}
    assert {r["rating"] for r in ubiai} == {"Accurate", "Inaccurate"}
    assert all((u["rating"] == "Accurate") == k["label"] for u, k in zip(ubiai, kto, strict=True))
    assert ubiai[0]["system_prompt"] == "Classify." and ubiai[0]["input"] == "msg 0:k"
    for t, d in zip(tinker, dpo, strict=True):
        assert set(t) >= {"prompt", "response_a", "response_b", "winner"} and t["winner"] in ("a", "b")
        assert t["response_" + t["winner"]] == d["chosen"]
        assert t["response_" + ("b" if t["winner"] == "a" else "a")] == d["rejected"]
    assert {t["winner"] for t in tinker} == {"a", "b"}  # no position bias
    files = {}
    for name, rows in (("kto", kto), ("ubiai", ubiai), ("dpo", dpo), ("tinker", tinker)):
        files[name] = tmp_path / f"{name}.jsonl"
        files[name].write_text("".join(json.dumps(r) + "\n" for r in rows))
    for name, algo in (("kto", "kto"), ("ubiai", "kto"), ("dpo", "dpo"), ("tinker", "dpo")):
        data = prepare(DataConfig(source=str(files[name]), system_prompt=None, eval_fraction=0.25), algo, seed=0)
        assert len(data.train) + len(data.eval) == len(kto if algo == "kto" else dpo)
    native = prepare(DataConfig(source=str(files["kto"]), system_prompt=None, eval_fraction=0.25), "kto", seed=0)
    assert native.train[0]["prompt"][0]["role"] == "system"  # the sampled prompt is kept as is


def test_transcript_of_multi_turn_prompt():
    messages = [{"role": "system", "content": "S"}, {"role": "assistant", "content": "Hi!"},
                {"role": "user", "content": "Order ORD-1 is late"}, {"role": "assistant", "content": "Checking"},
                {"role": "user", "content": "Well?"}]
    assert transcript(messages) == "Agent: Hi!\nCustomer: Order ORD-1 is late\nAgent: Checking\nCustomer: Well?"


# ---- validation ------------------------------------------------------------------------------------------------

def kto_row(label, completion="ok", prompt="p"):
    return {"prompt": [{"role": "user", "content": prompt}], "completion": completion, "label": label}


def test_kto_validation_errors_and_counted_drops(smollm2_tokenizer_dir):
    from transformers import AutoTokenizer

    with pytest.raises(DataError, match="row 2: label must be true or false"):
        check_kto_rows([kto_row(True), kto_row("true")])
    with pytest.raises(DataError, match="only desirable"):
        check_kto_rows([kto_row(True), kto_row(True)])
    with pytest.raises(DataError, match="per_device_train_batch_size must be > 1"):
        check_kto_rows([kto_row(True), kto_row(False)], per_device_batch=1)
    with pytest.raises(DataError, match="missing 'label'"):
        check_kto_rows([{"prompt": "p", "completion": "c"}])
    tok = AutoTokenizer.from_pretrained(smollm2_tokenizer_dir)
    rows = [kto_row(True), kto_row(False), kto_row(False, completion="  "), kto_row(True, prompt="word " * 300)]
    kept, report = check_kto_rows(rows, max_length=64, tokenizer=tok)
    assert len(kept) == 2
    assert report.dropped == {"empty_completion": 1, "prompt_over_max_length": 1}
    _, lenient = check_kto_rows([kto_row(False)], strict=False)
    assert lenient.problems and "only undesirable" in lenient.problems[0]


def test_dpo_validation_drops_are_counted(tmp_path, smollm2_tokenizer_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(smollm2_tokenizer_dir)
    rows = [{"prompt": "p", "chosen": "a", "rejected": "b"}, {"prompt": "p", "chosen": "a", "rejected": "a"},
            {"prompt": "p", "chosen": "", "rejected": "b"}, {"prompt": "long " * 300, "chosen": "a", "rejected": "b"}]
    kept, report = check_dpo_rows(rows, max_length=64, tokenizer=tok)
    assert kept == rows[:1]
    assert report.dropped == {"empty_completion": 1, "identical": 1, "prompt_over_max_length": 1}
    path = tmp_path / "dpo.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert validate_file(path, "dpo").dropped == {"empty_completion": 1, "identical": 1}
    path.write_text('{"prompt": "p"\n')
    with pytest.raises(DataError, match="line 1: not valid JSON"):
        validate_file(path, "dpo")


# ---- resume log ------------------------------------------------------------------------------------------------

def test_record_log_cuts_a_torn_line_and_refuses_other_settings(tmp_path):
    keys = ["0:a", "1:b", "2:c"]
    log = RecordLog(tmp_path, {"n": 2}, keys)
    log.append({"key": "0:a", "v": 1})
    with open(tmp_path / "records.jsonl", "a") as f:
        f.write('{"key": "1:b", "v"')  # killed mid-write
    again = RecordLog(tmp_path, {"n": 2}, keys)
    assert [r["key"] for r in again.records] == ["0:a"] and again.done == {"0:a"}
    assert (tmp_path / "records.jsonl").read_text() == '{"key":"0:a","v":1}\n'
    with pytest.raises(UserError, match="different settings \\(n\\)"):
        RecordLog(tmp_path, {"n": 3}, keys)
    with pytest.raises(UserError, match="data or its split changed"):
        RecordLog(tmp_path, {"n": 2}, ["0:z", "1:b"])
    assert RecordLog(tmp_path, {"n": 3}, keys, overwrite=True).records == []


# ---- end to end on a tiny model --------------------------------------------------------------------------------

@pytest.fixture
def label_recipe(tmp_path, tiny_model_dir):
    reward_file = tmp_path / "my_reward.py"
    reward_file.write_text(REWARD_FILE)
    path = tmp_path / "label.yaml"
    path.write_text(f"""
seed: 3
model: {{name: {tiny_model_dir}}}
data:
  source: demo:intents
  demo_size: 40
  system_prompt: "Classify the message. Allowed intents: {{labels}}."
rewards:
  - name: {reward_file}:charsum
  - name: intent
    weight: 0.5
""")
    return path


def recompute_total(recipe, row: dict) -> float:
    total = 0.0
    for spec in recipe.rewards:
        params = {"labels": LABELS_ALL} if spec.name == "intent" else {}
        reward = load_reward(RewardSpec(name=spec.name, weight=spec.weight, params=params))
        total += spec.weight * reward.func(prompts=[row["prompt"]], completions=[row["completion"]],
                                           intent=[row["intent"]])[0]
    return total


LABELS_ALL = ["cancel_order", "change_shipping_address", "check_invoice", "contact_human_agent", "delete_account",
              "delivery_options", "get_refund", "payment_issue", "recover_password", "track_order"]


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_label_dataset_on_tiny_model_matches_rewards_exactly(tmp_path, label_recipe):
    recipe = load_recipe(label_recipe, check=False)
    sampling = SamplingConfig(n=3, temperature=1.0, max_new_tokens=6, prompts_per_batch=2, seed=7, prefill="<intent>")
    result = label_dataset(recipe, tmp_path / "out", sampling, LabelConfig(threshold=0.0), split="train", limit=5,
                           max_length=512, progress=False)
    kto, dpo = read_jsonl(result.files["kto"]), read_jsonl(result.files["dpo"])
    records = read_jsonl(result.files["records"])
    assert len(records) == 5 and all(len(r["completions"]) == 3 for r in records)
    assert all(c.startswith("<intent>") for r in records for c in r["completions"])
    assert len(kto) + sum(result.summary["kto"]["dropped"].values()) == 15
    for row in kto:
        total = recompute_total(recipe, row)
        assert total == pytest.approx(row["meta"]["total"])
        assert row["label"] is (total >= 0.0)
        assert row["meta"]["sampling"]["seed"] == 7 and row["meta"]["model"] == recipe.model.name
    for row in dpo:
        rec = next(r for r in records if r["key"] == row["meta"]["key"])
        assert row["chosen"] == rec["completions"][rec["total"].index(max(rec["total"]))]
        assert row["rejected"] == rec["completions"][rec["total"].index(min(rec["total"]))]
        assert row["meta"]["margin"] > 0
    assert len(dpo) + sum(result.summary["dpo"]["dropped"].values()) >= 5
    assert len(read_jsonl(result.files["ubiai"])) == len(kto) and len(read_jsonl(result.files["tinker"])) == len(dpo)
    # the split is the training split of the recipe's data: no held-out prompt was labelled
    held_out = {r["utterance"] for r in prepare(recipe.data, "grpo", recipe.seed).eval}
    assert not held_out & {r["columns"]["utterance"] for r in records}


def test_label_decodes_as_the_recipe_does(tmp_path, label_recipe, tiny_model_dir):
    """The recipe's `decoding:` (here the label constraint with a free, capped reply) is how `rlft label` samples:
    every completion opens with an allowed label (a random tiny model never writes one unaided), and run.json
    records the decoding, so a resume with another decoding is refused."""
    recipe = load_recipe(label_recipe, ["decoding.prefill=<intent>", "decoding.constrain_labels=true",
                                        "decoding.free_reply=true", "decoding.reply_max_tokens=3"], check=False)
    sampling = SamplingConfig(n=2, temperature=1.0, max_new_tokens=24, prompts_per_batch=2, seed=7)
    result = label_dataset(recipe, tmp_path / "out", sampling, split="train", limit=3, progress=False)
    completions = [c for r in read_jsonl(result.files["records"]) for c in r["completions"]]
    assert len(completions) == 6
    heads = [c.split("</intent>")[0].removeprefix("<intent>") for c in completions]
    assert all(c.startswith("<intent>") and "</intent>" in c for c in completions) and set(heads) <= set(LABELS_ALL)
    run_info = json.loads((tmp_path / "out" / "run.json").read_text())
    assert run_info["decoding"] == {"prefill": "<intent>", "constrain_labels": True, "free_reply": True,
                                    "reply_max_tokens": 3}  # the recipe's prefill too (no --prefill given)
    plain = label_dataset(load_recipe(label_recipe, check=False), tmp_path / "plain", sampling, split="train",
                          limit=3, progress=False)
    assert "decoding" not in json.loads((tmp_path / "plain" / "run.json").read_text())  # plain run.json unchanged
    assert not any(c.startswith("<intent>") for r in read_jsonl(plain.files["records"]) for c in r["completions"])
    other = load_recipe(label_recipe, ["decoding.prefill=<intent>", "decoding.constrain_labels=true"], check=False)
    with pytest.raises(UserError, match="different settings \\(decoding\\)"):
        label_dataset(other, tmp_path / "out", sampling, split="train", limit=3, progress=False)


def test_cli_label_resumes_refuses_changed_settings_and_samples_an_adapter(tmp_path, label_recipe, tiny_model_dir,
                                                                           capsys):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    out = tmp_path / "out"
    args = ["label", str(label_recipe), "data.demo_size=20", "--out", str(out), "--n", "2", "--limit", "3",
            "--max-new-tokens", "5", "--temperature", "1.0", "--quiet"]
    assert run(args) == 0
    printed = capsys.readouterr().out
    assert "3 prompts, 6 completions" in printed and "DPO:" in printed
    first = {p.name: p.read_bytes() for p in out.iterdir()}
    assert run(args) == 0  # everything done: nothing is sampled or scored again, same bytes
    assert {p.name: p.read_bytes() for p in out.iterdir()} == first
    assert run(args[:-1] + ["--n", "3", "--quiet"]) == 2
    assert "different settings (sampling)" in capsys.readouterr().err

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    adapter_dir = tmp_path / "adapter"
    lora = LoraConfig(r=4, lora_alpha=512, target_modules="all-linear", init_lora_weights=False)  # visibly different
    get_peft_model(model, lora).save_pretrained(adapter_dir)
    assert run(args + ["--adapter", str(adapter_dir), "--out", str(tmp_path / "with_adapter")]) == 0
    with_adapter = read_jsonl(tmp_path / "with_adapter" / "records.jsonl")
    assert [r["completions"] for r in with_adapter] != [r["completions"] for r in read_jsonl(out / "records.jsonl")]
    assert json.loads((tmp_path / "with_adapter" / "run.json").read_text())["adapter"] == str(adapter_dir)
    assert run(args + ["--adapter", str(tmp_path), "--out", str(tmp_path / "bad")]) == 2
    assert "not a PEFT adapter directory" in capsys.readouterr().err


def test_cli_label_without_recipe_and_user_errors(tmp_path, tiny_model_dir, capsys):
    base = ["label", f"model.name={tiny_model_dir}", "data.source=demo:intents", "data.demo_size=10",
            "--out", str(tmp_path / "o"), "--n", "2", "--limit", "2", "--max-new-tokens", "4", "--quiet"]
    assert run(base) == 2
    assert "no rewards" in capsys.readouterr().err
    assert run(base + ["--reward", "intent", "--max-prompt-tokens", "5"]) == 2
    assert "every prompt is longer than --max-prompt-tokens 5" in capsys.readouterr().err
    assert run(base + ["--reward", "intent", "--n", "2", "--temperature", "0"]) == 2
    assert "temperature 0 is greedy" in capsys.readouterr().err
    assert run(base + ["--reward", "intent", "--label-reward", "judge"]) == 2
    assert "--label-reward 'judge'" in capsys.readouterr().err
    assert run(base + ["--reward", "intent"]) == 0
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert summary["prompts"] == 2 and summary["kto"]["problems"]  # random model: no tag, so no desirable rows
    assert summary["dpo"]["dropped"] == {"tie": 2}  # every sample scored -1: ties, counted, not silent


def test_cli_label_cuts_completions_where_the_recipe_cuts_rollouts(tmp_path, label_recipe, capsys):
    """Without --max-new-tokens, `rlft label` samples as long as the recipe's rollouts run
    (trainer.max_completion_length: a head + looked-up article + reply recipe needs ~160, the old fixed 64 cut its
    replies short); a flag still wins; a recipe without the key keeps 64; a bad value is one line, exit 2."""
    def label(out: str, *extra: str) -> int:
        overrides = [e for e in extra if "=" in e]
        flags = [e for e in extra if "=" not in e]
        return run(["label", str(label_recipe), "data.demo_size=10", *overrides, "--n", "2", "--limit", "2",
                    "--temperature", "1.0", "--quiet", "--out", str(tmp_path / out), *flags])

    def cut(out: str) -> int:
        return json.loads((tmp_path / out / "run.json").read_text())["sampling"]["max_new_tokens"]

    assert label("recipe", "trainer.max_completion_length=7") == 0 and cut("recipe") == 7
    assert label("flag", "trainer.max_completion_length=7", "--max-new-tokens", "3") == 0 and cut("flag") == 3
    assert label("plain") == 0 and cut("plain") == 64
    capsys.readouterr()
    assert label("bad", "trainer.max_completion_length=0") == 2
    err = capsys.readouterr().err
    assert "trainer.max_completion_length: expected a whole number of tokens >= 1, got 0" in err
    assert "Traceback" not in err and not (tmp_path / "bad").exists()
    recipe = load_recipe(label_recipe, ["trainer.max_completion_length=5"], check=False)  # the Python API too
    result = label_dataset(recipe, tmp_path / "api", split="train", limit=1, progress=False)
    assert result.summary["run"]["sampling"]["max_new_tokens"] == 5
