"""How many torch threads a CPU run uses: one rule for `rlft.train`, `rlft train` and `accelerate launch`.

The rule: `OMP_NUM_THREADS` when it is set to a positive integer, else 1 (per process). It is the number
`accelerate launch` (1.15) already gives its children: it copies the launching shell's `OMP_NUM_THREADS` into each
process's environment, and sets it to 1 when the shell has none (`accelerate/commands/launch.py`
`_validate_launch_command`: `num_cpu_threads_per_process = get_int_from_env(["OMP_NUM_THREADS"], 1)`, written by
`accelerate/utils/launch.py`). So the same shell gives the same count through every entry point, where torch's own
default (every core) made the Python API run 2 threads and the launcher 1 on a 2-core machine, the API several
times slower beside other jobs. The one exception is accelerate's own CPU heuristic: a config or flag with
`use_cpu`/`--cpu` and no `OMP_NUM_THREADS` makes accelerate write physical cores / local processes into it, and
rlft follows what it finds (the bundled configs in recipes/accelerate/ do not set `use_cpu`).

The count is fixed for a run: the checkpoint marker records it (rlft.run.checkpoints) and a resume uses the recorded count (floating-point
reductions split over a different number of threads round differently, and bit-exact resume depends on it).
See docs/scaling.md#threads.
"""

from __future__ import annotations

import os
from collections.abc import Mapping


def torch_threads(env: Mapping[str, str] | None = None) -> int:
    """Threads per process for a CPU run: a positive integer `OMP_NUM_THREADS`, else 1."""
    value = (os.environ if env is None else env).get("OMP_NUM_THREADS", "").strip()
    return int(value) if value.isdigit() and int(value) > 0 else 1


def use_run_threads(device: str) -> None:
    """On CPU, set torch's thread count by the rule above (training, and `rlft check` so its forecast times the
    same machine); other devices keep torch's default."""
    if device == "cpu":
        import torch

        torch.set_num_threads(torch_threads())
