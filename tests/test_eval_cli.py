"""`rlft eval` end to end on the tiny random Llama: base vs a tiny LoRA adapter, every report file written."""

import json
import re
from html.parser import HTMLParser

import pytest

from rlft.cli import run
from rlft.errors import UserError
from rlft.evaluation.eval_models import ModelRef, evaluate_models, parse_model_ref
from rlft.recipe.load import load_recipe

LABELS = ["cancel_order", "track_order", "get_refund"]
ROWS = [("please cancel my order", "cancel_order"), ("where is my parcel", "track_order"),
        ("I want my money back", "get_refund"), ("stop the order now", "cancel_order"),
        ("track package 123", "track_order"), ("refund please", "get_refund")]

ABSTAIN_REWARD = '''
def every_other(prompts, completions, **kw):
    """Abstains (None) on odd rows, 0.25 on even rows: its mean must be 0.25, not 0.125."""
    return [0.25 if i % 2 == 0 else None for i in range(len(completions))]
'''


@pytest.fixture(scope="module")
def eval_setup(tmp_path_factory, tiny_model_dir):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    root = tmp_path_factory.mktemp("eval")
    data = root / "eval.csv"
    data.write_text("utterance,intent\n" + "".join(f"{u},{i}\n" for u, i in ROWS))
    (root / "my_rewards.py").write_text(ABSTAIN_REWARD)
    torch.manual_seed(1)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    adapter = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear",
                                              init_lora_weights=False))
    for name, param in adapter.named_parameters():
        if "lora_" in name:  # large random LoRA weights, so the tuned model answers differently from the base
            param.data.normal_(0.0, 0.5)
    adapter_dir = root / "adapter"
    adapter.save_pretrained(adapter_dir)
    history = [{"step": s, "reward": 0.1 * s, "kl": 0.01 * s, "frac_reward_zero_std": 1 - 0.1 * s,
                "intent/accuracy": 0.2 + 0.05 * s} for s in (1, 2, 3, 4)]
    (adapter_dir / "metrics.json").write_text(json.dumps({"log_history": history}))
    recipe = root / "recipe.yaml"
    recipe.write_text(f"""
model: {{name: {tiny_model_dir}, device: cpu}}
data:
  source: {data}
  label_column: intent
  labels: {LABELS}
  system_prompt: "Classify. Reply as <intent>label</intent>."
rewards:
  - name: intent
  - name: {root / 'my_rewards.py'}:every_other
decoding: {{prefill: "<intent>", constrain_labels: true}}
evaluation: {{max_new_tokens: 8, batch_size: 4}}
""")
    return root, recipe, data, adapter_dir


@pytest.fixture(scope="module")
def evaluated(eval_setup):
    root, recipe_path, data, adapter_dir = eval_setup
    recipe = load_recipe(recipe_path)
    out = root / "report"
    result = evaluate_models([ModelRef("base", "base"), ModelRef("adapter", "tuned", path=str(adapter_dir))],
                             recipe, out, data_file=str(data))
    return result, out


def test_two_model_eval_writes_every_file_with_the_right_rows(evaluated):
    result, out = evaluated
    for name in ("report.json", "report.md", "traces.jsonl", "traces.html"):
        assert (out / name).is_file(), name
    records = [json.loads(line) for line in (out / "traces.jsonl").read_text().splitlines()]
    assert len(records) == len(ROWS) * 2  # one inspect-shaped record per (sample, model)
    first = records[0]
    assert set(first) >= {"id", "input", "output", "target", "scores", "metadata"}
    assert first["target"] == "cancel_order" and first["output"]["completion"].startswith("<intent>")
    assert {r["metadata"]["model"] for r in records} == {"base", "tuned"}
    report = json.loads((out / "report.json").read_text())
    assert [m["name"] for m in report["models"]] == ["base", "tuned"]
    for m in report["models"]:
        assert m["n"] == len(ROWS)
        assert m["headline"]["format_rate"] == 1.0  # constrained decoding: always one allowed label
        lo, hi = m["headline"]["intent_accuracy_ci"]
        assert lo <= m["headline"]["intent_accuracy"] <= hi
        assert sum(sum(v.values()) for v in m["confusion"].values()) == len(ROWS)
        assert m["decoding"]["prefill"] == "<intent>" and m["decoding"]["constrain_labels"] is True
    tuned = report["models"][1]
    assert tuned["canaries"]["kl_to_base"]["n"] == len(ROWS)
    assert "length_drift_vs_base" in tuned["canaries"]
    assert set(report["curves"]) == {"reward", "accuracy", "kl", "zero_signal_fraction"}
    for curve in report["curves"]:
        assert (out / f"curve_{curve}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (out / "report.md").read_text()
    assert "| base |" in md and "| tuned |" in md and "intent_accuracy" in md


def test_abstentions_are_not_zeros_in_the_report(evaluated):
    result, out = evaluated
    reward = result["models"][0]["rewards"]["every_other"]
    assert reward["mean"] == 0.25 and reward["n"] == 3 and reward["abstained"] == 3
    records = [json.loads(line) for line in (out / "traces.jsonl").read_text().splitlines()]
    values = [r["scores"]["every_other"]["value"] for r in records if r["metadata"]["model"] == "base"]
    assert values == [0.25, None, 0.25, None, 0.25, None]


class _Rows(HTMLParser):
    """Collects the trace rows' data attributes and every URL-bearing attribute and script text."""

    def __init__(self):
        super().__init__()
        self.rows, self.urls, self.scripts, self._in_script = [], [], [], False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "tr" and "data-disagree" in a:
            self.rows.append(a)
        for key in ("src", "href", "xmlns"):
            if key in a:
                self.urls.append(a[key])
        self._in_script = tag == "script"

    def handle_endtag(self, tag):
        self._in_script = False

    def handle_data(self, data):
        if self._in_script:
            self.scripts.append(data)


def test_html_rows_carry_the_filter_attributes_and_nothing_external(evaluated):
    result, out = evaluated
    text = (out / "traces.html").read_text()
    parsed = _Rows()
    parsed.feed(text)
    assert len(parsed.rows) == len(ROWS)
    base, tuned = result["runs"]
    expected = [int(a != b) for a, b in zip(base.predicted, tuned.predicted, strict=True)]
    assert [int(r["data-disagree"]) for r in parsed.rows] == expected
    assert 0 < sum(expected) < len(ROWS)  # the check means something: some rows differ, some do not
    assert [r["data-intent"] for r in parsed.rows] == [i for _, i in ROWS]
    wrong = [int(a != g or b != g) for a, b, g in zip(base.predicted, tuned.predicted, [i for _, i in ROWS],
                                                          strict=True)]
    assert [int(r["data-fail"]) for r in parsed.rows] == wrong
    # "disagree" shows exactly the rows with data-disagree=1: what the script's filter reads
    assert "tr.dataset.disagree !== '1'" in "".join(parsed.scripts)
    assert parsed.urls == [] and re.findall(r"https?:", text) == []  # no CDN, no external asset, no link
    assert "<svg" in text and "zero_signal_fraction" in text  # the training curves are inline


def test_hostile_completion_is_escaped_and_inert(tmp_path):
    from rlft.report.files import samples, write_report
    from rlft.report.summary import ModelRun, summarise

    evil = '<script>alert(1)</script><img src=x onerror=alert(2)> see http://evil.example/x </script>'
    run_ = ModelRun("m", "test", [evil, "<intent>a</intent>"], predicted=[None, "a"], parse_status=["missing", "ok"],
                    rewards={"r": [None, 1.0]}, judge_status=["ok", "skipped"],
                    judge_rationale=['"><script>alert(3)</script>', ""], policy=[0.0, None])
    gold = ["a", "a"]
    paths = write_report(tmp_path, "t<script>", [summarise(run_, gold, ["a"])],
                         samples(["<b>prompt</b>", "p"], gold, [run_]), {"recipe": "x"})
    text = paths["traces.html"].read_text()
    parsed = _Rows()
    parsed.feed(text)
    assert len(parsed.scripts) == 1 and "alert" not in parsed.scripts[0]  # only our own script runs
    assert "<script>alert" not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "<img" not in text and "&lt;img src=x onerror=alert(2)&gt;" in text
    assert parsed.urls == []
    # the only URL is inside escaped sample text
    assert re.findall(r"https?:", text) == ["http:"] and "see http://evil.example/x" in text


def test_model_refs_and_errors(tmp_path, eval_setup):
    adapter_dir = eval_setup[3]
    assert parse_model_ref("base") == ModelRef("base", "base")
    assert parse_model_ref(f"mine={adapter_dir}") == ModelRef("adapter", "mine", path=str(adapter_dir))
    ref = parse_model_ref("openai:http://127.0.0.1:8000/v1#qwen", "KEY_VAR")
    assert (ref.kind, ref.name, ref.base_url, ref.model, ref.api_key_env) == (
        "openai", "qwen", "http://127.0.0.1:8000/v1", "qwen", "KEY_VAR")
    with pytest.raises(UserError, match="no adapter_config.json"):
        parse_model_ref(str(tmp_path))
    with pytest.raises(UserError, match="expected openai:http"):
        parse_model_ref("openai:localhost#x")


def test_cli_prints_the_headline_table_and_exits_2_on_a_bad_model(eval_setup, capsys):
    root, recipe, data, adapter_dir = eval_setup
    out = root / "cli_report"
    code = run(["eval", str(recipe), "--model", "base", "--data", str(data), "--max-samples", "3", "--out", str(out)])
    assert code == 0
    lines = capsys.readouterr().out.splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("model "))  # data warnings may come first
    assert lines[head].split()[:3] == ["model", "n", "intent_accuracy"]
    assert lines[head + 2].split()[:2] == ["base", "3"]
    assert len((out / "traces.jsonl").read_text().splitlines()) == 3
    assert run(["eval", str(recipe), "--model", str(root / "nope")]) == 2
    assert "not 'base', an 'openai:URL#MODEL' endpoint, or an adapter directory" in capsys.readouterr().err


def test_endpoint_models_and_pairwise_win_rate_in_both_orders(tmp_path, eval_setup, monkeypatch):
    from tests.judge_stub_server import StubJudge, StubServer

    _, _, data, _ = eval_setup
    def respond(body):
        if body["model"] == "judge":  # a judge that always prefers whichever answer it is shown first
            return "Both are labels.\nVERDICT: A"
        label = "track_order" if body["model"] == "m1" else "cancel_order"
        return f"<intent>{label}</intent>"

    recipe_file = tmp_path / "recipe.yaml"
    recipe_file.write_text(f"data: {{source: {data}, labels: {LABELS}}}\nrewards: [intent]\n")
    recipe = load_recipe(recipe_file)
    stub = StubJudge(respond)
    monkeypatch.setenv("EVAL_TEST_KEY", "sk-test-secret")
    with StubServer(stub) as url:
        from rlft.evaluation.eval_models import build_pairwise_judge

        models = [parse_model_ref(f"openai:{url}#m1", "EVAL_TEST_KEY"), parse_model_ref(f"openai:{url}#m2")]
        result = evaluate_models(models, recipe, tmp_path / "out", data_file=str(data),
                                 pairwise_judge=build_pairwise_judge(f"openai:{url}#judge", None))
    m1, m2 = result["models"]
    assert m1["headline"]["intent_accuracy"] == pytest.approx(2 / 6)  # says track_order to every row
    assert m2["headline"]["intent_accuracy"] == pytest.approx(2 / 6)
    assert m1["decoding"]["mode"].startswith("free (endpoint")
    w = result["win_rate"]
    # each prompt judged twice (m1 first, then m2 first); the first answer always wins -> every item flips
    assert (w["judgments"], w["items"], w["wins_a"], w["wins_b"], w["ties"]) == (12, 6, 6, 6, 0)
    assert w["win_rate_a"] == 0.5 and w["position_bias"] == 0.5 and w["order_flips"] == 6
    written = "".join(p.read_text() for p in (tmp_path / "out").iterdir() if p.suffix in (".json", ".md", ".jsonl",
                                                                                        ".html"))
    assert "sk-test-secret" not in written and "position bias" in (tmp_path / "out" / "report.md").read_text()
    assert "Bearer sk-test-secret" in stub.auth_headers  # the key reached the endpoint, read from the variable


def test_judge_against_human_labels_gives_kappa(tmp_path, eval_setup):
    from tests.judge_stub_server import StubJudge, StubServer, keyword_responder

    _, _, data, _ = eval_setup
    human = tmp_path / "human.csv"
    # the stub judge passes replies that mention "fee": verdicts pass, pass, fail, fail; humans: pass, fail, fail, fail
    human.write_text("utterance,intent,completion,human\n"
                     "cancel it,cancel_order,\"<intent>cancel_order</intent> A $4.99 fee applies.\",Accurate\n"
                     "cancel now,cancel_order,\"<intent>cancel_order</intent> There is no fee, ever.\",Inaccurate\n"
                     "stop it,cancel_order,\"<intent>cancel_order</intent> Your order has been cancelled.\",fail\n"
                     "where is it,track_order,\"<intent>track_order</intent> Your parcel is on its way.\",0\n")

    def respond(body):
        if body["model"] == "m1":
            return "<intent>track_order</intent>"
        return keyword_responder("fee")(body)

    with StubServer(StubJudge(respond)) as url:
        recipe_file = tmp_path / "recipe.yaml"
        recipe_file.write_text(f"""
data: {{source: {data}, labels: {LABELS}}}
rewards:
  - name: judge
    params: {{backend: openai, model: judge, base_url: "{url}", api_key_env: null, cache: null,
              guideline: "Mention the $4.99 cancellation fee."}}
""")
        recipe = load_recipe(recipe_file)
        result = evaluate_models([parse_model_ref(f"openai:{url}#m1")], recipe, tmp_path / "out",
                                 data_file=str(data), human_labels=str(human))
    k = result["judge_calibration"]
    # agree on 3 of 4; judge 2 pass / 2 fail, humans 1 / 3 -> p_e = (2*1 + 2*3) / 16 = 0.5 -> kappa 0.5
    assert (k["n"], k["abstained"], k["agreement"], k["kappa"]) == (4, 0, 0.75, 0.5)
    assert k["confusion"] == {"fail": {"fail": 2, "pass": 1}, "pass": {"pass": 1}}
    assert "Cohen's kappa 0.500" in (tmp_path / "out" / "report.md").read_text()
    from rlft.judge.quality import on_the_curve

    assert k["on_the_curve"] == on_the_curve(0.5) and k["on_the_curve"] in (tmp_path / "out" / "report.md").read_text()
    policy = result["models"][0]["headline"]
    assert policy["policy_judged"] + policy["policy_abstained"] == 6  # the model's own replies were judged too


def test_two_models_get_their_paired_difference_on_the_same_rows(evaluated):
    result, out = evaluated
    report = json.loads((out / "report.json").read_text())
    base, tuned = report["models"]
    (pair,) = [d for d in report["paired"] if d["metric"] == "intent_accuracy"]
    assert pair["model"] == "tuned" and pair["against"] == "base" and pair["rows"] == len(ROWS)
    gain = tuned["headline"]["intent_accuracy"] - base["headline"]["intent_accuracy"]
    assert pair["difference"] == pytest.approx(gain)
    lo, hi = pair["ci"]
    assert lo <= pair["difference"] <= hi
    assert "## Paired differences against base (the same rows)" in (out / "report.md").read_text()
