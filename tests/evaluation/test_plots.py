"""PNG writers: a real PNG of non-trivial size lands at the path returned; bad input is refused."""
from __future__ import annotations

import os

import numpy as np
import pytest

from liftlake.lib.evaluation.plots import (
    SHARES,
    gain_on_shares,
    plot_cumulative_slope,
    plot_gain_band,
    plot_label_rate_sweep,
    plot_qini_curves,
    plot_uplift_curves,
)
from liftlake.lib.evaluation.truth_metrics import true_uplift_curve
from liftlake.lib.evaluation.uplift_metrics import cumulative_slope_curve, global_slope, qini_curve, uplift_curve

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _assert_png(path: str) -> None:
    assert os.path.isfile(path)
    with open(path, "rb") as handle:
        head = handle.read(8)
    assert head == PNG_MAGIC
    assert os.path.getsize(path) > 5_000  # axes, lines and text, not an empty canvas


@pytest.fixture(scope="module")
def rct():
    rng = np.random.default_rng(0)
    n = 2000
    x = rng.normal(size=n)
    w = rng.binomial(1, 0.5, n)
    y = rng.binomial(1, 0.2 + 0.1 * w * (x > 0))
    return x, w, y, rng


def test_uplift_and_qini_curves(tmp_path, rct):
    x, w, y, rng = rct
    models = {"oracle-ish": x, "random": rng.normal(size=x.size)}
    uplift = {name: uplift_curve(y, score, w) for name, score in models.items()}
    qini = {name: qini_curve(y, score, w) for name, score in models.items()}
    target = tmp_path / "nested" / "uplift.png"  # parent folder is created
    written = plot_uplift_curves(uplift, target, title="Uplift, treatment 1")
    assert written == str(target)
    _assert_png(written)
    _assert_png(plot_qini_curves(qini, str(tmp_path / "qini.png"), title="Qini"))


def test_gain_on_shares_by_hand():
    # 4 users, true effects 3, 1, 0, 0 in score order: G = 0, 3, 4, 4, 4 at k = 0..4; per user / 4
    curve = gain_on_shares(*true_uplift_curve([4, 3, 2, 1], [3, 1, 0, 0]))
    assert curve[0] == 0.0 and curve[25] == pytest.approx(0.75) and curve[50] == pytest.approx(1.0)
    assert curve[-1] == pytest.approx(1.0) and curve[10] == pytest.approx(0.3)  # 0.4 users in: 0.4 * 3 / 4
    # a constant score ranks nobody: the straight line of random targeting
    np.testing.assert_allclose(gain_on_shares(*true_uplift_curve([0, 0, 0, 0], [3, 1, 0, 0])), SHARES * 1.0)
    with pytest.raises(ValueError, match="positive number of users"):
        gain_on_shares([0.0], [0.0])


def test_gain_band_over_seeds(tmp_path):
    rng = np.random.default_rng(1)
    per_seed = {"model": [], "oracle": [], "random": []}
    for _ in range(3):
        tau = rng.normal(0.02, 0.01, 500)
        per_seed["model"].append(gain_on_shares(*true_uplift_curve(tau + rng.normal(0, 0.01, 500), tau)))
        per_seed["oracle"].append(gain_on_shares(*true_uplift_curve(tau, tau)))
        per_seed["random"].append(gain_on_shares(*true_uplift_curve(np.zeros(500), tau)))
    _assert_png(plot_gain_band(per_seed, tmp_path / "gain.png", title="true gain", ylabel="extra outcomes per user"))
    with pytest.raises(ValueError, match="not 101"):
        plot_gain_band({"model": [np.zeros(5)]}, tmp_path / "bad.png", title="t", ylabel="y")


def test_a_library_s_global_style_does_not_change_the_figures(tmp_path):
    """CausalML sets matplotlib's fivethirtyeight style when imported; the report's figures must be
    drawn the same with or without it (under that style their titles and labels were cut off)."""
    import matplotlib.style

    curves = {"model": [np.linspace(0, 1, SHARES.size)], "oracle": [np.sqrt(SHARES)], "random": [SHARES]}
    title, ylabel = ("syn1: true gain of targeting by each model, all test users",
                     "true extra outcomes per user, per unit of coupon value")
    plain = plot_gain_band(curves, tmp_path / "plain.png", title=title, ylabel=ylabel)
    with matplotlib.style.context("fivethirtyeight"):
        styled = plot_gain_band(curves, tmp_path / "styled.png", title=title, ylabel=ylabel)
    with open(plain, "rb") as a, open(styled, "rb") as b:
        assert a.read() == b.read()


def test_cumulative_slope(tmp_path, rct):
    x, _, _, rng = rct
    dose = rng.choice([0.0, 1.0, 2.5, 4.0], size=x.size)
    clicks = rng.binomial(1, 0.2 + 0.03 * dose * (x > 0))
    curves = {"true ranking": cumulative_slope_curve(clicks, dose, x),
              "random": cumulative_slope_curve(clicks, dose, rng.normal(size=x.size))}
    written = plot_cumulative_slope(curves, tmp_path / "cs.png", global_slope=global_slope(clicks, dose),
                                    n_rows=x.size)
    _assert_png(written)


def test_label_rate_sweep(tmp_path):
    rates = [0.001, 0.01, 0.1]
    written = plot_label_rate_sweep({"CVR AUC": (rates, [0.60, 0.62, 0.58]), "CTCVR AUC": (rates, [0.70, 0.71, 0.69])},
                                    tmp_path / "sweep.png", markers={"max": 0.004, "ratio": 0.02})
    _assert_png(written)
    with pytest.raises(ValueError, match="> 0"):
        plot_label_rate_sweep({"CVR AUC": ([0.0, 0.1], [0.5, 0.6])}, tmp_path / "zero.png")


def test_bad_input_is_refused(tmp_path):
    with pytest.raises(ValueError, match="nothing to plot"):
        plot_uplift_curves({}, tmp_path / "empty.png")
    with pytest.raises(ValueError, match="mismatched lengths"):
        plot_qini_curves({"m": ([0, 1, 2], [0, 1])}, tmp_path / "bad.png")
    assert not (tmp_path / "bad.png").exists()
