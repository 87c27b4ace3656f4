"""The bodies of ``liftlake models`` (the catalog, or the trained versions with their aliases and
the promotion history), ``liftlake promote`` and ``liftlake rollback``; none imports torch or
starts Spark."""
from __future__ import annotations

import json
import os
import time

from liftlake.lib.config import ConfigError, warehouse_path
from liftlake.models.catalog import sorted_names


def run(ctx) -> None:
    if ctx.args.versions or ctx.args.history:
        return trained(ctx)
    for name, family in sorted_names():
        if ctx.args.json:
            print(json.dumps({"name": name, "family": family}))
        else:
            print(f"{name:<14} {family}")


def _model_names(ctx) -> list[str]:
    known = [name for name, _ in sorted_names()]
    if ctx.args.model:
        if ctx.args.model not in known:
            raise ConfigError(f"--model {ctx.args.model}: not a registered model (models: {', '.join(known)})")
        return [ctx.args.model]
    return known


def version_rows(warehouse: str, name: str) -> list[dict]:
    """One row per trained version: its aliases, when it was made, what it trained on and the gate's
    value of it (from the promotion history)."""
    from liftlake.lib.artifacts import model_store

    aliases = {alias: model_store.alias_version(warehouse, name, alias) for alias in model_store.ALIAS_FILES}
    gated = {e["to"]: e for e in model_store.promotion_history(warehouse, name) if e["alias"] == "challenger"}
    rows = []
    for version in model_store.versions(warehouse, name):
        folder = os.path.join(model_store.models_root(warehouse), name, version)
        info = model_store.read_file(folder, "model.json", json.loads)
        data = model_store.read_file(folder, "data.json", json.loads)
        gate = gated.get(version, {})
        days = data.get("days") or []
        rows.append({"model": name, "version": version,
                     "aliases": [alias for alias, v in aliases.items() if v == version],
                     "created": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(float(info.get("created_unix", 0)))),
                     "days": f"{days[0]}..{days[-1]}" if days else "", "rows": data.get("rows"),
                     "run_key": data.get("run_key"), "run_id": info.get("run_id"),
                     "code": (info.get("code") or {}).get("git"), "table_versions": data.get("table_versions"),
                     "gate_metric": gate.get("metric"), "gate_value": gate.get("value")})
    return rows


def trained(ctx) -> None:
    from liftlake.lib.artifacts import model_store

    warehouse = warehouse_path(ctx.config)
    for name in _model_names(ctx):
        if ctx.args.history:
            for entry in model_store.promotion_history(warehouse, name):
                if ctx.args.json:
                    print(json.dumps({"model": name, **entry}, default=str))
                else:
                    when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(float(entry.get("unix", 0))))
                    value = entry.get("value")
                    shown = "" if value is None else f" {entry.get('metric')} {value:.4f}"
                    if entry.get("champion_value") is not None:
                        shown += f" (champion {entry['champion']} {entry['champion_value']:.4f})"
                    print(f"{when} {name:<12} {entry['alias']:<10} {entry['from'] or '-':>6} -> {entry['to']:<6} "
                          f"by {entry['by']}{shown}")
            continue
        for row in version_rows(warehouse, name):
            if ctx.args.json:
                print(json.dumps(row, default=str))
            else:
                value = "" if row["gate_value"] is None else f"{row['gate_metric']} {row['gate_value']:.4f}"
                print(f"{name:<12} {row['version']:<6} {','.join(row['aliases']) or '-':<20} {row['created']} "
                      f"days {row['days']} rows {row['rows']} code {(row['code'] or '-')[:10]} {value}")


def _one_model(ctx, job: str) -> str:
    if not ctx.args.model:
        raise ConfigError(f"{job} needs --model NAME")
    return _model_names(ctx)[0]


def promote(ctx, version: str) -> None:
    """Make ``version`` the champion by hand."""
    from liftlake.lib.artifacts import model_store

    warehouse = warehouse_path(ctx.config)
    name = _one_model(ctx, "promote")
    model_store.check_version_name(version, "--version")
    before = model_store.current_version(warehouse, name)
    model_store.set_current(warehouse, name, version, by="promote")
    print(f"{name}: champion {before or '-'} -> {version}")


def rollback(ctx) -> None:
    """The champion goes back to the version that was champion before it was promoted."""
    from liftlake.lib.artifacts import model_store

    warehouse = warehouse_path(ctx.config)
    name = _one_model(ctx, "rollback")
    before = model_store.current_version(warehouse, name)
    target = model_store.rollback_target(warehouse, name)
    model_store.set_current(warehouse, name, target, by="rollback")
    print(f"{name}: champion {before} -> {target} (rolled back)")
