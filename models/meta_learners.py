"""Meta-learners over a neural base learner: S-Learner (one network on [x, treatment]) and
T-Learner (one network per arm)."""
from __future__ import annotations

import torch
from torch import nn

from liftlake.models.layers import MLP, FieldEmbedding
from liftlake.models.registry import register
from liftlake.models.uplift_base import BaselineParams, UpliftBaseline, select_arm


@register("s_learner")
class SLearner(UpliftBaseline):
    """One network on [x, treatment]; the effect is the difference of two of its predictions."""

    registry_name = "s_learner"
    Params = BaselineParams

    def __init__(self, field_dims, params):
        super().__init__(field_dims, params)
        self.net = MLP(self.embedding.output_dim + self.treatment_dim, params.hidden_dims,
                       self.out_dim, params.dropout)

    def encode(self, x):
        return {"e": self.embedding.flat(x)}

    def outcome(self, rep, arm):
        return self.net(torch.cat([rep["e"], self.treatment_features(arm)], dim=-1))


@register("t_learner")
class TLearner(UpliftBaseline):
    """Independent networks (embedding included) per arm, each fit on its own arm's rows."""

    registry_name = "t_learner"
    Params = BaselineParams

    def __init__(self, field_dims, params):
        super().__init__(field_dims, params)
        # arm 0 reuses self.embedding; every other arm gets its own table.
        self.arm_embeddings = nn.ModuleList(FieldEmbedding(field_dims, params.embed_dim)
                                            for _ in range(self.num_arms - 1))
        dim = self.embedding.output_dim
        self.nets = nn.ModuleList()
        for a in range(self.num_arms):
            extra = self.treatment_dim if (self.is_coupon and a == 1) else 0
            self.nets.append(MLP(dim + extra, params.hidden_dims, self.out_dim, params.dropout))

    def encode(self, x):
        rep = {"e0": self.embedding.flat(x)}
        for a, emb in enumerate(self.arm_embeddings, start=1):
            rep[f"e{a}"] = emb.flat(x)
        return rep

    def outcome(self, rep, arm):
        outs = []
        for a, net in enumerate(self.nets):
            inp = rep[f"e{a}"]
            if self.is_coupon and a == 1:
                inp = torch.cat([inp, self.treatment_features(arm)], dim=-1)
            outs.append(net(inp))
        return select_arm(outs, self.arm_group(arm))
