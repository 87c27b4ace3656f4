"""Which models score which days, and the writes: the body of ``liftlake score``."""
from __future__ import annotations

import dataclasses
import logging

from liftlake.lib.artifacts.model_store import current_version, versions
from liftlake.lib.cli.runner import InputError
from liftlake.lib.config import ConfigError, warehouse_path
from liftlake.lib.log import log_commits
from liftlake.lib.scoring.scorer import bad_scores_message, score_and_write

logger = logging.getLogger(__name__)


def models_to_score(warehouse: str, configured: list[str], only_model: str | None, version: str | None):
    """[(name, version)]: the named version, else each model's CURRENT (models without one are left
    out, unless named)."""
    from liftlake.models.catalog import sorted_names

    if version and not only_model:
        raise ConfigError("--version needs --model")
    names = [only_model] if only_model else (configured or [name for name, _ in sorted_names()])
    chosen = []
    for name in names:
        v = version or current_version(warehouse, name)
        if v is None:
            if only_model:
                raise ConfigError(f"model {name} has no CURRENT version (versions: {versions(warehouse, name)})")
            continue
        chosen.append((name, v))
    return chosen


SCORE_TABLES = ("scores.cvr", "scores.uplift_user")


def recorded_versions(store, days: list[str]) -> dict[tuple[str, str], set[str]]:
    """{(ds, model): the versions whose rows the scores tables hold for that day}: from the Delta log's
    file statistics (a scores write is one model version, so each file holds one); a day whose
    statistics cannot say is read, one distinct row per (model, version) reaching the driver."""
    found: dict[tuple[str, str], set[str]] = {}
    for table in SCORE_TABLES:
        if not store.exists(table):
            continue
        from_log = store.values_from_stats(table, ["model", "version"], days)
        triples = [(ds, model, version) for ds, pairs in from_log.items() for model, version in pairs or ()]
        unread = [ds for ds, pairs in from_log.items() if pairs is None]
        if unread:
            triples += store.read(table, partitions=unread).select("ds", "model", "version").distinct().collect()
        for ds, model, version in triples:
            found.setdefault((ds, model), set()).add(version)
    return found


def version_for_day(name: str, current: str, ds: str, recorded: dict[tuple[str, str], set[str]],
                    explicit: bool, rescore: str) -> str:
    """The version that scores ``name`` on ``ds``: the one named (--version), else the one that scored
    the day before (score.rescore = recorded), else CURRENT."""
    before = recorded.get((ds, name), set())
    if explicit or rescore == "current" or not before:
        return current
    if len(before) > 1:  # a write replaces (ds, model) whole, so only a hand-made table gets here
        raise InputError(f"scores of {name} on ds={ds} hold versions {sorted(before)} (rule: one version scores "
                         f"a day); re-score it with --model {name} --version or score.rescore=current")
    (old,) = before
    if old != current:
        logger.info(f"score {ds}: {name} re-scored with {old}, the version that scored the day before "
                    f"(CURRENT is {current}; score.rescore=current or --version to change it)")
    return old


def score_days(ctx, only_model: str | None = None, version: str | None = None) -> dict:
    config = ctx.config
    warehouse = warehouse_path(config)
    chosen = models_to_score(warehouse, config.score.models, only_model, version)
    if not chosen:
        logger.info("score: no model has a CURRENT version yet; nothing to score")
        return {}
    recorded = recorded_versions(ctx.store, ctx.days) if not version and config.score.rescore == "recorded" else {}
    summary = {}
    with ctx.store.commit_together() as batch:  # scores.cvr and scores.uplift_user: both or neither
        for ds in ctx.days:
            for name, current in chosen:
                v = version_for_day(name, current, ds, recorded, bool(version), config.score.rescore)
                try:
                    res = score_and_write(ctx.store, warehouse, name, v, ds, dataclasses.asdict(config.score),
                                          config.data.num_responses, config.data.num_treatments)
                except Exception as exc:  # noqa: BLE001 - a worker's score check fails the Spark job
                    message = bad_scores_message(exc)
                    if message is None:
                        raise
                    raise InputError(message) from None
                summary[(ds, res.table, name)] = res.rows
                logger.info(f"score {ds}: {res.table} {name} {v} rows={res.rows} staged")
    log_commits(logger, "score", batch.results)
    return summary
