"""The body of ``liftlake models``: every model in the registry with its family."""
from __future__ import annotations

import json

from liftlake.models.registry import list_models


def run(ctx) -> None:
    for entry in list_models():
        if ctx.args.json:
            print(json.dumps({"name": entry.name, "family": entry.family}))
        else:
            print(f"{entry.name:<14} {entry.family}")
