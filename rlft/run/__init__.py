"""A training run from end to end, and what it leaves behind.

- `pipeline`: `train(recipe)`, read top to bottom: recipe -> model -> data -> rewards -> trainer -> outputs.
- `models`: load the model (embedded default, hub id, folder, .gguf), LoRA / QLoRA.
- `launch`: the entry of `recipes/*.py` under `accelerate launch`; `distributed`: what that launch set up.
- `checkpoints`, `time_budget`, `ema`, `progress`: resume, stop on a budget, weight averaging, the progress line.
- `outputs`: adapter, resolved recipe, metrics, model card; `export`: what a server needs (`rlft export`).
- `redact`: credentials out of everything written; `telemetry`: off unless opted in.
"""
