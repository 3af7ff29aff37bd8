"""Facts about the machine a benchmark ran on: its CPU and how busy other processes kept it."""

from __future__ import annotations

import math
import os
import platform
from pathlib import Path


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def cpu_seconds() -> tuple[float, float]:
    """CPU seconds used so far by the whole machine (NaN off Linux) and by this process."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
        user, nice, system, _idle, _iowait, irq, softirq = map(int, fields[:7])
        machine = (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError):
        machine = math.nan
    own = os.times()
    return machine, own.user + own.system
