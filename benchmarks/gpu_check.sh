#!/usr/bin/env bash
# GPU check: a few bf16 steps of GRPO, DPO, KTO, PPO and label_pg with LoRA and QLoRA (bitsandbytes) on a tiny
# local model; prints step times and peak GPU memory; exits non-zero on any failure. Installs nothing from the
# internet: it uses the repo's .venv, or, when there is none, `pip install torch==2.13.0 && pip install -e .`
# with --no-index (only wheels already in pip's cache or $PIP_FIND_LINKS).
#   benchmarks/gpu_check.sh [--cpu] [--steps N] [--out DIR]      (--cpu: fp32 LoRA smoke check, no GPU needed)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
if [ ! -x "$PY" ]; then
  echo "[gpu_check] no .venv: creating one from cached wheels only (no network)" >&2
  python3 -m venv .venv
  .venv/bin/pip install --no-index ${PIP_FIND_LINKS:+--find-links "$PIP_FIND_LINKS"} torch==2.13.0
  .venv/bin/pip install --no-index ${PIP_FIND_LINKS:+--find-links "$PIP_FIND_LINKS"} -e .
fi
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TRL_EXPERIMENTAL_SILENCE=1
if [[ " $* " == *" --cpu "* ]]; then export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"; fi
if [[ " $* " != *" --cpu "* ]]; then nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true; fi
exec "$PY" benchmarks/gpu_check.py "$@"
