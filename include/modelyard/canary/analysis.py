"""Canary versus production on live traffic, metric by metric, the way Kayenta judges canaries.

Each metric is classified ``pass`` / ``fail`` / ``not_enough_data``. Like Kayenta's
Mann-Whitney classifier, a fail needs both *statistical* significance (a one-sided test at
``canary.alpha`` says the canary is worse) and *practical* significance (worse by more than the
metric's tolerance): a thousand requests make a 0.1 % difference significant, and that is no
reason to throw a model away. Tests come from ``scipy.stats``:

- rates (errors, format validity, thumbs up): the two-proportion z-test, computed as the
  equivalent Pearson chi-square on the 2x2 table (``chi2_contingency`` without continuity
  correction: z**2 == chi2), halved to one side;
- latency: Mann-Whitney U on the raw samples, canary against production scaled by
  ``1 + tolerance`` (H1: the canary is slower than production plus its allowance), the shape of
  Kayenta's ``allowedIncrease``.

The window is the canary's stint: from its latest move into ``canary`` (the ledger records it)
until now, the same window for both arms, so both saw the same hours of traffic.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Literal

from scipy import stats

from modelyard.serving.logreader import ArmStats
from modelyard.settings import CanaryMetric, CanarySettings

Verdict = Literal["pass", "fail", "not_enough_data"]
PASS, FAIL, NOT_ENOUGH = "pass", "fail", "not_enough_data"


@dataclass(frozen=True)
class MetricResult:
    """One metric's verdict with the figures behind it.

    ``canary``/``production`` are the metric's values (rates, or median latency in ms);
    ``effect`` is canary minus production in the metric's units (for latency the relative
    change of the median, 0.25 = 25 % slower); ``worse`` tells which sign hurts.
    """

    name: str
    verdict: Verdict
    critical: bool
    canary: float | None
    production: float | None
    effect: float | None
    p_value: float | None
    samples: tuple[int, int]  # (canary, production)
    tolerance: float
    worse: Literal["higher", "lower"]
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "samples": list(self.samples)}


def _worse_share(bad_c: int, n_c: int, bad_p: int, n_p: int) -> float:
    """One-sided p-value that the canary's share of bad outcomes is higher (z-test)."""
    table = [[bad_c, n_c - bad_c], [bad_p, n_p - bad_p]]
    if (bad_c + bad_p) in (0, n_c + n_p):
        return 1.0  # all good or all bad in both arms: no difference to find
    two_sided = stats.chi2_contingency(table, correction=False).pvalue
    canary_higher = bad_c / n_c > bad_p / n_p
    return two_sided / 2 if canary_higher else 1 - two_sided / 2


def proportion_metric(
    name: str,
    spec: CanaryMetric,
    alpha: float,
    good: tuple[int, int],
    prod_good: tuple[int, int],
    higher_is_better: bool,
) -> MetricResult:
    """A rate metric from (hits, trials) per arm; ``higher_is_better`` says which way hurts."""
    (hits_c, n_c), (hits_p, n_p) = good, prod_good
    worse = "lower" if higher_is_better else "higher"
    rate_c = hits_c / n_c if n_c else None
    rate_p = hits_p / n_p if n_p else None
    effect = rate_c - rate_p if rate_c is not None and rate_p is not None else None
    if n_c < spec.min_samples or n_p < spec.min_samples:
        return MetricResult(
            name, NOT_ENOUGH, spec.critical, rate_c, rate_p, effect, None, (n_c, n_p),
            spec.tolerance, worse,
            f"{n_c} canary / {n_p} production samples; {spec.min_samples} per arm needed",
        )  # fmt: skip
    # The "bad" outcome is what a worse canary has more of.
    bad_c, bad_p = (n_c - hits_c, n_p - hits_p) if higher_is_better else (hits_c, hits_p)
    p_value = _worse_share(bad_c, n_c, bad_p, n_p)
    assert effect is not None
    worse_by = -effect if higher_is_better else effect
    failed = p_value < alpha and worse_by > spec.tolerance
    if failed:
        detail = f"worse by {worse_by:.3g} (allowed {spec.tolerance:g}), p={p_value:.3g}"
    elif worse_by > spec.tolerance:
        detail = f"worse by {worse_by:.3g} but not significant (p={p_value:.3g} >= {alpha:g})"
    else:
        detail = f"within tolerance ({worse_by:+.3g} worse, allowed {spec.tolerance:g})"
    return MetricResult(
        name, FAIL if failed else PASS, spec.critical, rate_c, rate_p, effect, p_value,
        (n_c, n_p), spec.tolerance, worse, detail,
    )  # fmt: skip


def latency_metric(
    spec: CanaryMetric, alpha: float, canary: list[float], production: list[float]
) -> MetricResult:
    """Mann-Whitney U: is the canary slower than production plus the tolerated increase?"""
    n_c, n_p = len(canary), len(production)
    med_c = statistics.median(canary) if canary else None
    med_p = statistics.median(production) if production else None
    effect = med_c / med_p - 1 if med_c is not None and med_p else None
    if n_c < spec.min_samples or n_p < spec.min_samples:
        return MetricResult(
            "latency", NOT_ENOUGH, spec.critical, med_c, med_p, effect, None, (n_c, n_p),
            spec.tolerance, "higher",
            f"{n_c} canary / {n_p} production answered requests; {spec.min_samples} needed",
        )  # fmt: skip
    allowed = [x * (1 + spec.tolerance) for x in production]
    p_value = float(stats.mannwhitneyu(canary, allowed, alternative="greater").pvalue)
    failed = p_value < alpha
    detail = (
        f"median {med_c:.1f} ms vs {med_p:.1f} ms ({(effect or 0):+.1%}, allowed "
        f"+{spec.tolerance:.0%}), p={p_value:.3g}"
    )
    return MetricResult(
        "latency", FAIL if failed else PASS, spec.critical, med_c, med_p, effect, p_value,
        (n_c, n_p), spec.tolerance, "higher", detail,
    )  # fmt: skip


#: The rate metrics: (successes, trials) of an arm, and whether a higher rate is better.
PROPORTIONS: dict[str, tuple[Callable[[ArmStats], tuple[int, int]], bool]] = {
    "error_rate": (lambda a: (a.errors, a.requests), False),
    "format_validity": (lambda a: (a.format_valid, a.format_checked), True),
    "thumbs_up": (lambda a: (a.ratings_up, a.ratings_up + a.ratings_down), True),
}


def compare(canary: ArmStats, production: ArmStats, settings: CanarySettings) -> list[MetricResult]:
    """Every configured metric, canary arm against production arm."""
    results = []
    for name, spec in settings.metrics.items():
        if name == "latency":
            results.append(
                latency_metric(spec, settings.alpha, canary.latency_ms, production.latency_ms)
            )
            continue
        counts, higher_is_better = PROPORTIONS[name]
        results.append(
            proportion_metric(
                name,
                spec,
                settings.alpha,
                counts(canary),
                counts(production),
                higher_is_better=higher_is_better,
            )  # fmt: skip
        )
    return results


def arm_summary(arm: ArmStats) -> dict[str, Any]:
    """What a report shows of one arm: counts and rates (latency as median and p95)."""
    lat = sorted(arm.latency_ms)
    return {
        "requests": arm.requests,
        "errors": arm.errors,
        "error_rate": arm.error_rate,
        "format_checked": arm.format_checked,
        "format_valid": arm.format_valid,
        "format_validity_rate": arm.format_validity_rate,
        "ratings_up": arm.ratings_up,
        "ratings_down": arm.ratings_down,
        "thumbs_up_rate": arm.thumbs_up_rate,
        "latency_p50_ms": statistics.median(lat) if lat else None,
        "latency_p95_ms": lat[min(len(lat) - 1, int(0.95 * len(lat)))] if lat else None,
    }
