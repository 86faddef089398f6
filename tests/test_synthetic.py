"""Synthetic conversations: the documented schema, offline from templates and from a local OpenAI-compatible
server, de-duplication, and a dataset `rlft label` can read."""

from __future__ import annotations

import json

import pytest

from tests.counting_judge_server import CountingServer
from rlft.cli import run
from rlft.recipe.sections import DataConfig
from rlft.errors import UserError
from rlft.data.labeling.sources import load_prompts
from rlft.data.synthetic import SyntheticConfig, conversation_problem, generate_dataset
from rlft.data.synthetic.dedup import dedup_indices
from rlft.data.synthetic.schema import DATE_RE, ORDER_RE

ROW_KEYS = {"id", "prompt", "aspect", "persona_id", "persona", "turns", "order_numbers", "dates", "generator", "seed"}


def assert_schema(rows: list[dict], cfg: SyntheticConfig) -> None:
    assert rows
    for row in rows:
        assert set(row) == ROW_KEYS
        system, *turns = row["prompt"]
        assert system == {"role": "system", "content": cfg.system_prompt}
        assert conversation_problem(turns, cfg.min_turns, cfg.max_turns) is None, row
        assert row["turns"] == len(turns) and cfg.min_turns <= len(turns) <= cfg.max_turns
        assert turns[-1]["role"] == "user"  # ends with an unanswered customer message
        assert row["order_numbers"] and row["dates"]
        assert row["aspect"] in cfg.aspects


def test_template_generator_is_offline_valid_and_seeded():
    cfg = SyntheticConfig(aspects=["refund handling", "shipping communication", "loyalty points"],
                          personas_per_aspect=2, conversations_per_persona=4, seed=3)
    rows, report = generate_dataset(cfg)
    assert_schema(rows, cfg)
    assert report["personas"] == 6 and report["requests"] == 0
    assert report["generated"] + report["rejected"] == 24
    assert len(rows) == report["generated"] - sum(report["duplicates"].values())
    assert {r["turns"] for r in rows} >= {3, 4, 5, 6}  # the whole 3-6 range shows up
    assert any("loyalty points" in m["content"] for r in rows for m in r["prompt"])  # unknown aspect: generic
    again, _ = generate_dataset(cfg)
    assert again == rows
    other, _ = generate_dataset(SyntheticConfig(**{**cfg.__dict__, "seed": 4}))
    assert other != rows


@pytest.mark.parametrize("messages, problem", [
    ([{"role": "user", "content": "ORD-12345 on March 3?"}], "turns"),  # too short
    ([{"role": "user", "content": "ORD-12345 March 3"}, {"role": "assistant", "content": "ok"},
      {"role": "assistant", "content": "ok"}], "alternate"),
    ([{"role": "user", "content": "ORD-12345 March 3"}, {"role": "assistant", "content": "ok"},
      {"role": "user", "content": "?"}, {"role": "assistant", "content": "answered"}], "unanswered"),
    ([{"role": "user", "content": "my order from March 3"}, {"role": "assistant", "content": "ok"},
      {"role": "user", "content": "?"}], "order number"),
    ([{"role": "user", "content": "order ORD-12345"}, {"role": "assistant", "content": "ok"},
      {"role": "user", "content": "?"}], "date"),
    ([{"role": "user", "content": "ORD-12345 March 3"}, {"role": "assistant", "content": "  "},
      {"role": "user", "content": "?"}], "empty"),
])
def test_schema_rejects_each_broken_conversation(messages, problem):
    assert problem in conversation_problem(messages, 3, 6)


def test_detail_patterns():
    assert ORDER_RE.findall("orders ORD-48213, #99812 and AB12345") == ["ORD-48213", "#99812", "AB12345"]
    assert len(DATE_RE.findall("on March 14, 2025-03-14, 3/14 and 14th March")) == 4
    assert not DATE_RE.search("I paid $19.99 for 3 items")


def test_dedup_exact_after_masking_digits_and_near_duplicates():
    base = "user: my order ORD-12345 from March 3 is late and I want to know where the parcel is right now"
    texts = [base, base.replace("12345", "99999"), base + " please", "user: a completely different refund question"]
    keep, counts = dedup_indices(texts, threshold=0.8)
    assert keep == [0, 3]
    assert counts == {"exact": 1, "near": 1}
    keep_exact, counts_exact = dedup_indices(texts, threshold=1.0)
    assert keep_exact == [0, 2, 3] and counts_exact == {"exact": 1, "near": 0}


def test_openai_compatible_generator_against_local_server(monkeypatch):
    monkeypatch.setenv("TEST_GEN_KEY", "sk-test-secret")
    cfg = SyntheticConfig(aspects=["refund handling", "escalation efficiency"], personas_per_aspect=2,
                          conversations_per_persona=2, generator="openai", model="gen-model",
                          api_key_env="TEST_GEN_KEY", seed=11, dedup_threshold=1.0)
    with CountingServer(bad_conversations=1) as server:
        cfg.base_url = server.url
        rows, report = generate_dataset(cfg)
    assert_schema(rows, cfg)
    assert len(rows) == 8 and report["rejected"] == 0
    assert any("unanswered" in r for r in report["retries"])  # the broken reply was retried, not kept
    persona_calls = [b for b in server.answered if "persona designer" in b["messages"][0]["content"]]
    conv_calls = [b for b in server.answered if "conversations used to train" in b["messages"][0]["content"]]
    assert len(persona_calls) == 2 and len(conv_calls) == 9 and report["requests"] == 11
    assert {b["temperature"] for b in persona_calls} == {1.0}
    assert {b["temperature"] for b in conv_calls} == {0.9}
    assert len({b["seed"] for b in server.answered}) == 11  # every request carries its own seed
    assert {r["generator"] for r in rows} == {"openai:gen-model"}
    assert "sk-test-secret" not in json.dumps(report)


def test_openai_generator_needs_the_key_env_var(monkeypatch):
    monkeypatch.delenv("NO_SUCH_KEY_VAR", raising=False)
    with pytest.raises(UserError, match="NO_SUCH_KEY_VAR"):
        generate_dataset(SyntheticConfig(generator="openai", api_key_env="NO_SUCH_KEY_VAR"))


def test_cli_generate_writes_a_prompt_dataset_rlft_label_reads(tmp_path, capsys):
    out = tmp_path / "synthetic.jsonl"
    code = run(["generate", "--out", str(out), "--aspects", "refund handling", "shipping communication",
                "--personas-per-aspect", "1", "--conversations-per-persona", "3", "--seed", "5"])
    assert code == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) >= 5
    report = json.loads((tmp_path / "synthetic.jsonl.report.json").read_text())
    assert report["rows"] == len(rows)
    assert f"{len(rows)} prompts" in capsys.readouterr().out
    prompts, _ = load_prompts(DataConfig(source=str(out), system_prompt="ignored: the rows have one"), seed=0)
    assert [p.prompt for p in prompts] == [r["prompt"] for r in rows]
    assert prompts[0].columns["aspect"] == rows[0]["aspect"] and "prompt" not in prompts[0].columns


def test_cli_generate_unknown_generator_is_a_one_line_error(tmp_path, capsys):
    config = tmp_path / "syn.yaml"
    config.write_text("aspects: [refunds]\npersonas_per_aspct: 2\n")
    assert run(["generate", "--out", str(tmp_path / "x.jsonl"), "--config", str(config)]) == 2
    assert "personas_per_aspect" in capsys.readouterr().err
