"""Evaluation reports: metrics and canaries (pure functions), and the files an evaluation writes.

`metrics` and `canaries` compute numbers from plain lists; `summary` turns one model's results into the
numbers a report shows; `files`, `html` and `curves` write report.json, report.md, traces.jsonl, traces.html and
the training-curve PNGs. Generating and scoring the completions is `rlft.evaluation.eval_models`'s job, not this package's.
"""
