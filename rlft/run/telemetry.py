"""No telemetry by default. TRL pings the Hub on every trainer init; rlft switches that off unless the user opts
in with `RLFT_TELEMETRY=1` (then the Hub's own `HF_HUB_DISABLE_TELEMETRY` setting applies)."""

from __future__ import annotations

import os


def opted_in() -> bool:
    return os.environ.get("RLFT_TELEMETRY", "").lower() in ("1", "true", "yes")


def disable_unless_opted_in() -> None:
    if opted_in():
        return
    os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
    try:  # huggingface_hub reads the variable at import time; also flip the live constant if already imported
        from huggingface_hub import constants

        constants.HF_HUB_DISABLE_TELEMETRY = True
    except ImportError:
        pass
