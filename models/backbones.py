"""The backbones a CVR-family tower can stand on (ESCIM IV-A3): MLP, DeepFM, AutoInt, DCN-V2.

Each maps the field embeddings ``[B, F, D]`` of ``layers.FieldEmbedding`` to one representation
vector ``[B, output_dim]``; the model puts its own prediction head (a linear layer, an MMoE arm)
on top. The sizes come from the model's ``Params`` (``hidden_dims``, ``dropout``, ``batch_norm``,
``autoint_layers``, ``autoint_heads``, ``autoint_attention_dim``, ``cross_layers``), so every
CVR model accepts every backbone with one set of keys.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from liftlake.models.layers import MLP, FieldEmbedding

BACKBONES = ("mlp", "deepfm", "autoint", "dcnv2")


@dataclass(frozen=True)
class BackboneConfig:
    """Backbone sizes; defaults follow ESCIM's appendix (AutoInt 3 layers x 2 heads, attention
    size = embedding size; DCN-V2 parallel with 2 cross layers)."""

    hidden_dims: tuple[int, ...] = (64, 64, 32)
    dropout: float = 0.0
    batch_norm: bool = False
    autoint_layers: int = 3
    autoint_heads: int = 2
    autoint_attention_dim: int = 0  # 0: the embedding size
    cross_layers: int = 2

    @classmethod
    def from_params(cls, params: Any) -> "BackboneConfig":
        """Pick the backbone keys out of a model's Params (dataclass, mapping or None)."""
        values = {}
        for f in dataclasses.fields(cls):
            if isinstance(params, Mapping):
                if f.name in params:
                    values[f.name] = params[f.name]
            elif params is not None and hasattr(params, f.name):
                values[f.name] = getattr(params, f.name)
        if "hidden_dims" in values:
            values["hidden_dims"] = tuple(int(h) for h in values["hidden_dims"])
        return cls(**values)


class MLPBackbone(nn.Module):
    """Concatenated embeddings through a feed-forward stack."""

    def __init__(self, num_fields: int, embed_dim: int, config: BackboneConfig):
        super().__init__()
        self.mlp = MLP(num_fields * embed_dim, config.hidden_dims, dropout=config.dropout,
                       batch_norm=config.batch_norm)
        self.output_dim = self.mlp.output_dim

    def forward(self, emb: torch.Tensor) -> torch.Tensor:
        return self.mlp(emb.flatten(start_dim=1))


def fm_pairwise(emb: torch.Tensor) -> torch.Tensor:
    """Second-order FM term sum_{i<j} <e_i, e_j> as 0.5 * ((sum e)^2 - sum e^2), summed over D. [B, 1]"""
    square_of_sum = emb.sum(dim=1).pow(2)
    sum_of_square = emb.pow(2).sum(dim=1)
    return 0.5 * (square_of_sum - sum_of_square).sum(dim=1, keepdim=True)


class DeepFMBackbone(nn.Module):
    """DeepFM: first-order term, FM pairwise interactions and a deep MLP over the same embeddings.

    The representation is [first_order, fm_pairwise, deep]; the head's linear layer adds them up
    (DeepFM's logit is their sum). The first-order weight of an id is a projection of its embedding.
    """

    def __init__(self, num_fields: int, embed_dim: int, config: BackboneConfig):
        super().__init__()
        self.first_order = nn.Linear(num_fields * embed_dim, 1)
        self.deep = MLP(num_fields * embed_dim, config.hidden_dims, dropout=config.dropout,
                        batch_norm=config.batch_norm)
        self.output_dim = 2 + self.deep.output_dim

    def forward(self, emb: torch.Tensor) -> torch.Tensor:
        flat = emb.flatten(start_dim=1)
        return torch.cat([self.first_order(flat), fm_pairwise(emb), self.deep(flat)], dim=1)


class InteractingLayer(nn.Module):
    """AutoInt's multi-head self-attention across fields, with a residual projection and ReLU."""

    def __init__(self, input_dim: int, attention_dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.attention_dim = attention_dim
        out_dim = attention_dim * num_heads
        self.query = nn.Linear(input_dim, out_dim, bias=False)
        self.key = nn.Linear(input_dim, out_dim, bias=False)
        self.value = nn.Linear(input_dim, out_dim, bias=False)
        self.residual = nn.Linear(input_dim, out_dim, bias=False)
        self.output_dim = out_dim

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        batch, fields, _ = h.shape

        def split(t: torch.Tensor) -> torch.Tensor:  # [B, F, H*A] -> [B, H, F, A]
            return t.view(batch, fields, self.num_heads, self.attention_dim).transpose(1, 2)

        q, k, v = split(self.query(h)), split(self.key(h)), split(self.value(h))
        weights = torch.softmax(q @ k.transpose(-1, -2) / self.attention_dim ** 0.5, dim=-1)
        attended = (weights @ v).transpose(1, 2).reshape(batch, fields, self.output_dim)
        return torch.relu(attended + self.residual(h))


class AutoIntBackbone(nn.Module):
    """AutoInt: stacked interacting layers; the representation is the flattened last layer."""

    def __init__(self, num_fields: int, embed_dim: int, config: BackboneConfig):
        super().__init__()
        if config.autoint_layers < 1 or config.autoint_heads < 1:
            raise ValueError("autoint needs autoint_layers >= 1 and autoint_heads >= 1")
        attention_dim = config.autoint_attention_dim or embed_dim
        layers, dim = [], embed_dim
        for _ in range(config.autoint_layers):
            layer = InteractingLayer(dim, attention_dim, config.autoint_heads)
            layers.append(layer)
            dim = layer.output_dim
        self.layers = nn.Sequential(*layers)
        self.dropout = nn.Dropout(config.dropout) if config.dropout > 0 else nn.Identity()
        self.output_dim = num_fields * dim

    def forward(self, emb: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.layers(emb).flatten(start_dim=1))


class CrossLayer(nn.Module):
    """DCN-V2 cross layer: x_{l+1} = x_0 * (W x_l + b) + x_l, with a full-rank W."""

    def __init__(self, dim: int):
        super().__init__()
        self.linear = nn.Linear(dim, dim)

    def forward(self, x0: torch.Tensor, xl: torch.Tensor) -> torch.Tensor:
        return x0 * self.linear(xl) + xl


class DCNV2Backbone(nn.Module):
    """DCN-V2, parallel structure: a cross network and a deep MLP side by side on x_0, concatenated."""

    def __init__(self, num_fields: int, embed_dim: int, config: BackboneConfig):
        super().__init__()
        if config.cross_layers < 1:
            raise ValueError("dcnv2 needs cross_layers >= 1")
        dim = num_fields * embed_dim
        self.cross = nn.ModuleList(CrossLayer(dim) for _ in range(config.cross_layers))
        self.deep = MLP(dim, config.hidden_dims, dropout=config.dropout, batch_norm=config.batch_norm)
        self.output_dim = dim + self.deep.output_dim

    def forward(self, emb: torch.Tensor) -> torch.Tensor:
        x0 = emb.flatten(start_dim=1)
        xl = x0
        for layer in self.cross:
            xl = layer(x0, xl)
        return torch.cat([xl, self.deep(x0)], dim=1)


_CLASSES = {"mlp": MLPBackbone, "deepfm": DeepFMBackbone, "autoint": AutoIntBackbone,
            "dcnv2": DCNV2Backbone}


def build_backbone(name: str, embedding: FieldEmbedding | Sequence[int], params: Any = None) -> nn.Module:
    """The backbone ``name`` over ``embedding``'s fields; ``params`` supplies the sizes.

    ``embedding`` is the model's FieldEmbedding (or a pair ``(num_fields, embed_dim)``).
    """
    if name not in _CLASSES:
        raise ValueError(f"unknown backbone {name!r}; expected one of {', '.join(BACKBONES)}")
    if isinstance(embedding, FieldEmbedding):
        num_fields, embed_dim = embedding.num_fields, embedding.embed_dim
    else:
        num_fields, embed_dim = (int(v) for v in embedding)
    return _CLASSES[name](num_fields, embed_dim, BackboneConfig.from_params(params))
