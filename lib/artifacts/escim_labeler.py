"""ESCIM's counterfactual labeler as an artifact under ``<warehouse>/_models/_escim_labeler``: fitted on a bounded
sample of the window, saved with a claimed version, loaded once per Python worker."""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
from typing import Any

import numpy as np
import pandas as pd
import torch
from pyspark.sql import functions as F

from liftlake.lib.artifacts.feature_specs import load_spec
from liftlake.lib.artifacts.model_store import flush_subnormal_weights
from liftlake.lib.artifacts.publish import new_staging, publish_next_version
from liftlake.lib.cli.runner import InputError
from liftlake.lib.config import ConfigError, warehouse_path
from liftlake.lib.days import window_days
from liftlake.lib.features.spec import spec_versions_by_day
from liftlake.lib.training.trainset import window_split

logger = logging.getLogger(__name__)

# one labeler per Python worker and version: the executors label many batches of a day with it
_LABELER_CACHE: dict[str, object] = {}


def labeler_dir(warehouse: str) -> str:
    return os.path.join(warehouse, "_models", "_escim_labeler")


def fit_sample(window, days: list[str], cols: list[str], max_rows: int, seed: int,
               split_by: str = "user") -> tuple[pd.DataFrame, int, float]:
    """(pandas sample, rows sampled from, fraction): about ``max_rows`` rows of the train split of
    ``days`` under the models' own rule (train.split_by: with "day" the last day is a test day, so the
    labeler never sees it either), with the columns the labeler reads. The fraction is taken against
    the rows it samples from -- the train split of those days, not every split -- so the sample
    reaches the cap."""
    train = window.where(F.col("ds").isin(days) & (window_split(days, split_by) == "train"))
    rows = train.count()
    fraction = min(1.0, max_rows / max(rows, 1))
    pdf = train.sample(fraction=fraction, seed=seed).select(*cols, "click", "conversion").limit(max_rows).toPandas()
    return pdf, rows, fraction


def labeler_params(config):
    """``escim_labels.params`` as EscimLabelParams; an unknown key or a bad value is a ConfigError
    naming the key, raised before any data is read."""
    from liftlake.models.escim_labeler import EscimLabelParams

    given = dict(config.escim_labels.params)
    known = {f.name for f in dataclasses.fields(EscimLabelParams)}
    unknown = sorted(set(given) - known)
    if unknown:
        raise ConfigError(f"escim_labels.params.{unknown[0]}: unknown key (known: {', '.join(sorted(known))})")
    for key, value in given.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"escim_labels.params.{key}: must be finite, got {value}")
    try:
        return EscimLabelParams(**given)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"escim_labels.params: {exc}") from None


def fit_and_save_labeler(store, config, ds: str) -> tuple[str, object, str]:
    """(labeler version, labeler, feature spec version): fitted on the window's days encoded with the
    spec of its last day (the labeler's embeddings index that spec's vocabularies)."""
    from liftlake.models.escim_labeler import fit_counterfactual_labeler

    params = labeler_params(config)
    warehouse = warehouse_path(config)
    have = store.partition_counts("features.samples")
    days = [d for d in window_days(ds, config.escim_labels.window_days) if d in have]
    if not days:
        raise InputError(f"table features.samples has no partition in the window ending {ds}")
    version_read = store.version("features.samples")
    window = store.read("features.samples", version=version_read, partitions=days)
    specs = spec_versions_by_day(window)
    if len(specs[days[-1]]) != 1:
        raise InputError(f"table features.samples: ds={days[-1]} mixes feature specs {sorted(specs[days[-1]])} "
                         f"(rule: one spec per day; rebuild the day's features)")
    spec = load_spec(warehouse, next(iter(specs[days[-1]])))
    other = [d for d in days if specs[d] != {spec.version}]
    if other:
        logger.info(f"escim labeler: leaving out {other}: encoded with another feature spec than {spec.version}")
        days = [d for d in days if d not in other]
    cols = spec.columns("exposure")
    pdf, train_rows, fraction = fit_sample(window, days, cols, config.escim_labels.max_fit_rows, config.train.seed,
                                           config.train.split_by)
    if not train_rows:
        raise InputError(f"table features.samples: no train rows to fit the ESCIM labeler on in {days[0]}..{days[-1]} "
                         f"under train.split_by={config.train.split_by} (rule: with split_by=day the window's last day "
                         "is held out, so escim_labels.window_days must reach an earlier day)")
    x = torch.from_numpy(np.stack([pdf[c].to_numpy(np.int64) for c in cols], axis=1))
    labeler = fit_counterfactual_labeler(x, torch.from_numpy(pdf["click"].to_numpy(np.float32)),
                                         torch.from_numpy(pdf["conversion"].to_numpy(np.float32)),
                                         spec.field_dims("exposure"), params, log=logger.info)
    folder = labeler_dir(warehouse)
    staging = new_staging(folder)  # this job's own: two jobs fitting at once never share a folder
    torch.save(labeler.state_dict(), os.path.join(staging, "weights.pt"))
    with open(os.path.join(staging, "labeler.json"), "w", encoding="utf-8") as fh:
        json.dump({"params": dataclasses.asdict(params), "field_dims": spec.field_dims("exposure"),
                   "feature_spec": spec.version, "fit_days": days, "fit_rows": len(pdf),
                   "train_rows": train_rows, "sample_fraction": fraction, "split_by": config.train.split_by,
                   "features.samples version": version_read}, fh, indent=1)
    version = publish_next_version(folder, staging)
    logger.info(f"escim labeler {version} fitted on {len(pdf)} sampled rows of {train_rows} train rows "
        f"(fraction {fraction:.4g}) of {days[0]}..{days[-1]} (feature spec {spec.version})")
    return version, labeler, spec.version


def _load_labeler(warehouse: str, version: str):
    key = f"{warehouse}|{version}"
    if key not in _LABELER_CACHE:
        from liftlake.models.escim_labeler import CounterfactualLabeler, EscimLabelParams

        torch.set_num_threads(1)
        folder = os.path.join(labeler_dir(warehouse), version)
        with open(os.path.join(folder, "labeler.json"), encoding="utf-8") as fh:
            meta = json.load(fh)
        # settings a labeler was saved with that these params no longer have (training settings
        # renamed since) do not matter to its weights: they are left out
        known = {f.name for f in dataclasses.fields(EscimLabelParams)}
        params: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v
                                  for k, v in meta["params"].items() if k in known}
        labeler = CounterfactualLabeler(meta["field_dims"], EscimLabelParams(**params))
        labeler.load_state_dict(torch.load(os.path.join(folder, "weights.pt"), map_location="cpu", weights_only=True))
        flush_subnormal_weights(labeler)  # as every model the store loads: a CPU multiplies them 20-60x slower
        labeler.eval()
        _LABELER_CACHE[key] = labeler
    return _LABELER_CACHE[key]

