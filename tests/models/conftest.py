"""Shared by the model tests."""
from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """The tensors here are tiny: one intra-op thread is faster, and steady on a shared 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture()
def adam_steps():
    """``run(model, batch, steps=30, lr=0.01) -> (first, last)``: the total loss before any step and
    the loss of the last step taken, from full-batch Adam steps."""
    def run(model, batch, steps: int = 30, lr: float = 0.01) -> tuple[float, float]:
        opt = torch.optim.Adam(model.parameters(), lr=lr)
        first = model.compute_loss(batch, model(batch)).total.item()
        for _ in range(steps):
            loss = model.compute_loss(batch, model(batch)).total
            opt.zero_grad()
            loss.backward()
            opt.step()
        return first, loss.item()

    return run
