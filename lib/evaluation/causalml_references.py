"""CausalML's uplift learners as outside references for the uplift tables of the evidence report:
fitted on a world's train rows and predicting its test rows, in the platform's prediction columns, so
that the report scores them with the same code as its own models (lib/evaluation/evaluate.py).

* Coupon worlds (binary outcome, a coupon or none): CausalML's S-, T- and X-learners with LightGBM,
  and its uplift random forest (KL-divergence splits). Their uplift is a difference of probabilities
  for "a coupon" against "none"; it becomes the unit uplift of the tables (per unit of coupon value)
  by dividing by the mean coupon value of the treated train rows, as the scikit-uplift reference does.
* The multi-treatment world (K strategies, R continuous responses): the S-, T- and X-learners with
  LightGBM regressors, one fit per response. The uplift random forest needs a binary outcome and has
  no row here.

The X-learner is given propensities from a LightGBM classifier of the treatment on the features
(clipped to [0.02, 0.98]) instead of CausalML's default elastic-net model, which took minutes a fit on
two cores. Nothing here is the platform's code: a wrong wiring of the library (arms swapped, the
wrong component read) shows as a reference that ranks the truth backwards in the test of this module.
"""
from __future__ import annotations

import os
from typing import Mapping, Sequence

import numpy as np

COUPON_LEARNERS = ("s_learner", "t_learner", "x_learner", "uplift_forest")
MULTI_LEARNERS = ("s_learner", "t_learner", "x_learner")
NAMES = {"s_learner": "CausalML S-learner, LightGBM (external)",
         "t_learner": "CausalML T-learner, LightGBM (external)",
         "x_learner": "CausalML X-learner, LightGBM (external)",
         "uplift_forest": "CausalML uplift random forest (external)"}
PROPENSITY_CLIP = (0.02, 0.98)
CONTROL, COUPON = "control", "coupon"


def _threads() -> int:
    return max(1, min(4, os.cpu_count() or 1))


def _lightgbm(kind: str, seed: int):
    from lightgbm import LGBMClassifier, LGBMRegressor

    model = LGBMClassifier if kind == "classifier" else LGBMRegressor
    return model(n_estimators=200, learning_rate=0.05, num_leaves=31, min_child_samples=100, subsample=0.8,
                 subsample_freq=1, colsample_bytree=0.9, random_state=seed, n_jobs=_threads(), verbose=-1)


def feature_matrix(columns: Mapping[str, np.ndarray], names: Sequence[str]) -> np.ndarray:
    """The encoded feature columns as one float matrix (codes as numbers: the trees split their ranges)."""
    return np.column_stack([np.asarray(columns[c], dtype=np.float64) for c in names])


def propensity(x: np.ndarray, treated: np.ndarray, x_predict: np.ndarray, seed: int) -> np.ndarray:
    """P(treated | x) by a LightGBM classifier fitted on (x, treated), at ``x_predict``, clipped."""
    model = _lightgbm("classifier", seed).fit(x, treated.astype(int))
    return np.clip(model.predict_proba(x_predict)[:, 1], *PROPENSITY_CLIP)


def coupon_predictions(train: Mapping[str, np.ndarray], test: Mapping[str, np.ndarray], features: Sequence[str],
                       seed: int, learners: Sequence[str] = COUPON_LEARNERS) -> dict[str, dict[str, np.ndarray]]:
    """Per learner, {"p0": P(outcome | no coupon), "unit_uplift": uplift per unit of coupon value} on
    ``test``; ``train`` / ``test``: columns ``features``, ``treated``, ``outcome``, ``intensity``."""
    from causalml.inference.meta import BaseSClassifier, BaseTClassifier, BaseXClassifier
    from causalml.inference.tree import UpliftRandomForestClassifier

    x, x_test = feature_matrix(train, features), feature_matrix(test, features)
    treated = np.asarray(train["treated"]).astype(int)
    arm = np.where(treated == 1, COUPON, CONTROL)
    y = np.asarray(train["outcome"]).astype(int)
    per_value = float(np.mean(np.asarray(train["intensity"])[treated == 1]))
    out: dict[str, dict[str, np.ndarray]] = {}
    for name in learners:
        if name == "s_learner":
            s = BaseSClassifier(learner=_lightgbm("classifier", seed), control_name=CONTROL)
            s.fit(x, treatment=arm, y=y)
            te, p0s, _ = s.predict(x_test, return_components=True, verbose=False)
            uplift, p0 = te[:, 0], p0s[COUPON]
        elif name == "t_learner":
            t = BaseTClassifier(learner=_lightgbm("classifier", seed), control_name=CONTROL)
            t.fit(x, treatment=arm, y=y)
            te, p0s, _ = t.predict(x_test, return_components=True, verbose=False)
            uplift, p0 = te[:, 0], p0s[COUPON]
        elif name == "x_learner":
            xl = BaseXClassifier(outcome_learner=_lightgbm("classifier", seed),
                                 effect_learner=_lightgbm("regressor", seed), control_name=CONTROL)
            xl.fit(x, treatment=arm, y=y, p=propensity(x, treated, x, seed))
            uplift = xl.predict(x_test, p=propensity(x, treated, x_test, seed), verbose=False)[:, 0]
            p0 = xl.models_mu_c[COUPON].predict_proba(x_test)[:, 1]
        elif name == "uplift_forest":
            forest = UpliftRandomForestClassifier(control_name=CONTROL, n_estimators=50, max_depth=6,
                                                  min_samples_leaf=200, max_features=None, n_jobs=_threads(),
                                                  random_state=seed)
            forest.fit(x, treatment=arm, y=y)
            frame = forest.predict(x_test, full_output=True)
            uplift, p0 = frame[f"delta_{COUPON}"].to_numpy(), frame[CONTROL].to_numpy()
        else:
            raise ValueError(f"coupon learner {name!r}: not one of {', '.join(COUPON_LEARNERS)}")
        out[name] = {"p0": np.asarray(p0, dtype=np.float64),
                     "unit_uplift": np.asarray(uplift, dtype=np.float64) / per_value}
    return out


def multi_predictions(train: Mapping[str, np.ndarray], test: Mapping[str, np.ndarray], features: Sequence[str],
                      num_treatments: int, num_responses: int, seed: int,
                      learners: Sequence[str] = MULTI_LEARNERS) -> dict[str, dict[str, np.ndarray]]:
    """Per learner, {"y0_r<r>": the control response, "tau_r<r>_k<k>": strategy k's effect on response r}
    on ``test``; ``train`` / ``test``: columns ``features``, ``treatment_id`` (0 control, 1..K) and
    ``response_<r>``."""
    from causalml.inference.meta import BaseSRegressor, BaseTRegressor, BaseXRegressor

    x, x_test = feature_matrix(train, features), feature_matrix(test, features)
    arm = np.asarray(train["treatment_id"]).astype(int)
    groups = list(range(1, num_treatments + 1))
    missing = [k for k in groups if not np.any(arm == k)]
    if missing or not np.any(arm == 0):
        raise ValueError(f"multi-treatment train rows: no row of strategy {missing or [0]}")
    p_fit, p_test = {}, {}
    if "x_learner" in learners:
        for k in groups:  # P(strategy k | x, strategy in {0, k}), the propensity CausalML's X-learner takes
            pair = (arm == 0) | (arm == k)
            model = _lightgbm("classifier", seed).fit(x[pair], (arm[pair] == k).astype(int))
            p_fit[k] = np.clip(model.predict_proba(x)[:, 1], *PROPENSITY_CLIP)
            p_test[k] = np.clip(model.predict_proba(x_test)[:, 1], *PROPENSITY_CLIP)
    out: dict[str, dict[str, np.ndarray]] = {name: {} for name in learners}
    for r in range(1, num_responses + 1):
        y = np.asarray(train[f"response_{r}"], dtype=np.float64)
        for name in learners:
            if name == "s_learner":
                s = BaseSRegressor(learner=_lightgbm("regressor", seed), control_name=0)
                s.fit(x, treatment=arm, y=y)
                te, y0s, _ = s.predict(x_test, return_components=True, verbose=False)
                y0 = y0s[1]
            elif name == "t_learner":
                t = BaseTRegressor(learner=_lightgbm("regressor", seed), control_name=0)
                t.fit(x, treatment=arm, y=y)
                te, y0s, _ = t.predict(x_test, return_components=True, verbose=False)
                y0 = y0s[1]
            elif name == "x_learner":
                xl = BaseXRegressor(learner=_lightgbm("regressor", seed), control_name=0)
                xl.fit(x, treatment=arm, y=y, p=p_fit)
                te = xl.predict(x_test, p=p_test, verbose=False)
                y0 = xl.models_mu_c[1].predict(x_test)
            else:
                raise ValueError(f"multi-treatment learner {name!r}: not one of {', '.join(MULTI_LEARNERS)}")
            out[name][f"y0_r{r}"] = np.asarray(y0, dtype=np.float64)
            for i, k in enumerate(groups):
                out[name][f"tau_r{r}_k{k}"] = np.asarray(te[:, i], dtype=np.float64)
    return out
