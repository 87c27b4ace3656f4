"""The body of ``liftlake models``: every model of the catalog with its family (no torch import)."""
from __future__ import annotations

import json

from liftlake.models.catalog import sorted_names


def run(ctx) -> None:
    for name, family in sorted_names():
        if ctx.args.json:
            print(json.dumps({"name": name, "family": family}))
        else:
            print(f"{name:<14} {family}")
