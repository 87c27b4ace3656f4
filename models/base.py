"""What every liftlake model is: a torch module over a dict batch, with its loss beside it.

Batch keys (tensors, first dimension the batch):
  x             long  [B, F]  encoded categorical fields of the feature spec
  click         float [B]     exposure clicked (CVR family)
  conversion    float [B]     converted (CVR family; 0 where not clicked)
  cf_label      float [B]     ESCIM counterfactual conversion label (ESCIM only)
  treated       float [B]     coupon given, w (uplift, UniMVT)
  intensity     float [B]     coupon face value t, 0 where untreated (UniMVT)
  outcome       float [B]     binary response to the coupon (UniMVT)
  treatment_id  long  [B]     0 = control, 1..K = strategy (HMUM)
  responses     float [B, R]  continuous responses (HMUM)
  rct           float [B]     1 on the randomized slice
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field

import torch
from torch import nn


class BadBatchError(ValueError):
    """A batch that a model cannot learn from (NaN features, labels outside {0,1}, ...)."""


@dataclass
class LossOutput:
    total: torch.Tensor
    parts: dict[str, torch.Tensor] = field(default_factory=dict)


def in_eval_mode(method):
    """Decorator for a model's scoring methods (``predict``, ``prob_at``): run without gradients and
    in eval mode (no dropout, running batch-norm statistics), then put the module back in the mode
    it was in, so that scoring in the middle of training changes nothing."""

    @functools.wraps(method)
    def run(self, *args, **kwargs):
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                return method(self, *args, **kwargs)
        finally:
            self.train(was_training)

    return run


class LiftlakeModel(nn.Module):
    """Base class. Subclasses set ``family``, ``batch_keys`` and implement forward / compute_loss / predict."""

    family: str = ""
    batch_keys: tuple[str, ...] = ("x",)
    binary_keys: tuple[str, ...] = ()

    def __init__(self, field_dims, params):
        super().__init__()
        self.field_dims = list(field_dims)
        self.params = params

    def check_batch(self, batch: dict[str, torch.Tensor]) -> None:
        """Refuse a batch with missing keys, out-of-range ids, non-finite values or non-binary labels."""
        missing = [k for k in self.batch_keys if k not in batch]
        if missing:
            raise BadBatchError(f"{type(self).__name__}: batch is missing {missing}")
        x = batch["x"]
        if x.dtype not in (torch.int64, torch.int32):
            raise BadBatchError(f"x must hold integer feature ids, got {x.dtype}")
        if x.dim() != 2 or x.shape[1] != len(self.field_dims):
            raise BadBatchError(f"x must be [batch, {len(self.field_dims)}], got {list(x.shape)}")
        dims = torch.tensor(self.field_dims, device=x.device)
        if (x < 0).any() or (x >= dims).any():
            raise BadBatchError("x holds a feature id outside its field's vocabulary")
        for key in self.batch_keys:
            value = batch[key]
            if value.is_floating_point() and not torch.isfinite(value).all():
                raise BadBatchError(f"{key} holds NaN or inf")
        for key in self.binary_keys:
            value = batch[key]
            if not ((value == 0) | (value == 1)).all():
                raise BadBatchError(f"{key} must be 0 or 1")

    def compute_loss(self, batch: dict[str, torch.Tensor], out: dict[str, torch.Tensor]) -> LossOutput:
        raise NotImplementedError

    @torch.no_grad()
    def predict(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Scoring outputs, one [B] tensor per output column."""
        raise NotImplementedError
