"""The ESCIM labeler's fit sample: drawn from the train split of the window's days (under the models'
split rule), at a fraction taken against those rows (not against every split, which left the sample
short of its cap). A labeler loaded for labelling has its subnormal weights flushed to zero, as a
model the store loads."""
from __future__ import annotations

from liftlake.lib.artifacts.escim_labeler import fit_sample

DAYS = ["2026-11-01", "2026-11-02"]


def window(spark):
    # each day: 300 train rows (f0 = 0..299), then 700 valid / test rows (f0 = 300..999)
    rows = [(ds, "train" if i < 300 else ("valid" if i < 650 else "test"), i, i % 2, 0)
            for ds in DAYS for i in range(1000)]
    return spark.createDataFrame(rows, "ds string, split string, f0 int, click int, conversion int")


def test_the_sample_fraction_is_taken_over_the_train_rows_it_samples_from(spark):
    pdf, rows, fraction = fit_sample(window(spark), DAYS, ["f0"], 300, seed=0)
    # 600 train rows in the window: half of them, not 300 / 2000 of them (every split counted)
    assert (rows, fraction) == (600, 0.5)
    assert 240 <= len(pdf) <= 300, len(pdf)  # a Bernoulli sample of ~300, cut at the cap
    assert list(pdf.columns) == ["f0", "click", "conversion"] and pdf["f0"].max() < 300


def test_a_window_under_the_cap_is_taken_whole(spark):
    pdf, rows, fraction = fit_sample(window(spark), DAYS[1:], ["f0"], 500, seed=0)
    assert (rows, fraction, len(pdf)) == (300, 1.0, 300)
    assert sorted(pdf["f0"]) == list(range(300))


def test_under_the_day_split_the_labeler_never_sees_the_test_day(spark):
    # train.split_by=day: the last day is the models' test set, so the labeler leaves it out too; the
    # earlier day's user-hash test rows train (as the models' do), its valid rows stay out
    pdf, rows, fraction = fit_sample(window(spark), DAYS, ["f0"], 1000, seed=0, split_by="day")
    assert (rows, fraction, len(pdf)) == (650, 1.0, 650)
    assert sorted(pdf["f0"]) == list(range(300)) + list(range(650, 1000))


def test_a_loaded_labeler_has_its_subnormal_weights_flushed_and_the_rest_kept(tmp_path):
    import dataclasses
    import json
    import os

    import torch

    from liftlake.lib.artifacts.escim_labeler import _load_labeler, labeler_dir
    from liftlake.models.escim_labeler import CounterfactualLabeler, EscimLabelParams

    params, field_dims = EscimLabelParams(outcome_dims=(8,), encoder_dims=(8,), decoder_dims=(8,)), [10, 5]
    weights = CounterfactualLabeler(field_dims, params).state_dict()
    layer = next(k for k, v in weights.items() if k.endswith("weight") and v.dim() == 2)
    original = weights[layer].clone()
    weights[layer][0, :3] = torch.tensor([1e-40, -3e-39, 2e-38])  # two subnormal, one the smallest normals' order
    folder = os.path.join(labeler_dir(str(tmp_path)), "v0001")
    os.makedirs(folder)
    torch.save(weights, os.path.join(folder, "weights.pt"))
    with open(os.path.join(folder, "labeler.json"), "w", encoding="utf-8") as fh:
        json.dump({"params": dataclasses.asdict(params), "field_dims": field_dims}, fh)
    loaded = _load_labeler(str(tmp_path), "v0001").state_dict()[layer]
    assert loaded[0, :3].tolist() == [0.0, 0.0, torch.tensor(2e-38).item()]
    assert torch.equal(loaded[1:], original[1:]) and torch.equal(loaded[0, 3:], original[0, 3:])
