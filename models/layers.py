"""Layers every model family shares: field embeddings, MLP towers, MMoE.

Inputs are the encoded categorical fields of the feature spec: a LongTensor ``x`` of shape
[batch, num_fields] whose column f holds an index in ``[0, field_dims[f])`` (0 is the
out-of-vocabulary bucket the feature job reserves).
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn


class FieldEmbedding(nn.Module):
    """One embedding table for all fields, each field offset into its own slice."""

    def __init__(self, field_dims: Sequence[int], embed_dim: int):
        super().__init__()
        if not field_dims or min(field_dims) < 1:
            raise ValueError(f"field_dims must be non-empty positive vocabulary sizes, got {list(field_dims)}")
        self.field_dims = [int(d) for d in field_dims]
        self.embed_dim = int(embed_dim)
        self.embedding = nn.Embedding(sum(self.field_dims), self.embed_dim)
        offsets = torch.tensor([0, *torch.cumsum(torch.tensor(self.field_dims), 0)[:-1].tolist()], dtype=torch.long)
        self.offsets: torch.Tensor
        self.register_buffer("offsets", offsets, persistent=False)
        nn.init.xavier_uniform_(self.embedding.weight)

    @property
    def num_fields(self) -> int:
        return len(self.field_dims)

    @property
    def output_dim(self) -> int:
        return self.num_fields * self.embed_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, F] indices -> [B, F, D] embeddings."""
        return self.embedding(x + self.offsets)

    def flat(self, x: torch.Tensor) -> torch.Tensor:
        """[B, F] indices -> [B, F*D], the usual MLP input."""
        return self.forward(x).flatten(start_dim=1)


class MLP(nn.Module):
    """Linear -> (BatchNorm) -> activation -> dropout blocks, optionally closed by a linear output."""

    def __init__(
        self,
        input_dim: int,
        hidden_dims: Sequence[int],
        output_dim: int | None = None,
        dropout: float = 0.0,
        batch_norm: bool = False,
        activation: type[nn.Module] = nn.ReLU,
    ):
        super().__init__()
        layers: list[nn.Module] = []
        dim = int(input_dim)
        for hidden in hidden_dims:
            layers.append(nn.Linear(dim, int(hidden)))
            if batch_norm:
                layers.append(nn.BatchNorm1d(int(hidden)))
            layers.append(activation())
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            dim = int(hidden)
        if output_dim is not None:
            layers.append(nn.Linear(dim, int(output_dim)))
            dim = int(output_dim)
        self.output_dim: int = dim
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class MMoE(nn.Module):
    """Multi-gate mixture of experts: shared expert MLPs, one softmax gate per task.

    Returns a list with one [B, expert_dim] mixture per task.
    """

    def __init__(
        self,
        input_dim: int,
        num_experts: int,
        expert_dims: Sequence[int],
        num_tasks: int,
        dropout: float = 0.0,
    ):
        super().__init__()
        if num_experts < 1 or num_tasks < 1:
            raise ValueError("MMoE needs at least one expert and one task")
        self.experts = nn.ModuleList(MLP(input_dim, expert_dims, dropout=dropout) for _ in range(num_experts))
        self.gates = nn.ModuleList(nn.Linear(input_dim, num_experts) for _ in range(num_tasks))
        self.output_dim: int = int(expert_dims[-1]) if expert_dims else int(input_dim)  # the experts' width

    def gate_weights(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [torch.softmax(gate(x), dim=-1) for gate in self.gates]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        expert_out = torch.stack([expert(x) for expert in self.experts], dim=1)  # [B, E, D]
        return [torch.einsum("be,bed->bd", w, expert_out) for w in self.gate_weights(x)]
