"""Verdicts on a paper's claim "model beats rival on metric m" from paired differences over seeds.

Every seed is one simulated world in which both the model and its rival are trained and scored on the
same test rows, so the per-seed values are paired: d_s = m_model,s - m_rival,s, s = 1..n.

  mean  d_bar = (1/n) sum_s d_s,   sd  s_d = sqrt(sum_s (d_s - d_bar)^2 / (n - 1)),   se = s_d / sqrt(n)
  CI    d_bar +- t_{1-alpha/2, n-1} se                                  (Student t, n - 1 dof)
  MDD   (t_{1-alpha/2, n-1} + t_{power, n-1}) s_d / sqrt(n)             (power 0.8 unless told)

Verdict for a claim in direction "greater" (the model's value is higher; "less": lower, e.g. an error):
  "holds"         the interval excludes 0 on the claimed side;
  "contradicted"  it excludes 0 on the other side;
  "inconclusive"  it contains 0; the MDD then says how large a difference this many seeds could
                  have detected (a true gap below it is likely to read "inconclusive").
With fewer than 3 seeds the t interval is very wide (t_{0.975, 1} = 12.7); ``bootstrap_verdict`` /
``bootstrap_diff_ci`` instead resample the rows of one world (same rows for both, paired), giving a
percentile interval of the metric difference and a normal-approximation MDD; ``replicate_verdict``
applies the same rule to replicates already drawn (the report's per-world bootstrap: every model of a
world scored on the same resampled rows, the replicate differences averaged over the worlds).
``resolves`` applies the same rule to the oracle against the constant reference row: a metric that
cannot separate those two at this scale cannot judge any claim, and the report says so with its power.

Student t quantiles come from the regularized incomplete beta function (a continued fraction, no
scipy): P(T > t) = I_{nu / (nu + t^2)}(nu / 2, 1 / 2) / 2 for t >= 0.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any, Callable, Mapping

import numpy as np

from liftlake.lib.evaluation.cvr_metrics import as_1d_float, check_same_length

__all__ = [
    "student_t_sf",
    "student_t_ppf",
    "PairedVerdict",
    "Resolution",
    "verdict_from_interval",
    "minimal_detectable_difference",
    "paired_verdict",
    "bootstrap_diff_ci",
    "bootstrap_verdict",
    "replicate_verdict",
    "resolves",
    "replicates_resolve",
]

BOOTSTRAP_METHOD = "paired bootstrap over test rows"

DIRECTIONS = ("greater", "less")


# --------------------------------------------------------------------------- Student t distribution
def _beta_continued_fraction(a: float, b: float, x: float) -> float:
    """The continued fraction of I_x(a, b) (modified Lentz; Numerical Recipes' betacf)."""
    tiny, tolerance = 1e-300, 1e-15
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    fraction = d
    for m in range(1, 1000):
        for numerator in (m * (b - m) * x / ((a + 2 * m - 1.0) * (a + 2 * m)),
                          -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1.0))):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            fraction *= c * d
        if abs(c * d - 1.0) < tolerance:
            return fraction
    raise ArithmeticError(f"incomplete beta: no convergence for a={a}, b={b}, x={x}")


def _regularized_beta(a: float, b: float, x: float) -> float:
    """I_x(a, b) = B(x; a, b) / B(a, b) for x in [0, 1]."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):  # the fraction converges fast on this side; use symmetry on the other
        return front * _beta_continued_fraction(a, b, x) / a
    return 1.0 - front * _beta_continued_fraction(b, a, 1.0 - x) / b


def _check_dof(dof: float) -> None:
    if not (isinstance(dof, (int, float, np.number)) and math.isfinite(float(dof)) and dof > 0):
        raise ValueError(f"degrees of freedom must be a positive finite number, got {dof!r}")


def student_t_sf(t: float, dof: float) -> float:
    """P(T > t) for Student's t with ``dof`` degrees of freedom."""
    _check_dof(dof)
    if math.isnan(t):
        raise ValueError("student_t_sf: t is NaN")
    upper = 0.5 * _regularized_beta(dof / 2.0, 0.5, dof / (dof + t * t)) if math.isfinite(t) else 0.0
    return upper if t >= 0 else 1.0 - upper


def student_t_ppf(probability: float, dof: float) -> float:
    """The t with P(T <= t) = ``probability`` (bisection on ``student_t_sf`` to double precision)."""
    _check_dof(dof)
    if not 0.0 < probability < 1.0:
        raise ValueError(f"student_t_ppf: probability must be in (0, 1), got {probability!r}")
    if probability < 0.5:
        return -student_t_ppf(1.0 - probability, dof)
    tail = 1.0 - probability
    low, high = 0.0, 1.0
    while student_t_sf(high, dof) > tail:
        low, high = high, 2.0 * high
    for _ in range(200):
        middle = (low + high) / 2.0
        if middle in (low, high):
            break
        if student_t_sf(middle, dof) > tail:
            low = middle
        else:
            high = middle
    return (low + high) / 2.0


# --------------------------------------------------------------------------- verdicts
@dataclass(frozen=True)
class PairedVerdict:
    """The verdict on a claim, with the numbers behind it (difference = model - rival)."""

    verdict: str  # "holds" | "contradicted" | "inconclusive"
    direction: str  # the claimed sign of the difference: "greater" (> 0) or "less" (< 0)
    n: int  # seeds (t interval), rows (bootstrap_verdict) or worlds (replicate_verdict)
    mean_diff: float
    sd_diff: float  # sd of the per-seed differences (t) or of the bootstrap replicates (bootstrap)
    ci_low: float
    ci_high: float
    mdd: float  # minimal detectable difference at this scale, power ``power``
    alpha: float
    power: float
    method: str  # "paired t over seeds" | BOOTSTRAP_METHOD

    def describe(self) -> str:
        """One report line, e.g. 'holds: +0.0123, 95% CI [+0.0041, +0.0205], paired t over seeds, n = 5'."""
        level = f"{100 * (1 - self.alpha):g}%"
        text = (f"{self.verdict}: {self.mean_diff:+.4g}, {level} CI [{self.ci_low:+.4g}, {self.ci_high:+.4g}], "
                f"{self.method}, n = {self.n}")
        if self.verdict == "inconclusive":
            text += f"; detectable at this scale: |difference| >= {self.mdd:.4g} (power {self.power:g})"
        return text


def _check_direction(direction: str) -> None:
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")


def _check_level(name: str, value: float) -> None:
    if not (isinstance(value, (int, float, np.number)) and 0.0 < float(value) < 1.0):
        raise ValueError(f"{name} must be in (0, 1), got {value!r}")


def verdict_from_interval(ci_low: float, ci_high: float, direction: str = "greater") -> str:
    """'holds' if [ci_low, ci_high] lies strictly on the claimed side of 0, 'contradicted' if strictly
    on the other side, else 'inconclusive' (an end point at exactly 0 does not exclude it)."""
    _check_direction(direction)
    if any(math.isnan(v) for v in (ci_low, ci_high)) or ci_low > ci_high:
        raise ValueError(f"verdict_from_interval: expected ci_low <= ci_high, got [{ci_low}, {ci_high}]")
    above, below = ci_low > 0.0, ci_high < 0.0
    if (above and direction == "greater") or (below and direction == "less"):
        return "holds"
    if above or below:
        return "contradicted"
    return "inconclusive"


def minimal_detectable_difference(sd_diff: float, n: int, alpha: float = 0.05, power: float = 0.8) -> float:
    """MDD = (t_{1-alpha/2, n-1} + t_{power, n-1}) * sd_diff / sqrt(n): the smallest true mean
    difference a two-sided paired t test at level alpha detects with probability ``power``."""
    _check_level("alpha", alpha)
    _check_level("power", power)
    if not (isinstance(n, (int, np.integer)) and n >= 2):
        raise ValueError(f"minimal_detectable_difference: needs n >= 2 paired values, got {n!r}")
    if not (math.isfinite(sd_diff) and sd_diff >= 0.0):
        raise ValueError(f"minimal_detectable_difference: sd_diff must be finite and >= 0, got {sd_diff!r}")
    dof = n - 1
    return (student_t_ppf(1.0 - alpha / 2.0, dof) + student_t_ppf(power, dof)) * sd_diff / math.sqrt(n)


def seeds_to_decide(sd_diff: float, mean_diff: float, alpha: float = 0.05, power: float = 0.8,
                    max_n: int = 100_000) -> int | None:
    """The smallest number of paired seeds whose MDD (``minimal_detectable_difference``) is at most
    ``|mean_diff|``: how many worlds at this scale would decide a gap as large as the measured one with
    probability ``power``. 2 when the differences do not vary; None when no gap was measured (|gap| <= 1e-12) or more
    than ``max_n`` seeds would be needed. The MDD falls monotonically in n, so a bisection finds it."""
    if not (math.isfinite(sd_diff) and sd_diff >= 0.0 and math.isfinite(mean_diff)):
        raise ValueError(f"seeds_to_decide: sd_diff >= 0 and mean_diff must be finite, got {sd_diff!r}, "
                         f"{mean_diff!r}")
    gap = abs(mean_diff)
    if gap <= 1e-12:  # two rows that agree up to float round-off
        return None
    if minimal_detectable_difference(sd_diff, 2, alpha, power) <= gap:
        return 2
    if minimal_detectable_difference(sd_diff, max_n, alpha, power) > gap:
        return None
    low, high = 2, max_n  # MDD(low) > gap >= MDD(high)
    while high - low > 1:
        middle = (low + high) // 2
        if minimal_detectable_difference(sd_diff, middle, alpha, power) <= gap:
            high = middle
        else:
            low = middle
    return high


def _paired_seed_values(model_values: Any, rival_values: Any) -> np.ndarray:
    model = as_1d_float("model_values", model_values)
    rival = as_1d_float("rival_values", rival_values)
    check_same_length(model_values=model, rival_values=rival)
    if model.size < 2:
        raise ValueError("paired_verdict: needs at least 2 paired seeds for a t interval; with one world use "
                         "bootstrap_verdict / bootstrap_diff_ci over its rows")
    return model - rival


def paired_verdict(
    model_values: Any, rival_values: Any, direction: str = "greater", alpha: float = 0.05, power: float = 0.8
) -> PairedVerdict:
    """The claim "model's metric is ``direction`` than the rival's" judged on per-seed values (same
    seeds, same order): the Student-t interval of the mean paired difference, its verdict and the MDD
    (see the module docstring). With every difference equal the interval is that single point."""
    _check_direction(direction)
    _check_level("alpha", alpha)
    _check_level("power", power)
    diffs = _paired_seed_values(model_values, rival_values)
    n = int(diffs.size)
    mean_diff = float(diffs.mean())
    sd_diff = float(diffs.std(ddof=1))
    half_width = student_t_ppf(1.0 - alpha / 2.0, n - 1) * sd_diff / math.sqrt(n)
    low, high = mean_diff - half_width, mean_diff + half_width
    return PairedVerdict(verdict=verdict_from_interval(low, high, direction), direction=direction, n=n,
                         mean_diff=mean_diff, sd_diff=sd_diff, ci_low=low, ci_high=high,
                         mdd=minimal_detectable_difference(sd_diff, n, alpha, power), alpha=float(alpha),
                         power=float(power), method="paired t over seeds")


# --------------------------------------------------------------------------- bootstrap over one world's rows
PerRows = Any  # an array whose axis 0 is the rows, or a mapping name -> such an array (all the same rows)


def _row_count(name: str, rows: PerRows) -> int:
    arrays = list(rows.values()) if isinstance(rows, Mapping) else [rows]
    if not arrays:
        raise ValueError(f"{name}: empty mapping")
    counts = {np.shape(arr)[0] if np.ndim(arr) else 0 for arr in arrays}
    if len(counts) != 1:
        raise ValueError(f"{name}: its arrays have different numbers of rows: {sorted(counts)}")
    count = counts.pop()
    if count == 0:
        raise ValueError(f"{name}: no rows")
    return int(count)


def _take(rows: PerRows, index: np.ndarray) -> PerRows:
    if isinstance(rows, Mapping):
        return {key: np.asarray(arr)[index] for key, arr in rows.items()}
    return np.asarray(rows)[index]


def _finite_metric(metric_fn: Callable[[PerRows], float], rows: PerRows, name: str) -> float:
    value = float(metric_fn(rows))
    if not math.isfinite(value):
        raise ValueError(f"bootstrap_diff_ci: metric_fn gave {value} on {name}")
    return value


def bootstrap_diff_ci(
    per_row_a: PerRows,
    per_row_b: PerRows,
    metric_fn: Callable[[PerRows], float],
    n_boot: int = 1000,
    rng: np.random.Generator | int = 0,
    alpha: float = 0.05,
    power: float = 0.8,
) -> dict[str, float]:
    """Paired bootstrap of metric(a) - metric(b) over the rows of one world.

    ``per_row_a`` / ``per_row_b``: the rows each metric needs (e.g. a mapping with the model's
    predictions and the truth), the SAME rows in the same order; each replicate draws N row indices
    with replacement and applies them to both, so the difference keeps the pairing.
    diff = metric(a) - metric(b) on all rows; [ci_low, ci_high] = the alpha/2 and 1 - alpha/2
    percentiles of the replicates' differences; boot_sd = their sd;
    mdd = (z_{1-alpha/2} + z_power) * boot_sd (normal approximation). A replicate on which metric_fn
    raises (e.g. a single class) or gives a non-finite value makes the whole call raise.
    """
    _check_level("alpha", alpha)
    _check_level("power", power)
    n_rows = _row_count("per_row_a", per_row_a)
    if _row_count("per_row_b", per_row_b) != n_rows:
        raise ValueError(f"mismatched lengths: per_row_a has {n_rows} rows, per_row_b "
                         f"{_row_count('per_row_b', per_row_b)} (the bootstrap pairs the same rows)")
    minimum = min_replicates(alpha)
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < minimum:
        raise ValueError(f"n_boot must be an integer >= {minimum} (2 / alpha), got {n_boot!r}")
    generator = np.random.default_rng(rng) if isinstance(rng, (int, np.integer)) else rng
    if not isinstance(generator, np.random.Generator):
        raise ValueError(f"rng: expected a numpy Generator or an integer seed, got {type(rng).__name__}")
    diff = _finite_metric(metric_fn, per_row_a, "per_row_a") - _finite_metric(metric_fn, per_row_b, "per_row_b")
    replicates = np.empty(int(n_boot))
    for b in range(int(n_boot)):
        index = generator.integers(0, n_rows, size=n_rows)
        replicates[b] = (_finite_metric(metric_fn, _take(per_row_a, index), f"replicate {b} of per_row_a")
                         - _finite_metric(metric_fn, _take(per_row_b, index), f"replicate {b} of per_row_b"))
    low, high, boot_sd, mdd = _replicate_interval(replicates, alpha, power)
    return {"diff": diff, "ci_low": low, "ci_high": high, "boot_sd": boot_sd, "mdd": mdd,
            "n_rows": float(n_rows), "n_boot": float(n_boot)}


def min_replicates(alpha: float = 0.05) -> int:
    """The fewest bootstrap replicates whose alpha/2 tails hold one replicate each: ceil(2 / alpha)."""
    return math.ceil(2.0 / alpha)


def _replicate_interval(replicates: np.ndarray, alpha: float, power: float) -> tuple[float, float, float, float]:
    """(alpha/2 and 1 - alpha/2 percentiles, sd, normal-approximation MDD) of bootstrap replicates."""
    low, high = np.quantile(replicates, [alpha / 2.0, 1.0 - alpha / 2.0])
    boot_sd = float(replicates.std(ddof=1))
    z = NormalDist()
    return float(low), float(high), boot_sd, (z.inv_cdf(1.0 - alpha / 2.0) + z.inv_cdf(power)) * boot_sd


def bootstrap_verdict(
    per_row_a: PerRows,
    per_row_b: PerRows,
    metric_fn: Callable[[PerRows], float],
    direction: str = "greater",
    n_boot: int = 1000,
    rng: np.random.Generator | int = 0,
    alpha: float = 0.05,
    power: float = 0.8,
) -> PairedVerdict:
    """``paired_verdict``'s rule on ``bootstrap_diff_ci``'s interval (for one or two seeds)."""
    _check_direction(direction)
    ci = bootstrap_diff_ci(per_row_a, per_row_b, metric_fn, n_boot, rng, alpha, power)
    return PairedVerdict(verdict=verdict_from_interval(ci["ci_low"], ci["ci_high"], direction),
                         direction=direction, n=int(ci["n_rows"]), mean_diff=ci["diff"], sd_diff=ci["boot_sd"],
                         ci_low=ci["ci_low"], ci_high=ci["ci_high"], mdd=ci["mdd"], alpha=float(alpha),
                         power=float(power), method=BOOTSTRAP_METHOD)


def replicate_verdict(point_diff: float, replicate_diffs: Any, direction: str = "greater", worlds: int = 1,
                      alpha: float = 0.05, power: float = 0.8) -> PairedVerdict:
    """``paired_verdict``'s rule on replicates drawn elsewhere: ``replicate_diffs`` holds one value of
    model - rival per bootstrap replicate (each the mean over ``worlds`` worlds of that replicate's
    difference, both scored on the same resampled rows), ``point_diff`` the difference on all rows.
    The interval is the percentile one; ``n`` of the verdict is ``worlds``. It measures the test rows'
    sampling noise only, not the spread between trainings on other seeds."""
    _check_direction(direction)
    _check_level("alpha", alpha)
    _check_level("power", power)
    replicates = as_1d_float("replicate_diffs", replicate_diffs)  # refuses NaN / infinite values
    minimum = min_replicates(alpha)
    if replicates.size < minimum:
        raise ValueError(f"replicate_verdict: needs at least {minimum} replicates (2 / alpha), got {replicates.size}")
    if not math.isfinite(point_diff):
        raise ValueError(f"replicate_verdict: point_diff must be finite, got {point_diff}")
    low, high, boot_sd, mdd = _replicate_interval(replicates, alpha, power)
    return PairedVerdict(verdict=verdict_from_interval(low, high, direction), direction=direction, n=int(worlds),
                         mean_diff=float(point_diff), sd_diff=boot_sd, ci_low=low, ci_high=high, mdd=mdd,
                         alpha=float(alpha), power=float(power), method=BOOTSTRAP_METHOD)


# --------------------------------------------------------------------------- does the metric resolve at all?
@dataclass(frozen=True)
class Resolution:
    """Whether a metric separates the oracle from the constant reference row at this scale.

    ``power_at_gap``: the probability that this many seeds detect a true gap as large as the one
    measured, 1 - F_t(t_{1-alpha/2, n-1} - |d_bar| / se) with F_t the t CDF at n - 1 dof (the shifted-t
    approximation the MDD formula rests on: at |d_bar| = MDD it equals ``power``); 1 when se = 0 and
    d_bar != 0, NaN when there is no gap at all.
    """

    resolved: bool
    power_at_gap: float
    verdict: PairedVerdict

    def describe(self) -> str:
        answer = "yes" if self.resolved else "no"
        return (f"separates oracle from constant: {answer} (gap {self.verdict.mean_diff:+.4g}, "
                f"MDD {self.verdict.mdd:.4g}, power at that gap {self.power_at_gap:.2f}, n = {self.verdict.n})")


def resolves(
    oracle_values: Any, constant_values: Any, direction: str = "greater", alpha: float = 0.05, power: float = 0.8
) -> Resolution:
    """``paired_verdict(oracle, constant, direction)``: the metric resolves at this scale when the
    oracle's advantage "holds" ("greater" for a score, "less" for an error such as sqrt-PEHE)."""
    verdict = paired_verdict(oracle_values, constant_values, direction, alpha, power)
    se = verdict.sd_diff / math.sqrt(verdict.n)
    gap = abs(verdict.mean_diff)
    if se > 0.0:
        power_at_gap = student_t_sf(student_t_ppf(1.0 - alpha / 2.0, verdict.n - 1) - gap / se, verdict.n - 1)
    else:
        power_at_gap = 1.0 if gap > 0.0 else math.nan
    return Resolution(resolved=verdict.verdict == "holds", power_at_gap=power_at_gap, verdict=verdict)


def replicates_resolve(point_diff: float, replicate_diffs: Any, direction: str = "greater", worlds: int = 1,
                       alpha: float = 0.05, power: float = 0.8) -> Resolution:
    """``resolves`` on bootstrap replicates (``replicate_verdict``); the power at the gap from the
    normal approximation, 1 - Phi(z_{1-alpha/2} - |gap| / sd)."""
    verdict = replicate_verdict(point_diff, replicate_diffs, direction, worlds, alpha, power)
    gap = abs(verdict.mean_diff)
    z = NormalDist()
    if verdict.sd_diff > 0.0:
        power_at_gap = 1.0 - z.cdf(z.inv_cdf(1.0 - alpha / 2.0) - gap / verdict.sd_diff)
    else:
        power_at_gap = 1.0 if gap > 0.0 else math.nan
    return Resolution(resolved=verdict.verdict == "holds", power_at_gap=power_at_gap, verdict=verdict)
