"""Issue 33, smaller: what report.md and traces.html show must read without the source. A run's report printed
"— rows/s", decoding as a raw Python dict, `score_length_correlation intent=None` and `near_duplicate_share 1.000`
with no word on why; the browser's curves had no zero on their y axis."""

from __future__ import annotations

import re

from rlft.report import curves
from rlft.report.files import samples, write_report
from rlft.report.summary import ModelRun, summarise

LABELS = ["cancel_order", "get_refund", "track_order"]
DECODING = {"prefill": "<intent>", "constrain_labels": True, "label_suffix": "</intent>", "free_reply": False,
            "reply_max_tokens": 0, "label_prefix": "", "reply_stop": "\n", "lookup": None, "greedy": True}


def _label_only_report(tmp_path, seconds):
    gold = ["cancel_order", "get_refund", "track_order", "get_refund"]
    predicted = ["get_refund", "get_refund", "track_order", "track_order"]
    run = ModelRun("tuned", "adapter runs/x", [f"<intent>{p}</intent>" for p in predicted], decoding=DECODING,
                   predicted=predicted, parse_status=["ok"] * 4, seconds=seconds,
                   rewards={"intent": [1.0 if p == g else 0.0 for p, g in zip(predicted, gold, strict=True)]})
    models = [summarise(run, gold, LABELS)]
    rows = samples(["a", "b", "c", "d"], gold, [run])
    log = [{"step": 1, "reward": 0.45}, {"step": 2, "reward": 0.65}]
    write_report(tmp_path, "t", models, rows, {"rows": 4}, log_history=log)
    return (tmp_path / "report.md").read_text(), (tmp_path / "traces.html").read_text()


def test_report_md_says_what_it_measured_and_why_a_canary_is_empty(tmp_path):
    md, _ = _label_only_report(tmp_path, seconds=None)
    assert "rows/s" not in md  # not measured: no "— rows/s"
    assert "{'prefill'" not in md and "True" not in md
    assert 'decoding `prefill: "<intent>", constrain_labels: true, label_suffix: "</intent>", free_reply: false, ' \
           'reply_max_tokens: 0, reply_stop: "\\n", greedy: true`' in md
    assert "None" not in md
    assert "| score_length_correlation | intent=— |" in md
    assert "- `score_length_correlation`: Pearson r" in md
    assert "the reward or the length is the same on every row" in md
    assert "| near_duplicate_share | 1.000 |" in md
    assert re.search(r"- tuned: every reply is one allowed label .* near_duplicate_share is near 1", md)

    md, _ = _label_only_report(tmp_path, seconds=2.0)
    assert "`, 2.0 rows/s" in md


def test_free_text_replies_get_no_label_only_note(tmp_path):
    run = ModelRun("tuned", "x", ["one reply here", "another reply there"], decoding={"free_reply": True},
                   rewards={"judge": [0.5, 1.0]})
    write_report(tmp_path, "t", [summarise(run, None, [])], samples(["a", "b"], None, [run]), {})
    md = (tmp_path / "report.md").read_text()
    assert "`near_duplicate_share`: share of completions" in md and "every reply is one allowed label" not in md


def test_trace_browser_shows_decoding_as_settings_and_curves_from_zero(tmp_path):
    _, page = _label_only_report(tmp_path, seconds=1.0)
    assert "{&#x27;prefill&#x27;" not in page and "True" not in page
    assert "decoding <code>prefill: &quot;&lt;intent&gt;&quot;, constrain_labels: true," in page
    svg = page.split('<svg class="curve"', 1)[1].split("</svg>", 1)[0]
    assert re.findall(r'class="yl">([^<]*)<', svg) == ["0.65", "0"]  # the y axis runs from zero to the top


def test_curve_axes_hold_zero_and_draw_it_when_crossed():
    assert curves._bounds([(1, 0.45), (2, 0.65)])[2:] == (0.0, 0.65)
    assert curves._bounds([(1, -0.5), (2, -0.25)])[2:] == (-0.5, 0.0)
    crossing = curves.svg("reward", "reward", [(1, -0.5), (2, 0.5)])
    assert 'class="ax zero"' in crossing and re.findall(r'class="yl">([^<]*)<', crossing) == ["0.5", "-0.5", "0"]
    assert 'class="ax zero"' not in curves.svg("reward", "reward", [(1, 0.2), (2, 0.5)])  # zero is the bottom axis
