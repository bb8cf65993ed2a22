"""Which way a parameter-server job trains: synchronous (the default) or asynchronous with a staleness bound.

    python -m distrain.launch -n 4 --backend ps --ps-mode async --staleness 2 train.py
    distrain.distributed.init("ps", ps_mode="async", staleness=2)
    DistributedDataParallel(model, ps_mode="async", staleness=2)

The launcher passes its flags to the ranks as $DISTRAIN_PS_MODE, $DISTRAIN_PS_STALENESS and
$DISTRAIN_PS_STALENESS_DAMPING; init()'s arguments win over them, and DistributedDataParallel's
over init()'s. NOTE [ Stale synchronous parallel ] in stale_synchronous.py says what the modes do.
"""
from __future__ import annotations

import math
import os

MODE_ENVIRONMENT_VARIABLE = "DISTRAIN_PS_MODE"
STALENESS_ENVIRONMENT_VARIABLE = "DISTRAIN_PS_STALENESS"
DAMPING_ENVIRONMENT_VARIABLE = "DISTRAIN_PS_STALENESS_DAMPING"
MODES = ("sync", "async")
DEFAULT_STALENESS = 0  # async without a bound named: K = 0 trains exactly as sync; say --staleness K for slack


def ps_mode(value=None, environ=os.environ, where="ps_mode"):
    """"sync" or "async": `value`, else $DISTRAIN_PS_MODE, else "sync"; ValueError for anything else."""
    if value is None:
        value, where = environ.get(MODE_ENVIRONMENT_VARIABLE) or "sync", f"${MODE_ENVIRONMENT_VARIABLE}"
    if value not in MODES:
        raise ValueError(f"{where} must be \"sync\" or \"async\", got {value!r}")
    return value


def staleness(value=None, environ=os.environ, where="staleness"):
    """K as an int, or math.inf: `value` (a number, "inf"), else $DISTRAIN_PS_STALENESS, else 0."""
    if value is None:
        text = environ.get(STALENESS_ENVIRONMENT_VARIABLE)
        if not text:
            return DEFAULT_STALENESS
        value, where = text, f"${STALENESS_ENVIRONMENT_VARIABLE}"
    if isinstance(value, str):
        text = value.strip().lower()
        value = math.inf if text in ("inf", "infinity", "none", "unbounded") else _integer(text, where)
    if isinstance(value, bool) or not (value == math.inf or float(value).is_integer()) or value < 0:
        raise ValueError(f"{where} must be a whole number of steps >= 0, or inf (unbounded), got {value!r}")
    return math.inf if value == math.inf else int(value)


def damping(value=None, environ=os.environ):
    """Staleness-aware learning-rate damping on? `value`, else $DISTRAIN_PS_STALENESS_DAMPING ("1"), else off."""
    if value is None:
        return environ.get(DAMPING_ENVIRONMENT_VARIABLE, "") in ("1", "true", "yes", "on")
    return bool(value)


def _integer(text, where):
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{where} must be a whole number of steps >= 0, or inf (unbounded), got {text!r}") from None
