"""The evidence report's judgements: reference rows taken out of the per-seed results, a paper's
claim judged by a paired t interval over the seeds (``verdicts.paired_verdict``), and whether a metric
separates the oracle from the constant at all at this scale (``verdicts.resolves``).

Per-seed results are ``list[run]``, one run per seed (one simulated world), ``run = {row: metrics}``
with a row per model; ``with_references`` adds the reference rows (oracle, constant, random) that
``evaluate.compute_metrics`` stored in every model's metrics as ``ref_<name>__<metric>``.

Where seeds are few (fewer than ``BOOTSTRAP_BELOW_SEEDS``) a model's metrics may also carry, under
``REPLICATES``, each metric's values on bootstrap resamples of its world's test rows (the same draws
for every model of the world: ``evaluate.bootstrap_metrics``); a comparison then takes the percentile
interval of the replicate differences, averaged over the worlds (``verdicts.replicate_verdict``).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

import numpy as np

from liftlake.lib.evaluation.verdicts import (
    BOOTSTRAP_METHOD,
    PairedVerdict,
    min_replicates,
    paired_verdict,
    replicate_verdict,
    replicates_resolve,
    resolves,
    seeds_to_decide,
)

PerSeed = list[dict[str, dict]]
REPLICATES = "_replicates"  # a model's metrics -> {metric: values on the world's bootstrap resamples}
BOOTSTRAP_BELOW_SEEDS = 3  # with fewer seeds a claim is judged on the replicates where it has them

Replicates = np.ndarray | float | None  # a seed's replicate values; a float: a constant (every replicate)


class Series(list):
    """One value per seed (None where the seed has none) and, per seed, its bootstrap replicates
    (``replicates``: an array, a float for a constant, or None where there are none)."""

    def __init__(self, values=(), replicates: Sequence[Replicates] | None = None):
        super().__init__(values)
        self.replicates: list[Replicates] = list(replicates) if replicates is not None else [None] * len(self)

ORACLE, CONSTANT, RANDOM = "oracle (truth)", "constant (train mean)", "random (shuffled truth)"
REFERENCE_ROWS = {"oracle": ORACLE, "constant": CONSTANT, "random": RANDOM}

# A table's "best" rule -> the claimed direction of (model - rival) and the transform applied first.
DIRECTIONS: dict[str, tuple[str, Callable[[float], float] | None]] = {
    "max": ("greater", None), "min": ("less", None), "absmin": ("less", abs)}


def is_reference(row: str) -> bool:
    return row in REFERENCE_ROWS.values()


def with_references(per_seed: PerSeed) -> PerSeed:
    """Every run plus its reference rows (with their replicates, where stored), from the first model
    (in row order) that stored them: all models of one world are scored on the same test rows, so
    their reference values agree."""
    out = []
    for run in per_seed:
        rows = dict(run)
        for name, label in REFERENCE_ROWS.items():
            prefix = f"ref_{name}__"
            for metrics in run.values():
                found = {k[len(prefix):]: v for k, v in metrics.items() if k.startswith(prefix)}
                if found:
                    replicates = metrics.get(REPLICATES) or {}
                    found[REPLICATES] = {k[len(prefix):]: v for k, v in replicates.items() if k.startswith(prefix)}
                    rows[label] = found
                    break
        out.append(rows)
    return out


def row_names(per_seed: PerSeed) -> list[str]:
    """Every row of any seed, in first-seen order."""
    names: dict[str, None] = {}
    for run in per_seed:
        names.update(dict.fromkeys(run))
    return list(names)


def finite_or_none(value) -> float | None:
    """``value`` as a float when it is a finite number (not a bool, a string or NaN), else None."""
    if isinstance(value, (int, float, np.number)) and not isinstance(value, bool) and math.isfinite(float(value)):
        return float(value)
    return None


def series(per_seed: PerSeed, row: str, metric: str, transform: Callable[[float], float] | None = None) -> Series:
    """Per seed: ``row``'s finite value of ``metric`` (``transform``-ed), else None; with its
    replicates (``transform``-ed too) where the row's metrics carry them."""
    values: list[float | None] = []
    replicates: list[Replicates] = []
    for run in per_seed:
        metrics = run.get(row, {})
        value = finite_or_none(metrics.get(metric))
        values.append(None if value is None else (transform(value) if transform else value))
        found = (metrics.get(REPLICATES) or {}).get(metric)
        if found is None or value is None:
            replicates.append(None)
            continue
        array = np.asarray(found, dtype=float)
        replicates.append(np.array([transform(v) for v in array]) if transform else array)
    return Series(values, replicates)


def constant_series(per_seed: PerSeed, value: float) -> Series:
    return Series([value] * len(per_seed), [value] * len(per_seed))


def better_of(a: Series, b: Series) -> Series:
    """Per seed the larger of the two values (None where either is), and per replicate the larger of
    the two replicates (e.g. the better of two constant policies)."""
    values = [None if x is None or y is None else max(x, y) for x, y in zip(a, b)]
    replicates = [None if ra is None or rb is None else np.maximum(ra, rb)
                  for ra, rb in zip(a.replicates, b.replicates)]
    return Series(values, replicates)


def paired(a: Series, b: Series) -> tuple[np.ndarray, np.ndarray]:
    """The seeds where both series have a value, as two aligned arrays."""
    both = [(x, y) for x, y in zip(a, b) if x is not None and y is not None]
    return np.array([x for x, _ in both], dtype=float), np.array([y for _, y in both], dtype=float)


def replicate_differences(a: Series, b: Series) -> tuple[float, np.ndarray, int] | None:
    """(mean over the paired seeds of a - b, per replicate the mean over those seeds of its
    difference, the seeds) when every seed where both have a value carries replicates of both (a
    constant counts), else None. Replicates where either metric is undefined (NaN: e.g. one class
    drawn) are left out; fewer than ``min_replicates()`` left is None."""
    pairs = [(x, y, ra, rb) for x, y, ra, rb in zip(a, b, getattr(a, "replicates", [None] * len(a)),
                                                    getattr(b, "replicates", [None] * len(b)))
             if x is not None and y is not None]
    if not pairs or any(ra is None or rb is None for _, _, ra, rb in pairs):
        return None
    sizes = {np.size(r) for _, _, ra, rb in pairs for r in (ra, rb) if np.ndim(r)}
    if len(sizes) != 1:
        return None
    diffs = np.mean([np.asarray(ra, dtype=float) - np.asarray(rb, dtype=float) for _, _, ra, rb in pairs], axis=0)
    diffs = diffs[np.isfinite(diffs)]
    if diffs.size < min_replicates():
        return None
    return float(np.mean([x - y for x, y, _, _ in pairs])), diffs, len(pairs)


def few_seeds_replicates(a: Series, b: Series) -> tuple[float, np.ndarray, int] | None:
    """``replicate_differences`` where fewer than BOOTSTRAP_BELOW_SEEDS seeds pair, else None (the
    t interval over the seeds judges)."""
    found = replicate_differences(a, b)
    return found if found is not None and found[2] < BOOTSTRAP_BELOW_SEEDS else None


def mean_of(values: Series) -> float | None:
    found = [v for v in values if v is not None]
    return float(np.mean(found)) if found else None


def judge(a: Series, b: Series, direction: str) -> tuple[str, PairedVerdict | None]:
    """The verdict on "a is ``direction`` than b" over the paired seeds, with its mean difference and
    95 % interval (``PairedVerdict.describe``): with fewer than BOOTSTRAP_BELOW_SEEDS seeds on the
    bootstrap replicates where both carry them; else 'n/a (1 seed)' with one seed, 'n/a (not
    measured)' with none."""
    x, y = paired(a, b)
    if x.size == 0:
        return "n/a (not measured)", None
    few = few_seeds_replicates(a, b)
    if few is not None:
        boot = replicate_verdict(few[0], few[1], direction, worlds=few[2])
        return boot.describe(), boot
    if x.size == 1:
        return f"n/a (1 seed): {x[0] - y[0]:+.4g}", None
    verdict = paired_verdict(x, y, direction)
    return verdict.describe(), verdict


@dataclass
class Judged:
    """One comparison of the report as judged, for its summary: 'what: A 0.12 vs. B 0.10', the verdict
    (None when it could not be judged), the claim it belongs to and the settings its models trained
    under where a claim is judged more than once ("" for the papers' own)."""

    comparison: str
    verdict: PairedVerdict | None
    claim: str = ""
    settings: str = ""


_RECORDED: ContextVar[list[Judged] | None] = ContextVar("liftlake_report_verdicts", default=None)


@contextmanager
def recording_verdicts() -> Iterator[list[Judged]]:
    """Every ``comparison`` made inside the block, in order, tagged with its ``claim``."""
    found: list[Judged] = []
    token = _RECORDED.set(found)
    try:
        yield found
    finally:
        _RECORDED.reset(token)


@contextmanager
def judged_under(settings: str) -> Iterator[None]:
    """Tag the comparisons recorded inside the block with the training settings of their section, so
    that a claim checked under two settings is listed once per setting in the summary."""
    recorded = _RECORDED.get()
    start = len(recorded) if recorded is not None else 0
    try:
        yield
    finally:
        for item in (recorded or [])[start:]:
            item.settings = settings


def comparison(a_label: str, a: Series, b_label: str, b: Series, direction: str, what: str = "") -> str:
    """'<what>: A 0.1234 vs. B 0.1000 -> holds: +0.0234, 95% CI [...], paired t over seeds, n = 5'
    (the means over the seeds that both have)."""
    x, y = paired(a, b)
    means = f"{a_label} {x.mean():.4f} vs. {b_label} {y.mean():.4f}" if x.size else f"{a_label} vs. {b_label}"
    text, verdict = judge(a, b, direction)
    recorded = _RECORDED.get()
    if recorded is not None:
        recorded.append(Judged(f"{what + ': ' if what else ''}{means}", verdict))
    return f"{what + ': ' if what else ''}{means} -> {text}"


def claim(text: str, parts: Sequence[str]) -> list[str]:
    """A claim as one bullet, or a bullet with one sub-bullet per comparison."""
    for judged in reversed(_RECORDED.get() or []):  # the comparisons made for this claim, not yet tagged
        if judged.claim:
            break
        judged.claim = text
    if len(parts) == 1:
        return [f"- {text}: {parts[0]}."]
    return [f"- {text}:"] + [f"  - {part}." for part in parts]


def strongest(per_seed: PerSeed, candidates: Sequence[str], metric: str, rule: str = "max") -> str | None:
    """The candidate row with the best mean of ``metric`` (``rule`` as in a table's best), or None."""
    direction, transform = DIRECTIONS[rule]
    means = {row: mean_of(series(per_seed, row, metric, transform)) for row in candidates}
    found = {row: m for row, m in means.items() if m is not None}
    if not found:
        return None
    return (max if direction == "greater" else min)(found, key=lambda row: found[row])


def tally(verdict_lines: Sequence[str]) -> str:
    """'holds on 2, contradicted on 1, inconclusive on 3, n/a on 0 of 6' over comparison lines."""
    counts = {word: sum(f"-> {word}:" in line for line in verdict_lines)
              for word in ("holds", "contradicted", "inconclusive")}
    unjudged = len(verdict_lines) - sum(counts.values())
    return (f"holds on {counts['holds']}, contradicted on {counts['contradicted']}, inconclusive on "
            f"{counts['inconclusive']}, n/a on {unjudged} of {len(verdict_lines)}")


# --------------------------------------------------------------------------- can the metric tell at all?
def resolution_table(per_seed: PerSeed, metrics: Sequence[tuple[str, ...]]) -> list[str]:
    """Does each metric separate the oracle row from an uninformed row at this scale (this many seeds,
    this many test rows)? ``metrics``: (key, label, rule[, rival row]) with rule 'max' / 'min' / 'absmin'
    as in a table's best. The rival is the constant row unless named; a metric the constant has no
    value of (a rank correlation) is measured against the random row instead. A metric that cannot
    separate the oracle from what it is meant to reject cannot judge a claim between models either."""
    lines = [("Can each metric tell the oracle from an uninformed prediction at this scale? (paired t over "
              f"seeds, 95 %; with fewer than {BOOTSTRAP_BELOW_SEEDS} seeds the {BOOTSTRAP_METHOD} where the run "
              "drew them; MDD: the smallest gap detected with power 0.8)"), "",
             "| metric | oracle | rival | separates | gap, 95 % CI | MDD | power at that gap |",
             "|---|---|---|---|---|---|---|"]
    for metric, label, rule, *named in metrics:
        direction, transform = DIRECTIONS[rule]
        oracle = series(per_seed, ORACLE, metric, transform)
        rival_row = named[0] if named else CONSTANT
        if not any(v is not None for v in series(per_seed, rival_row, metric)):
            rival_row = RANDOM
        rival = series(per_seed, rival_row, metric, transform)
        x, y = paired(oracle, rival)
        if x.size == 0:
            continue
        rival_name = rival_row.split(" ")[0]
        head = f"| {label} | {x.mean():.4f} | {rival_name} {y.mean():.4f} | "
        few = few_seeds_replicates(oracle, rival)
        if few is None and x.size < 2:
            lines.append(head + f"n/a ({x.size} seed) | {x[0] - y[0]:+.4g} | n/a | n/a |")
            continue
        found = replicates_resolve(few[0], few[1], direction, worlds=few[2]) if few else resolves(x, y, direction)
        v = found.verdict
        power = "n/a" if math.isnan(found.power_at_gap) else f"{found.power_at_gap:.2f}"
        lines.append(head + f"{'yes' if found.resolved else 'no'} | {v.mean_diff:+.4g} [{v.ci_low:+.4g}, "
                     f"{v.ci_high:+.4g}] | {v.mdd:.4g} | {power} |")
    return lines + [""] if len(lines) > 4 else []


# --------------------------------------------------------------------------- what the run decides
def decision_summary(judged: Sequence[Judged], seeds: int) -> list[str]:
    """The report's verdicts in words: which claims hold, which are contradicted, which stay
    inconclusive, and for each of those how many seeds (worlds at this scale) would decide a gap as
    large as the one measured (``verdicts.seeds_to_decide``, power 0.8)."""
    groups: dict[str, list[Judged]] = {"holds": [], "contradicted": [], "inconclusive": [], "n/a": []}
    for item in judged:
        groups[item.verdict.verdict if item.verdict else "n/a"].append(item)
    lines = ["## What this run decides", "",
             (f"Of the {len(judged)} comparisons behind the claims below, {len(groups['holds'])} hold, "
              f"{len(groups['contradicted'])} are contradicted and {len(groups['inconclusive'])} stay "
              f"inconclusive at this scale ({seeds} seed(s), each one simulated world)"
              + (f"; {len(groups['n/a'])} could not be judged (one seed, or not measured)" if groups["n/a"] else "")
              + "."), ""]

    def by_claim(items: Sequence[Judged], describe: Callable[[Judged], str]) -> list[str]:
        """Each claim once per setting, its comparisons of this verdict under it."""
        out: list[str] = []
        for text, settings in dict.fromkeys((item.claim, item.settings) for item in items):
            out.append(f"- {text or 'unnamed claim'}{f' ({settings})' if settings else ''}:")
            out += [f"  - {item.comparison} ({describe(item)})" for item in items
                    if (item.claim, item.settings) == (text, settings)]
        return out

    def interval(item: Judged) -> str:
        v = item.verdict
        assert v is not None
        return f"{v.mean_diff:+.4g}, 95% CI [{v.ci_low:+.4g}, {v.ci_high:+.4g}]"

    def scale(item: Judged) -> str:
        v = item.verdict
        assert v is not None
        if v.method == BOOTSTRAP_METHOD:  # the replicates' spread falls as one over the root of the rows
            rows = (v.mdd / abs(v.mean_diff)) ** 2 if abs(v.mean_diff) > 1e-12 else math.inf
            where = f"about {rows:,.1f} times the test users" if math.isfinite(rows) else "no gap to decide"
            return f"gap {v.mean_diff:+.4g}, detectable now {v.mdd:.4g}; {where}"
        needed = seeds_to_decide(v.sd_diff, v.mean_diff, v.alpha, v.power)
        where = (f"about {needed:,} seeds" if needed is not None
                 else "no gap to decide" if abs(v.mean_diff) <= 1e-12 else "more than 100,000 seeds")
        return f"gap {v.mean_diff:+.4g}, detectable now {v.mdd:.4g}; {where}"

    for word, heading in (("holds", "Hold on this simulator:"), ("contradicted", "Contradicted on this simulator:"),
                          ("inconclusive", "Inconclusive here, with the seeds that would decide the gap measured "
                           "(if it is the true one; the spread of a seed's metric falls roughly as one over the "
                           "square root of its test users, so k times the users per world stands in for about k "
                           "times the seeds):")):
        if groups[word]:
            lines += [heading, ""] + by_claim(groups[word], scale if word == "inconclusive" else interval) + [""]
    return lines
