"""Backbones of the CVR family: shapes, gradients, and each interaction layer against arithmetic by hand."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from liftlake.models.backbones import AutoIntBackbone, BackboneConfig, CrossLayer, build_backbone, fm_pairwise
from liftlake.models.layers import FieldEmbedding

FIELD_DIMS = [5, 4, 3]
EMBED = 6
SIZES = {"hidden_dims": [8, 4], "autoint_layers": 2, "autoint_heads": 2, "cross_layers": 2}




@pytest.mark.parametrize("name, expected_dim", [
    ("mlp", 4),                    # last hidden layer
    ("deepfm", 1 + 1 + 4),         # first order + FM pairwise + deep
    ("autoint", 3 * 2 * EMBED),    # fields x heads x attention size (= embedding size)
    ("dcnv2", 3 * EMBED + 4),      # cross output (= x0 width) + deep
])
def test_backbone_output_width_and_gradient_to_embedding(name, expected_dim):
    torch.manual_seed(0)
    embedding = FieldEmbedding(FIELD_DIMS, EMBED)
    backbone = build_backbone(name, embedding, SIZES)
    x = torch.tensor([[0, 1, 2], [4, 3, 0], [2, 2, 1]])
    rep = backbone(embedding(x))
    assert backbone.output_dim == expected_dim
    assert rep.shape == (3, expected_dim)
    rep.pow(2).sum().backward()
    assert embedding.embedding.weight.grad.abs().sum() > 0


def test_unknown_backbone_is_a_clear_value_error():
    with pytest.raises(ValueError, match="unknown backbone 'resnet'.*mlp, deepfm, autoint, dcnv2"):
        build_backbone("resnet", FieldEmbedding(FIELD_DIMS, EMBED), SIZES)


def test_backbone_config_reads_a_params_dataclass_and_a_mapping():
    from liftlake.models.cvr_base import CvrParams

    cfg = BackboneConfig.from_params(CvrParams(hidden_dims=(7,), cross_layers=3))
    assert cfg.hidden_dims == (7,) and cfg.cross_layers == 3 and cfg.autoint_heads == 2
    assert BackboneConfig.from_params({"hidden_dims": [3, 2]}).hidden_dims == (3, 2)
    assert build_backbone("mlp", (2, 3), {"hidden_dims": []}).output_dim == 6  # no layers: flat embeddings


def test_fm_pairwise_is_the_sum_of_field_pair_dot_products():
    e = np.array([[[1.0, 2.0], [0.5, -1.0], [3.0, 0.0]]])
    by_hand = (1 * 0.5 + 2 * -1.0) + (1 * 3 + 2 * 0) + (0.5 * 3 + -1.0 * 0)  # <e1,e2> + <e1,e3> + <e2,e3>
    assert fm_pairwise(torch.tensor(e)).item() == pytest.approx(by_hand)


def test_cross_layer_is_x0_times_linear_of_xl_plus_xl():
    layer = CrossLayer(2)
    with torch.no_grad():
        layer.linear.weight.copy_(torch.tensor([[1.0, 2.0], [0.0, -1.0]]))
        layer.linear.bias.copy_(torch.tensor([0.5, 1.0]))
    x0, xl = np.array([2.0, 3.0]), np.array([1.0, -1.0])
    w, b = np.array([[1.0, 2.0], [0.0, -1.0]]), np.array([0.5, 1.0])
    by_hand = x0 * (w @ xl + b) + xl  # [2 * (-1 + 0.5) + 1, 3 * (1 + 1) - 1] = [0, 5]
    got = layer(torch.tensor(x0[None], dtype=torch.float32), torch.tensor(xl[None], dtype=torch.float32))
    np.testing.assert_allclose(got.detach().numpy()[0], by_hand, rtol=1e-6)


def test_autoint_layer_is_softmax_attention_over_fields():
    # One layer, one head, identity query / key / value, no residual: relu(softmax(E E^T / sqrt(d)) E).
    backbone = AutoIntBackbone(2, 2, BackboneConfig(autoint_layers=1, autoint_heads=1))
    layer = backbone.layers[0]
    with torch.no_grad():
        for lin in (layer.query, layer.key, layer.value):
            lin.weight.copy_(torch.eye(2))
        layer.residual.weight.zero_()
    e = np.array([[1.0, 0.0], [0.0, 2.0]])
    scores = e @ e.T / math.sqrt(2)
    weights = np.exp(scores) / np.exp(scores).sum(axis=1, keepdims=True)
    by_hand = np.maximum(weights @ e, 0).reshape(-1)
    got = backbone(torch.tensor(e, dtype=torch.float32).unsqueeze(0))[0]
    np.testing.assert_allclose(got.detach().numpy(), by_hand, rtol=1e-5)
