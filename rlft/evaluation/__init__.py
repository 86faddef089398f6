"""Evaluation: held-out scores during and after training, and `rlft eval`.

- `held_out`: generate and score held-out rows with the training rewards (`evaluate`, `generate_with`).
- `periodic`: evaluation during training, for every trainer, and the best adapter.
- `eval_models`: `rlft eval`, one or more models on a dataset, with the report files.
- `calibration`: how well a pairwise reward model ranks (accuracy, ECE).

Headline metrics and report files are `rlft.report`.
"""
