"""How table columns become a model batch and predictions: the batch layout (which columns feed which
task), numpy columns to the model's dict of tensors, and the forward passes over a day's columns.

Torch and numpy alone (no Spark): a training rank, a scoring worker and the device bench
(bench/device.py, on a GPU machine without Spark) use the same conversion."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class BatchLayout:
    """How table columns become a model batch, without the training settings."""
    task: str
    feature_columns: list[str]
    num_responses: int = 2
    num_treatments: int = 2
    cf_label_column: str | None = None


def batch_columns(plan) -> list[str]:
    if plan.task == "cvr":
        cols = ["click", "conversion"] + (["cf_label"] if plan.cf_label_column else [])
    elif plan.task == "coupon":
        cols = ["treated", "intensity", "outcome", "rct_coupon"]
    else:
        cols = ["treatment_id", "rct_treatment"] + [f"response_{r}" for r in range(1, plan.num_responses + 1)] \
            + [f"value_share_{r}" for r in range(1, plan.num_responses + 1)]
    return plan.feature_columns + cols + ["row_id"]


def to_batch(columns: dict[str, np.ndarray], plan, device: torch.device | str = "cpu") -> dict:
    """Numpy columns -> the model's dict batch (models/base.py names), on ``device``.

    ``plan`` is anything with task, feature_columns, cf_label_column, num_responses and
    num_treatments: a TrainPlan, or a BatchLayout at scoring time."""
    x = np.stack([np.asarray(columns[c], dtype=np.int64) for c in plan.feature_columns], axis=1)
    batch = {"x": torch.from_numpy(x)}

    def f(name):
        return torch.from_numpy(np.asarray(columns[name], dtype=np.float32))

    if plan.task == "cvr":
        batch["click"], batch["conversion"] = f("click"), f("conversion")
        if plan.cf_label_column:
            batch["cf_label"] = f("cf_label")
    elif plan.task == "coupon":
        batch.update(treated=f("treated"), intensity=f("intensity"), outcome=f("outcome"), rct=f("rct_coupon"))
    else:
        r = range(1, plan.num_responses + 1)
        batch["treatment_id"] = torch.from_numpy(np.asarray(columns["treatment_id"], dtype=np.int64))
        batch["responses"] = torch.stack([f(f"response_{i}") for i in r], dim=1)
        batch["value_shares"] = torch.stack([f(f"value_share_{i}") for i in r], dim=1)
        batch["rct"] = f("rct_treatment")
    return {k: v.to(device) for k, v in batch.items()}


def model_device(model: torch.nn.Module) -> torch.device:
    """Where the model's parameters are (the CPU for a model without any)."""
    return next((p.device for p in model.parameters()), torch.device("cpu"))


def predict_frame(model, layout: BatchLayout, columns: dict[str, np.ndarray], batch_size: int = 65536) -> dict:
    """The model's predictions over numpy columns, ``batch_size`` rows a forward pass on the device the
    model is on, as numpy arrays by output name."""
    device = model_device(model)
    n = len(columns[layout.feature_columns[0]])
    out: dict[str, list] = {}
    with torch.no_grad():
        for start in range(0, n, batch_size):
            part = {c: v[start:start + batch_size] for c, v in columns.items()}
            for k, v in model.predict(to_batch(part, layout, device)).items():
                out.setdefault(k, []).append(v.cpu().numpy())
    return {k: np.concatenate(v) for k, v in out.items()}
