"""A number of seconds a parameter-server setting takes: from its argument, else its environment variable, else a
default, and refused naming where it came from when it is not a number within its range."""
from __future__ import annotations

import math
import os


def seconds(value, variable, default, lowest, highest, name, environ=os.environ):
    """`value`, else $`variable`, else `default`; ValueError unless lowest <= seconds <= highest."""
    where = name
    if value is None and environ.get(variable):
        value, where = environ[variable], f"${variable}"
    if value is None:
        return default
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not lowest <= number <= highest:
        raise ValueError(f"{where} must be a number of seconds from {lowest:g} to {highest:g}, got {value!r}")
    return number
