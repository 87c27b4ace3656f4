"""What every bench report says first about where it ran: Python, platform, cores, memory and the
installed versions of the distributions it names (bench.run and bench.backfill each add their own)."""
from __future__ import annotations

import os
import platform


def installed(dist: str) -> str:
    """The installed version of a distribution (pyspark's own __version__ is pyspark-client's)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "not installed"


def machine_basics(dists: tuple[str, ...]) -> dict:
    """Python, platform, cores, memory and the versions of ``dists``: the top of every bench report."""
    return {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count(),
            "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
            **{dist: installed(dist) for dist in dists}}

