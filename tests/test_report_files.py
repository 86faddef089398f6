"""Report files without a model: curves from a log history, the PNG rasteriser, inspect-shaped trace records."""

import struct
import zlib

from rlft.report import curves
from rlft.report.files import samples, trace_records
from rlft.report.summary import ModelRun, disagreements


def test_curves_take_the_first_key_the_log_has():
    log = [{"step": 1, "reward": 0.1, "signal/frac_zero_std_first_draw": 0.9},
           {"step": 2, "reward": 0.3, "signal/frac_zero_std_first_draw": 0.5, "eval_intent_accuracy": 0.6},
           {"step": 2, "train_runtime": 10.0}]  # the final summary entry has none of the keys
    got = curves.series(log)
    assert got == {"reward": {"key": "reward", "points": [(1.0, 0.1), (2.0, 0.3)]},
                   "accuracy": {"key": "eval_intent_accuracy", "points": [(2.0, 0.6)]},
                   "zero_signal_fraction": {"key": "signal/frac_zero_std_first_draw",
                                            "points": [(1.0, 0.9), (2.0, 0.5)]}}
    svg = curves.svg("reward", "reward", got["reward"]["points"])
    assert svg.startswith("<svg") and "http" not in svg and svg.count("<circle") == 2


def test_rasteriser_writes_a_valid_png_with_the_line_drawn():
    data = curves.raster_png([(0, 0.0), (1, 1.0), (2, 0.5)], width=60, height=40)
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (60, 40)
    idat = data.index(b"IDAT")
    length = struct.unpack(">I", data[idat - 4:idat])[0]
    raw = zlib.decompress(data[idat + 4:idat + 4 + length])
    assert len(raw) == height * (1 + 3 * width)
    assert bytes((31, 119, 180)) in raw  # the blue line is there


def test_trace_records_are_inspect_shaped_and_keep_abstentions_null():
    a = ModelRun("a", "x", ["<intent>x</intent>", "<intent>y</intent>"], predicted=["x", "y"],
                 parse_status=["ok", "ok"], rewards={"r": [1.0, None]})
    b = ModelRun("b", "x", ["<intent>x</intent>", "nothing"], predicted=["x", None], parse_status=["ok", "missing"],
                 rewards={"r": [0.0, 0.5]})
    assert disagreements([a, b]) == [False, True]
    rows = samples([[{"role": "user", "content": "hi"}], "plain"], ["x", "y"], [a, b], ids=["r0", "r1"])
    assert [s["fail"] for s in rows] == [False, True]
    recs = trace_records(rows)
    assert [r["id"] for r in recs] == ["r0/a", "r0/b", "r1/a", "r1/b"]
    assert recs[2]["scores"]["r"] == {"value": None}  # abstained: null, not 0
    assert recs[3]["scores"]["intent_match"] == {"value": 0.0, "answer": None, "explanation": "missing"}
    assert recs[0]["output"]["choices"][0]["message"] == {"role": "assistant", "content": "<intent>x</intent>"}
    assert recs[0]["input"] == [{"role": "user", "content": "hi"}] and recs[0]["target"] == "x"
