"""Tables, paired comparisons and the report's text from saved results: one row per model, in the HM paper's layout.

The report itself is a list of ``document`` blocks (``report_blocks``),
rendered as ``reports/index.md`` and as the self-contained
``reports/index.html``; the figures it shows are drawn by ``figures``.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from catride_core.config import Params
from catride_core.errors import ArtifactError
from catride_core.names import SCORES
from catride_core.report.document import (
    Block,
    Bullets,
    Heading,
    Image,
    Paragraph,
    Table,
)
from catride_core.report.published import Comparison, Departure
from catride_core.retrieval.bootstrap import is_different, paired_difference

BENIGN_COLUMNS = ("R@1", "R@2", "mAP", "NMI")
SUMMARY_COLUMNS = ("ERS", "ARS")
DIAGNOSTIC_COLUMNS = ("collapseness", "spread")
#: the columns that carry a bootstrap interval (``<column>_low``, ``<column>_high``)
INTERVAL_COLUMNS = (*SCORES, *SUMMARY_COLUMNS)
#: how each column is printed: cosines and distances with 3 decimals, percentages with 1
DECIMALS = {"TMA": 3, "ES:D": 3, "collapseness": 3, "spread": 3}
#: the scores the paired comparisons rank by
COMPARED = SUMMARY_COLUMNS
#: the robustness table as shown, in two parts so that it fits a 1,280 px page with its intervals: ERS, ARS and
#: the candidate and query attacks first (what a reader came for), then the embedding-space and misranking attacks
SHOWN_ROBUSTNESS = ((*SUMMARY_COLUMNS, *SCORES[:4]), SCORES[4:])

#: figure key -> its caption; the report shows those it is given, in this order
FIGURE_CAPTIONS = {
    "scores": "ERS and ARS per model, with their bootstrap intervals as error bars where the metrics give them.",
    "attacks": "The adversarial value of every attack per model, with its bootstrap interval where the metrics give one.",
    "tradeoff": "Clean R@1 against ERS and against ARS: one point per model (clean R@1 from `evaluate`).",
    "finetune": "Fine-tuning curves per model: training loss, clean test R@1, test-set collapseness,"
                " and the inner PGD's steps and objective per batch (the undefended model has no inner PGD).",
    "pretrain": "Benign pretraining, the start of every model: loss, clean test R@1 and collapseness per epoch.",
    "sweep": "Robustness against the attack budget eps, per model (the eps sweep).",
}


#: what ``evaluate`` always writes and the report reads (``R@K`` of other K are optional)
REQUIRED_BENIGN = ("R@1", "mAP", "NMI", *DIAGNOSTIC_COLUMNS)


def _not_a_number(key: str, value: Any, optional: bool = False) -> str | None:
    """Why ``value`` cannot be the number ``key`` shows (None is allowed where ``optional``), or None."""
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"{key!r} holds {value!r}, not a number"
    return None


def benign_problem(metrics: Mapping[str, Any]) -> str | None:
    """What makes an ``evaluate`` metrics file unusable for the report (a key missing, text for a number), or None."""
    missing = [key for key in REQUIRED_BENIGN if key not in metrics]
    if missing:
        return f"{missing[0]!r} is missing; rerun the model's evaluate stage"
    shown = (*BENIGN_COLUMNS, *DIAGNOSTIC_COLUMNS)
    return next(filter(None, (_not_a_number(key, metrics[key]) for key in shown if key in metrics)), None)


def robustness_problem(metrics: Mapping[str, Any]) -> str | None:
    """What makes a ``robustness`` metrics file unusable for the report, or None.

    It holds ``ERS`` and ``ARS`` (null where they are not defined) and an
    ``adversarial`` mapping of scores; where bootstrapped, interval bounds
    (numbers or null) and a ``bootstrap`` mapping with its ``resamples``.
    """
    if not isinstance(metrics.get("adversarial"), Mapping):
        return "'adversarial' is missing or not a mapping; rerun the model's robustness stage"
    missing = [key for key in SUMMARY_COLUMNS if key not in metrics]
    if missing:
        return f"{missing[0]!r} is missing; rerun the model's robustness stage"
    values = {key: metrics.get(key) for key in SUMMARY_COLUMNS}
    values |= {f"{key}_{bound}": metrics.get(f"{key}_{bound}") for key in SUMMARY_COLUMNS for bound in ("low", "high")}
    for side in ("adversarial", "adversarial_low", "adversarial_high"):
        scores = metrics.get(side) or {}
        if not isinstance(scores, Mapping):
            return f"{side!r} holds {scores!r}, not a mapping of scores"
        values |= {f"{side}.{score}": value for score, value in scores.items()}
    bootstrap = metrics.get("bootstrap")
    if bootstrap is not None and not (isinstance(bootstrap, Mapping) and isinstance(bootstrap.get("resamples"), int)):
        return f"'bootstrap' holds {bootstrap!r}, not a mapping with the number of resamples"
    # a score is a number; ERS, ARS and the bounds are null where they are not defined
    return next(filter(None, (_not_a_number(key, value, optional=not key.startswith("adversarial."))
                              for key, value in values.items())), None)


def robustness_table(
    models: Sequence[str], benign: Mapping[str, Mapping[str, Any]], robustness: Mapping[str, Mapping[str, Any]]
) -> pd.DataFrame:
    """One row per model: benign metrics, the ten adversarial values, ERS, ARS, diagnostics, then the intervals.

    Args:
        models: row order (``pretrained`` first, then the defenses).
        benign: model -> its ``evaluate`` metrics.
        robustness: model -> its ``robustness`` metrics (with an ``adversarial`` mapping and,
            where bootstrapped, ``adversarial_low``/``_high`` and ``ERS_low`` ... ``ARS_high``).

    The interval columns ``<score>_low``/``<score>_high`` follow the point
    values; they are missing (NaN) where the metrics hold no interval.
    """
    rows = []
    for model in models:
        metrics = robustness[model]
        row: dict[str, Any] = {"model": model}
        row |= {key: benign[model].get(key) for key in BENIGN_COLUMNS}
        row |= {key: metrics["adversarial"].get(key) for key in SCORES}
        row |= {key: metrics.get(key) for key in SUMMARY_COLUMNS}
        row |= {key: benign[model].get(key) for key in DIAGNOSTIC_COLUMNS}
        for bound in ("low", "high"):
            row |= {f"{key}_{bound}": (metrics.get(f"adversarial_{bound}") or {}).get(key) for key in SCORES}
            row |= {f"{key}_{bound}": metrics.get(f"{key}_{bound}") for key in SUMMARY_COLUMNS}
        rows.append(row)
    table = pd.DataFrame(rows)
    order = ["model", *BENIGN_COLUMNS, *SCORES, *SUMMARY_COLUMNS, *DIAGNOSTIC_COLUMNS]
    order += [f"{key}_{bound}" for key in INTERVAL_COLUMNS for bound in ("low", "high")]
    return table[order].astype({column: float for column in order[1:]})


def tradeoff_table(table: pd.DataFrame) -> pd.DataFrame:
    """model, clean R@1, ERS, ARS: the robustness/accuracy trade-off, one row per model (a DVC plot)."""
    return table[["model", "R@1", *SUMMARY_COLUMNS]].copy()


@dataclass(frozen=True)
class PairedComparison:
    """``better`` against the model ranked just below it, ``worse``, by one score on the same resampled queries.

    ``difference`` is the point value of better minus worse; ``low``/``high``
    the percentile interval of the row-wise differences of their bootstrap
    resamples, or None where either model has no resamples of the score.
    """

    score: str
    better: str
    worse: str
    difference: float
    low: float | None
    high: float | None

    @property
    def different(self) -> bool:
        """The difference is larger than its interval: the interval excludes 0 strictly (never for a model and itself)."""
        return self.low is not None and self.high is not None and is_different(self.low, self.high)


def paired_interval(first: np.ndarray, second: np.ndarray, confidence: float) -> tuple[float, float]:
    """The percentile interval of ``first - second`` over bootstrap resamples, row r of both on the same queries.

    Args:
        first, second: one value per resample (row r of each computed on the same resampled queries).
        confidence: e.g. 0.95; the interval cuts ``(1 - confidence) / 2`` from each tail
            (numpy's linear-interpolation percentiles).

    Shape:
        first, second: (resamples,).
    """
    first, second = np.asarray(first, dtype=float), np.asarray(second, dtype=float)
    if first.shape != second.shape or first.ndim != 1 or len(first) == 0:
        raise ArtifactError(f"paired bootstrap needs the same resamples for both models, got {first.shape} and "
                            f"{second.shape} values")
    low, high = paired_difference(first, second, confidence)
    return float(low), float(high)


def adjacent_comparisons(
    table: pd.DataFrame, resamples: Mapping[str, pd.DataFrame], score: str, confidence: float
) -> list[PairedComparison]:
    """Each pair of adjacent models in the ranking by ``score`` (best first), with its paired interval.

    Args:
        table: ``robustness_table``'s rows (the point values rank the models; ties keep the row order).
        resamples: model -> its bootstrap table (one row per resample, a column per score);
            a model missing here, or whose column holds a NaN, gets no interval.
        score: the column compared, e.g. ``ERS``.
        confidence: the interval's coverage, e.g. 0.95.
    """
    ranked = table.dropna(subset=[score]).sort_values(score, ascending=False, kind="stable")
    comparisons = []
    for (_, better), (_, worse) in itertools.pairwise(ranked.iterrows()):
        low = high = None
        columns = [resamples.get(m, pd.DataFrame()).get(score) for m in (better.model, worse.model)]
        if all(c is not None and len(c) and not c.isna().any() for c in columns):
            low, high = paired_interval(columns[0].to_numpy(), columns[1].to_numpy(), confidence)
        comparisons.append(PairedComparison(score, better.model, worse.model, float(better[score] - worse[score]),
                                            low, high))
    return comparisons


def paired_comparisons(
    table: pd.DataFrame, resamples: Mapping[str, pd.DataFrame], confidence: float
) -> list[PairedComparison]:
    """``adjacent_comparisons`` by each score of ``COMPARED`` (ERS, then ARS), in one list."""
    return [c for score in COMPARED for c in adjacent_comparisons(table, resamples, score, confidence)]


def _number(value: Any, column: str) -> str:
    return "n/a" if value is None or pd.isna(value) else f"{value:.{DECIMALS.get(column, 1)}f}"


def _with_interval(row: pd.Series, column: str) -> str:
    text = _number(row[column], column)
    low, high = row.get(f"{column}_low"), row.get(f"{column}_high")
    if low is None or high is None or pd.isna(low) or pd.isna(high):
        return text
    return f"{text} [{_number(low, column)}, {_number(high, column)}]"


def _ranking(table: pd.DataFrame, column: str) -> str:
    ranked = table.dropna(subset=[column]).sort_values(column, ascending=False, kind="stable")
    return " > ".join(f"{row.model} ({row[column]:.1f})" for _, row in ranked.iterrows()) or "n/a (attacks missing)"


def comparison_line(comparison: PairedComparison, confidence: float) -> str:
    """One sentence: the pair, the difference, its interval, and whether it is larger than the interval."""
    pair = f"{comparison.better} over {comparison.worse}: {comparison.score} {comparison.difference:+.1f}"
    if comparison.low is None:
        return f"{pair} (no bootstrap resamples to compare)"
    interval = f"{confidence:.0%} interval [{comparison.low:+.1f}, {comparison.high:+.1f}]"
    if comparison.different:
        return f"{pair}, {interval}: different (the interval excludes 0)"
    return f"{pair}, {interval}: not distinguishable on these queries (the interval contains 0)"


def _budget(value: float) -> str:
    """A pixel budget as in papers (``77/255``) when it is a whole number of 255ths, with its decimal value."""
    levels = value * 255
    return f"{round(levels)}/255 ({value:.4f})" if abs(levels - round(levels)) < 1e-9 else f"{value:.4f}"


def settings_rows(params: Params, commit: str, bootstrap: Mapping[str, Any] | None) -> list[tuple[str, str]]:
    """What produced the report: dataset, model, training and attack budgets, seeds, the code's commit."""
    prepare, pretrain, finetune, attack = params.prepare, params.pretrain, params.finetune, params.attack
    queries = "every test image" if attack.max_queries is None else f"the first {attack.max_queries} test images"
    rows = [
        ("dataset", f"{prepare.dataset} ({prepare.split} split, test fraction {prepare.test_fraction})"),
        ("model", f"{pretrain.arch}, {pretrain.embedding_dim}-d embedding; " + (
            f"pretrained {pretrain.epochs} epochs" if pretrain.epochs
            else "no pretraining: every model trains from the initialisation")),
        ("models compared", ", ".join(params.models)),
        ("fine-tuning", (f"{finetune.epochs} epochs; inner PGD eps {_budget(finetune.eps)}, "
                         f"step {_budget(finetune.step_size)}, {finetune.steps} steps")),
        ("attacks", (f"eps {_budget(attack.eps)}, step {_budget(attack.step_size)}, {attack.steps} sign-PGD steps"
                     f"{', random start' if attack.random_start else ''}, on {queries}")),
        ("seed", f"base.seed = {params.base.seed} (split, sampling, init, mining, attack targets)"),
    ]
    if bootstrap:
        rows.append(("intervals", (f"{bootstrap.get('confidence', 0.95):.0%} percentile bootstrap over the attacked"
                                   f" queries: {bootstrap.get('resamples')} resamples of {bootstrap.get('queries')}"
                                   f" queries, seed {bootstrap.get('seed')}, the same resamples for every model")))
    rows.append(("code", f"commit {commit}"))
    return rows


def report_blocks(
    table: pd.DataFrame,
    comparisons: Sequence[PairedComparison],
    confidence: float,
    settings: Sequence[tuple[str, str]],
    figures: Mapping[str, str],
    examples: Sequence[str] = (),
    published: Sequence[Block] = (),
    adaptive: Sequence[Block] = (),
) -> list[Block]:
    """The whole report: ranking and paired comparisons, the tables with intervals, the figures, the settings.

    Args:
        table: ``robustness_table``'s rows.
        comparisons: ``adjacent_comparisons`` for each score of ``COMPARED``, in that order.
        confidence: the intervals' coverage, as printed.
        settings: ``settings_rows``.
        figures: key of ``FIGURE_CAPTIONS`` -> the figure's path (only those given are shown).
        examples: paths of the retrieval-example grids, shown in this order.
        published: ``published_blocks`` where the dataset has published numbers, shown after the clean accuracy.
        adaptive: ``adaptive_blocks``, shown after the robustness tables.
    """
    blocks: list[Block] = [
        Heading("Robustness report", 1),
        Paragraph("Written by the `report` stage from `metrics/benign/*.json`, `metrics/robustness/*.json` and the"
                  " training logs; regenerate with `dvc repro`. R@K, mAP, NMI, CA, QA, ES:R, LTM, GTM, GTT, ERS and"
                  " ARS in %; TMA is a cosine and ES:D a distance. CA+/QA+ and ES:R, LTM, GTM, GTT: higher is more"
                  " robust; CA-/QA-, TMA, ES:D: lower is more robust."),
        Heading("Measured ranking"),
        Bullets(tuple(f"by {c}: {_ranking(table, c)}" for c in (*COMPARED, "R@1"))),
    ]
    if comparisons:
        blocks += [
            Paragraph(f"Paired comparisons of adjacent models, on the same resampled queries ({confidence:.0%}"
                      " interval of the difference): a difference is called real only if its interval excludes 0."),
            Bullets(tuple(comparison_line(c, confidence) for c in comparisons)),
        ]
    blocks += [
        Paragraph("ERS is RobRank's empirical robustness score; ARS is this project's attack-relative score"
                  " (see README, \"Metrics\"). `collapseness` > 0 on the test set means the model is collapsing."),
        Heading("Robustness"),
        Paragraph("ERS, ARS and each attack's adversarial value per model, with the bootstrap interval in brackets"
                  " where the metrics give one (`reports/robustness.csv` holds them in one table)."),
        *(Table(("model", *columns), tuple((row.model, *(_with_interval(row, c) for c in columns))
                                          for _, row in table.iterrows()))
          for columns in SHOWN_ROBUSTNESS),
        *adaptive,
        Heading("Clean accuracy and collapse diagnostics"),
        Table(("model", *BENIGN_COLUMNS, *DIAGNOSTIC_COLUMNS),
              tuple((row.model, *(_number(row[c], c) for c in (*BENIGN_COLUMNS, *DIAGNOSTIC_COLUMNS)))
                    for _, row in table.iterrows())),
        *published,
        Heading("Figures"),
    ]
    blocks += [Image(figures[key], caption) for key, caption in FIGURE_CAPTIONS.items() if key in figures]
    if examples:
        blocks += [Heading("Retrieval examples"),
                   Paragraph("Fixed test queries and their top results before and after an attack.")]
        blocks += [Image(path, f"Retrieval example: {path.rsplit('/', 1)[-1].removesuffix('.png')}") for path in examples]
    blocks += [Heading("Settings"), Table(("setting", "value"), tuple(settings))]
    return blocks


def _ours(comparison: Comparison) -> str:
    """Our value with its interval in brackets, or ``± std`` over k-means seeds (NMI)."""
    digits = DECIMALS.get(comparison.published.metric, 1)
    if comparison.ours is None:
        return "n/a"
    text = f"{comparison.ours:.{digits}f}"
    if comparison.low is not None and comparison.high is not None:
        return f"{text} [{comparison.low:.{digits}f}, {comparison.high:.{digits}f}]"
    return text if comparison.spread is None else f"{text} ± {comparison.spread:.{digits}f}"


def _within(comparison: Comparison) -> str:
    return {True: "yes", False: "no", None: "n/a"}[comparison.within]


def _setting(value: Any) -> str:
    """A params value as in params.yaml: budgets as k/255, lists in brackets, null for None."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return _budget(value) if abs(value * 255 - round(value * 255)) < 1e-9 and value < 1 else f"{value:g}"
    if isinstance(value, list):
        return "[" + ", ".join(_setting(item) for item in value) + "]"
    return str(value)


def published_blocks(
    dataset: str, tables: Mapping[str, Sequence[Comparison]], departures: Sequence[Departure], preset: str,
    confidence: float,
) -> list[Block]:
    """The section "Against the published numbers": one table per published source, then the protocol's departures.

    Args:
        dataset: the run's ``prepare.dataset``.
        tables: ``published.compare``'s comparisons, per published table.
        departures: ``published.protocol_departures`` against ``preset``.
        preset: the preset file of the published protocol, as shown (``presets/fashion.yaml``).
        confidence: the intervals' coverage, as printed.
    """
    blocks: list[Block] = [
        Heading("Against the published numbers"),
        Paragraph(f"Every published number on `{dataset}` from `docs/published.csv` against ours: ours with its"
                  f" {confidence:.0%} bootstrap interval where it has one (NMI: mean ± standard deviation over"
                  " k-means seeds), ours minus published, and whether the published value lies within our interval."
                  " GTM, ES:D, LTM and ERS are shown twice against the same published value: ours by the correct"
                  " rules (GTM, ES:D, LTM, ERS) and by RobRank's code (GTM:ref, ES:D:ref, LTM:ref, ERS:ref, where"
                  " `gtm_ref`, `es_ref` and `ltm_ref` were attacked). Published"
                  " mAP@R is RobRank's, with R fixed at 10: it is compared with our mAP@10."),
    ]
    for comparisons in tables.values():
        if not comparisons:
            continue
        first = comparisons[0].published
        notes = dict.fromkeys(note for c in comparisons for note in c.published.note.split("; ") if note)
        blocks += [
            Heading(first.source, 3),
            Bullets(tuple(notes)) if notes else Paragraph("No caveat given."),
            Table(("model", "score", "ours", "published", "difference", "published within ours"),
                  tuple((c.model, c.score, _ours(c), _number(c.published.value, c.published.metric),
                         "n/a" if c.difference is None else f"{c.difference:+.{DECIMALS.get(c.published.metric, 1)}f}",
                         _within(c)) for c in comparisons)),
        ]
    blocks.append(Heading("Departures from the published protocol", 3))
    if not departures:
        blocks.append(Paragraph(f"The run follows the published protocol (`{preset}`)."))
    else:
        blocks += [
            Paragraph(f"Where the run's params differ from `{preset}` (every key it sets but `prepare.root`,"
                      " `models` and `report`):"),
            Table(("setting", "this run", "published protocol"),
                  tuple((d.key, _setting(d.ours), _setting(d.published)) for d in departures)),
        ]
    return blocks


#: the gradient-norm check flags an attack whose gradient at the clean images is below this share of the undefended
#: model's (a collapsed gradient is the usual sign of masking)
GRADIENT_COLLAPSE = 0.01


def _interval(values: Mapping[str, Any], key: str) -> str:
    point, low, high = values.get(key), values.get(f"{key}_low"), values.get(f"{key}_high")
    if point is None:
        return "n/a"
    return f"{point:.1f}" + ("" if low is None or high is None else f" [{low:.1f}, {high:.1f}]")


def _gap(score: str, value: float) -> str:
    return f"{value:+.{DECIMALS.get(score, 1)}f}"


def adaptive_blocks(models: Sequence[str], robustness: Mapping[str, Mapping[str, Any]], surrogate: str) -> list[Block]:
    """The adaptive evaluation (docs/method.md section 11) beside RobRank's protocol: ERS and ARS both ways, whether
    the ranking changes, the scores PGD-32 overestimates, and each model's checks. Empty where no model has one."""
    shown = [m for m in models if isinstance(robustness[m].get("adaptive"), Mapping)]
    if not shown:
        return []
    rows, checks, flags = [], [], []
    reference = robustness.get(surrogate, {}).get("adaptive", {}).get("gradient_norm", {})
    for model in shown:
        metrics, adaptive = robustness[model], robustness[model]["adaptive"]
        pgd = adaptive["pgd_same_queries"]
        rows.append((model, _interval(metrics, "ERS"), _interval(pgd, "ERS"), _interval(metrics, "ERS:adaptive"),
                     _interval(pgd, "ARS"), _interval(metrics, "ARS:adaptive")))
        found = adaptive["checks"]
        failed = [name for name, check in found.items() if not check["passed"]]
        collapsed = [name for name, norm in adaptive["gradient_norm"].items()
                     if model != surrogate and reference.get(name) and norm < GRADIENT_COLLAPSE * reference[name]]
        unbounded = found["unbounded"]
        checks.append(
            f"{model}: unbounded budget (eps {unbounded['eps']:g}) leaves ES:R {unbounded['ES:R']:.1f} and CA+ "
            f"{unbounded['CA+']:.1f} (must be <= {unbounded['ceiling']:g}); ES:R at eps x 1/4, 1/2, 1 and unbounded "
            f"{', '.join(f'{v:.1f}' for v in found['monotone']['ES:R'])}; "
            + ("all checks passed" if not failed else f"FAILED: {', '.join(failed)}")
            + ("" if not collapsed else f"; gradient below {GRADIENT_COLLAPSE:g} x {surrogate}'s for "
               f"{', '.join(collapsed)} (masking?)"))
        if adaptive["overestimated"]:
            flags.append(f"{model}: " + ", ".join(
                f"{score} {_gap(score, gap['gap'])} [{_gap(score, gap['low'])}, {_gap(score, gap['high'])}]"
                for score, gap in sorted(adaptive["overestimated"].items(), key=lambda item: SCORES.index(item[0]))))
    by_pgd = sorted(shown, key=lambda m: -(robustness[m]["adaptive"]["pgd_same_queries"]["ERS"] or -1e9))
    by_adaptive = sorted(shown, key=lambda m: -(robustness[m].get("ERS:adaptive") or -1e9))
    queries = robustness[shown[0]]["adaptive"]["queries"]
    return [
        Heading("Adaptive evaluation"),
        Paragraph(f"Each ERS attack run harder on {queries} spread test queries (docs/method.md section 11): APGD,"
                  f" seeded restarts and transfer from `{surrogate}`; per query the worst for the model of these and"
                  " RobRank's PGD-32. ERS (all attacked queries) is the published protocol's; the next columns are"
                  " PGD-32 and the adaptive attack on the adaptive queries, with bootstrap intervals."),
        Table(("model", "ERS", "ERS, PGD-32", "ERS, adaptive", "ARS, PGD-32", "ARS, adaptive"), tuple(rows)),
        Bullets((f"ranking by ERS under PGD-32: {' > '.join(by_pgd)}",
                 f"ranking by ERS under the adaptive attack: {' > '.join(by_adaptive)}",
                 "the order of the models " + ("does not change" if by_pgd == by_adaptive else "changes")
                 + " under adaptive attacks")),
        Heading("Where PGD-32 overestimates robustness", 3),
        Paragraph("Per model, the scores the adaptive attack makes worse for the model by more than the interval of"
                  " the paired difference: PGD-32 overestimates robustness there by this much (points of the score;"
                  " TMA a cosine, ES:D a distance), with the interval of the difference."),
        Bullets(tuple(flags) or ("none",)),
        Heading("Checks", 3),
        Bullets(tuple(checks)),
    ]
