"""Non-RL baseline on Bitext: TF-IDF + logistic regression on a random split vs the grouped (near-duplicate) split.

    python benchmarks/baselines.py                 # table + benchmarks/results/baselines.json + the split CSVs
    python benchmarks/baselines.py --sweep         # also the threshold/cap settings tried, one row each

A random split of the templated Bitext CSV puts paraphrases of one template on both sides (TF-IDF + LR ~1.00);
`rlft.data.splits.grouped_split` holds out whole near-duplicate clusters instead (see its module docstring). The random
split here has the same held-out size as the grouped one. Baseline: word 1-2 + char_wb 2-5 TF-IDF (sublinear tf)
into scikit-learn's LogisticRegression (C=1, lbfgs). Leakage: share of held-out rows whose nearest training row has
word-set Jaccard >= 0.8 (and >= 0.7). scikit-learn is a test/benchmark extra (`pip install -e .[test]`).

The grouped split is written to benchmarks/data/bitext_grouped_{train,eval}.csv (columns as in the source) for the
other benchmarks; `write_grouped_csvs()` regenerates them.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rlft.data.splits import grouped_split, near_duplicate_clusters, near_duplicate_leakage  # noqa: E402

DEFAULT_CSV = ROOT.parent / "shared" / "data" / "bitext" / "bitext_customer_service_train.csv"
DATA_DIR = ROOT / "benchmarks" / "data"
RESULTS = ROOT / "benchmarks" / "results" / "baselines.json"
EVAL_FRACTION, SEED, THRESHOLD, CAP = 0.1, 0, 0.4, 2.5
SWEEP = [(0.1, 0.8, 1.2), (0.1, 0.6, 1.2), (0.1, 0.4, 1.2), (0.1, 0.7, 2.0), (0.1, 0.5, 2.0), (0.1, 0.3, 2.0),
         (0.1, 0.4, 2.5), (0.12, 0.5, 2.0)]


def read_rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        return list(reader.fieldnames or []), list(reader)


def write_grouped_csvs(source: Path = DEFAULT_CSV, out_dir: Path = DATA_DIR, eval_fraction: float = EVAL_FRACTION,
                       seed: int = SEED, threshold: float = THRESHOLD, cap: float = CAP) -> tuple[Path, Path]:
    """Write the grouped split of `source` as bitext_grouped_train.csv / bitext_grouped_eval.csv (source order)."""
    fields, rows = read_rows(source)
    train, held = grouped_split([r["utterance"] for r in rows], [r["intent"] for r in rows], eval_fraction, seed,
                                threshold, cap)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = out_dir / "bitext_grouped_train.csv", out_dir / "bitext_grouped_eval.csv"
    for path, idx in zip(paths, (train, held), strict=True):
        with open(path, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=fields, lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows[i] for i in idx)
    return paths


def tfidf_lr_model(c: float = 1.0) -> Any:
    """The non-neural baseline, unfitted: word 1-2 + char_wb 2-5 TF-IDF (sublinear tf) into logistic regression."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline, make_union

    features = make_union(TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True),
                          TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True))
    return make_pipeline(features, LogisticRegression(max_iter=2000, C=c))


def tfidf_lr(train_x: list[str], train_y: list[str], eval_x: list[str], eval_y: list[str]) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, f1_score

    model = tfidf_lr_model()
    start = time.time()
    model.fit(train_x, train_y)
    pred = model.predict(eval_x)
    return {"accuracy": round(float(accuracy_score(eval_y, pred)), 4),
            "macro_f1": round(float(f1_score(eval_y, pred, average="macro")), 4),
            "fit_seconds": round(time.time() - start, 1)}


def measure(name: str, texts: list[str], labels: list[str], train: list[int], held: list[int],
            extra: dict[str, Any] | None = None) -> dict[str, Any]:
    tx, ex = [texts[i] for i in train], [texts[i] for i in held]
    per_label: dict[str, int] = {}
    for i in held:
        per_label[labels[i]] = per_label.get(labels[i], 0) + 1
    row = {"split": name, **(extra or {}), "train_rows": len(train), "eval_rows": len(held),
           "eval_labels": len(per_label), "eval_rows_per_label": [min(per_label.values()), max(per_label.values())],
           "leakage_jaccard_0.8": round(near_duplicate_leakage(tx, ex, 0.8), 4),
           "leakage_jaccard_0.7": round(near_duplicate_leakage(tx, ex, 0.7), 4)}
    row["tfidf_lr"] = tfidf_lr(tx, [labels[i] for i in train], ex, [labels[i] for i in held])
    return row


def print_table(rows: list[dict[str, Any]]) -> None:
    print(f"{'split':34s} {'eval':>5s} {'per label':>9s} {'leak@.8':>7s} {'leak@.7':>7s} {'TF-IDF acc':>10s} "
          f"{'macro-F1':>8s}")
    for r in rows:
        lo, hi = r["eval_rows_per_label"]
        print(f"{r['split']:34s} {r['eval_rows']:5d} {f'{lo}-{hi}':>9s} {r['leakage_jaccard_0.8']:7.2f} "
              f"{r['leakage_jaccard_0.7']:7.2f} {r['tfidf_lr']['accuracy']:10.3f} {r['tfidf_lr']['macro_f1']:8.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--csv", type=Path, default=DEFAULT_CSV)
    ap.add_argument("--sweep", action="store_true", help="also measure the other threshold/cap settings tried")
    args = ap.parse_args()
    _, source = read_rows(args.csv)
    texts, labels = [r["utterance"] for r in source], [r["intent"] for r in source]

    start = time.time()
    train, held = grouped_split(texts, labels, EVAL_FRACTION, SEED, THRESHOLD, CAP)
    split_seconds = round(time.time() - start, 2)
    thresholds = near_duplicate_clusters(texts, labels, THRESHOLD, EVAL_FRACTION, cap=CAP).thresholds
    idx = list(range(len(texts)))
    random.Random(SEED).shuffle(idx)
    r_held, r_train = sorted(idx[:len(held)]), sorted(idx[len(held):])

    rows = [measure("random (same eval size)", texts, labels, r_train, r_held, {"seed": SEED}),
            measure(f"grouped t={THRESHOLD} cap={CAP} f={EVAL_FRACTION}", texts, labels, train, held,
                    {"seed": SEED, "eval_fraction": EVAL_FRACTION, "threshold": THRESHOLD, "cap": CAP,
                     "split_seconds": split_seconds,
                     "label_thresholds_range": [min(thresholds.values()), max(thresholds.values())]})]
    sweep = []
    if args.sweep:
        for frac, thr, cap in SWEEP:
            for seed in (0, 1, 2):
                tr, he = grouped_split(texts, labels, frac, seed, thr, cap)
                sweep.append(measure(f"grouped t={thr} cap={cap} f={frac} s={seed}", texts, labels, tr, he,
                                     {"seed": seed, "eval_fraction": frac, "threshold": thr, "cap": cap}))
    print_table(rows + sweep)
    paths = write_grouped_csvs(args.csv)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"source": str(args.csv.name), "command": "python benchmarks/baselines.py"
                                   + (" --sweep" if args.sweep else ""), "splits": rows, "sweep": sweep,
                                   "grouped_csvs": [str(p.relative_to(ROOT)) for p in paths]}, indent=1) + "\n")
    print(f"wrote {RESULTS.relative_to(ROOT)} and {', '.join(str(p.relative_to(ROOT)) for p in paths)}")


if __name__ == "__main__":
    main()
