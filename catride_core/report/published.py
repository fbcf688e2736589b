"""Published numbers (``docs/published.csv``) and how this run's results compare with them.

The data file holds one published number per row, naming its source; nothing
here types a number in. ``parse_published`` checks the file, ``compare`` lines
our value (with its interval where one exists) up with each published value of
the run's dataset, and ``protocol_departures`` lists where the run's params
leave the published protocol (``presets/<dataset>.yaml``).
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from catride_core import names
from catride_core.config import Params
from catride_core.errors import ArtifactError

COLUMNS = ("table", "source", "dataset", "defense", "published_model", "metric", "value", "note")
#: benign metrics with a bootstrap interval in the evaluate metrics (``benign_low`` / ``benign_high``)
BENIGN_METRICS = ("R@1", "R@2", "mAP", "mAP@10")
#: every metric a published row may give, in the order the comparison shows them
METRICS = (*BENIGN_METRICS, "NMI", *names.SCORES, "ERS")
#: the composite whose reference-rule version (ERS:ref) puts each reference score in place of its ERS score
REFERENCE_COMPOSITES = {"ERS": "ERS:ref"}
#: preset keys that are not part of the protocol: where the data lives, which models run, what the report draws
NOT_PROTOCOL = ("prepare.root", "models", "report")


@dataclass(frozen=True)
class PublishedValue:
    """One published number: which table and source, dataset and defense (our names), metric, value, caveats."""

    table: str
    source: str
    dataset: str
    defense: str
    published_model: str
    metric: str
    value: float
    note: str


def parse_published(text: str, path: str) -> list[PublishedValue]:
    """The rows of ``docs/published.csv``, checked.

    Every column of ``COLUMNS`` and no other; dataset, defense and metric known
    names (``names.DATASETS``, ``names.DEFENSES``, ``METRICS``); a finite value;
    one source per table; no metric given twice for a table, dataset and defense.

    Raises:
        ArtifactError: one line naming the file, the line and the column of the first problem.
    """
    try:
        frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    except (ValueError, pd.errors.ParserError) as exc:
        raise ArtifactError(f"{path}: not a readable CSV file ({str(exc).strip()})") from None
    if tuple(frame.columns) != COLUMNS:
        raise ArtifactError(f"{path}: the columns are {list(frame.columns)}, expected {list(COLUMNS)}")
    rows: list[PublishedValue] = []
    sources: dict[str, str] = {}
    seen: set[tuple[str, str, str, str]] = set()
    for number, record in enumerate(frame.to_dict("records"), start=2):  # line 1 is the header
        where = f"{path}: line {number}"
        empty = [column for column in COLUMNS[:-1] if not record[column].strip()]
        if empty:
            raise ArtifactError(f"{where}: column {empty[0]!r} is empty")
        for column, known in (("dataset", names.DATASETS), ("defense", names.DEFENSES), ("metric", METRICS)):
            if record[column] not in known:
                raise ArtifactError(f"{where}: {column} {record[column]!r} is not one of {list(known)}")
        try:
            value = float(record["value"])
        except ValueError:
            raise ArtifactError(f"{where}: value {record['value']!r} is not a number") from None
        if not math.isfinite(value):
            raise ArtifactError(f"{where}: value {record['value']!r} is not finite")
        if sources.setdefault(record["table"], record["source"]) != record["source"]:
            raise ArtifactError(f"{where}: table {record['table']!r} cites {record['source']!r}, an earlier line "
                                f"{sources[record['table']]!r}")
        key = (record["table"], record["dataset"], record["defense"], record["metric"])
        if key in seen:
            raise ArtifactError(f"{where}: {record['metric']} of {record['defense']} on {record['dataset']} is given "
                                f"twice in table {record['table']!r}")
        seen.add(key)
        rows.append(PublishedValue(**(record | {"value": value})))
    return rows


@dataclass(frozen=True)
class Comparison:
    """Our value of one score against one published value.

    ``score`` is ours: the published metric itself, or its reference-rule
    version (``GTM:ref``, ``ES:D:ref``, ``LTM:ref``, ``ERS:ref``) against the same published value.
    ``low``/``high`` are our bootstrap interval, ``spread`` the standard
    deviation over k-means seeds (NMI); each None where there is none.
    """

    model: str
    score: str
    published: PublishedValue
    ours: float | None
    low: float | None
    high: float | None
    spread: float | None

    @property
    def difference(self) -> float | None:
        """Ours minus published."""
        return None if self.ours is None else self.ours - self.published.value

    @property
    def within(self) -> bool | None:
        """Whether the published value lies within our interval (ends included); None without an interval."""
        if self.low is None or self.high is None:
            return None
        return self.low <= self.published.value <= self.high


def our_scores(metric: str) -> tuple[str, ...]:
    """Our scores compared with a published metric: itself, then its reference-rule version where there is one."""
    reference = {score: ref for ref, score in names.REFERENCE_SCORES.items()} | REFERENCE_COMPOSITES
    return (metric, reference[metric]) if metric in reference else (metric,)


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def our_value(score: str, benign: Mapping[str, Any], robustness: Mapping[str, Any]) -> tuple[float | None, ...]:
    """(value, low, high, spread) of one of our scores, from a model's evaluate and robustness metrics.

    Benign means take ``benign_low``/``benign_high``; NMI its ``NMI_std``; an
    attack score ``adversarial``/``adversarial_low``/``adversarial_high``;
    ERS and ERS:ref their ``_low``/``_high``. What the metrics lack is None.
    """
    if score in BENIGN_METRICS or score == "NMI":
        bounds = [_number((benign.get(f"benign_{end}") or {}).get(score)) for end in ("low", "high")]
        return _number(benign.get(score)), *bounds, _number(benign.get("NMI_std")) if score == "NMI" else None
    if score in (*REFERENCE_COMPOSITES, *REFERENCE_COMPOSITES.values()):
        return _number(robustness.get(score)), _number(robustness.get(f"{score}_low")), \
            _number(robustness.get(f"{score}_high")), None
    sides = [_number((robustness.get(side) or {}).get(score))
             for side in ("adversarial", "adversarial_low", "adversarial_high")]
    return *sides, None


def compare(
    rows: Sequence[PublishedValue],
    dataset: str,
    models: Sequence[str],
    benign: Mapping[str, Mapping[str, Any]],
    robustness: Mapping[str, Mapping[str, Any]],
) -> dict[str, list[Comparison]]:
    """Per published table of ``dataset``: each of ``models`` that has published rows there, each score.

    Tables keep the file's order; within one, models follow ``models`` and
    scores follow ``METRICS`` (each with its reference-rule version after it).
    """
    tables: dict[str, list[Comparison]] = {}
    for table in dict.fromkeys(row.table for row in rows if row.dataset == dataset):
        found = {(row.defense, row.metric): row for row in rows if row.table == table and row.dataset == dataset}
        tables[table] = [
            Comparison(model, score, found[model, metric], *our_value(score, benign[model], robustness[model]))
            for model in models
            for metric in METRICS
            if (model, metric) in found
            for score in our_scores(metric)
        ]
    return tables


@dataclass(frozen=True)
class Departure:
    """A protocol key where the run differs from the published protocol: its value here and in the preset."""

    key: str
    ours: Any
    published: Any


def preset_keys(preset: Mapping[str, Any], prefix: str = "") -> Iterator[str]:
    """The dotted keys a preset sets (``finetune.none.miner``), but for ``NOT_PROTOCOL``."""
    for key, value in preset.items():
        dotted = f"{prefix}{key}"
        if any(dotted == skip or dotted.startswith(f"{skip}.") for skip in NOT_PROTOCOL):
            continue
        if isinstance(value, Mapping):
            yield from preset_keys(value, f"{dotted}.")
        else:
            yield dotted


def _value(params: Params, key: str) -> Any:
    node: Any = params
    for part in key.split("."):
        node = getattr(node, part)
    return node


def protocol_departures(run: Params, preset: Params, keys: Sequence[str]) -> list[Departure]:
    """Each of ``keys`` (``preset_keys`` of the preset's file) where the run's value differs from the preset's.

    Both sides are validated params, so ``77/255`` and 0.30196... are one value.
    """
    return [Departure(key, _value(run, key), _value(preset, key))
            for key in keys if _value(run, key) != _value(preset, key)]
