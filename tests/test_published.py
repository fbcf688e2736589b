"""docs/published.csv and its loader: the transcription checked through ERS, the loader's one-line errors."""

from __future__ import annotations

import re
from itertools import groupby

import pytest
from support import ROOT

from catride_core.errors import ArtifactError
from catride_core.names import SCORES
from catride_core.report.published import COLUMNS, METRICS, parse_published
from catride_core.retrieval.robustness import ers

PATH = ROOT / "docs" / "published.csv"
HEADER = ",".join(COLUMNS)
GOOD = "t,a source,fashion,none,m,R@1,87.6,a caveat"


@pytest.fixture(scope="module")
def rows():
    return parse_published(PATH.read_text(), str(PATH))


def test_the_file_holds_robranks_tables_and_the_hm_papers_per_attack_rows(rows):
    tables = {row.table: row.source for row in rows}
    assert set(tables) == {"robrank_fashion", "robrank_readme", "hm_paper"}
    assert "doc/dmltab-fashion.txt" in tables["robrank_fashion"] and "README.md" in tables["robrank_readme"]
    assert "CVPR 2022" in tables["hm_paper"]
    readme = {(row.dataset, row.defense) for row in rows if row.table == "robrank_readme"}
    assert readme == {(d, m) for d in ("mnist", "fashion", "cub", "cars", "sop") for m in ("none", "est", "act", "hm")}
    # RobRank's "mAP@R" is stored as mAP@10, with a note saying why
    assert all("R fixed at 10" in row.note for row in rows if row.metric == "mAP@10")
    assert {row.metric for row in rows if row.table == "robrank_fashion"} == set(METRICS)


def test_every_rows_ers_is_ers_of_its_ten_scores(rows):
    # a row that gives all ten scores and ERS checks its own transcription: ERS is published to 0.1
    checked = 0
    key = lambda row: (row.table, row.dataset, row.defense)
    for group, values in groupby(sorted(rows, key=key), key=key):
        values = {row.metric: row.value for row in values}
        if all(score in values for score in SCORES):
            assert ers(values) == pytest.approx(values["ERS"], abs=0.1), group
            checked += 1
    assert checked == 13  # 3 Fashion rows of RobRank's file, 10 of the HM paper


def test_no_published_number_is_typed_into_the_code(rows):
    # the report's numbers come from the data file: no published value of three digits or more (87.6, 0.990)
    # appears in the report's code (shorter ones, 0.2 or 3.6, are figure sizes and margins as well)
    code = "\n".join(path.read_text() for path in [*(ROOT / "catride_core" / "report").glob("*.py"),
                                                   ROOT / "catride_core" / "commands" / "report.py"])
    literals = set(re.findall(r"(?<![\w.])\d+\.\d+", code))
    published = {text for row in rows if len(re.sub(r"\D", "", text := f"{row.value:g}")) >= 3}
    typed = published & literals
    assert not typed, f"published values typed into the code: {sorted(typed)}"


@pytest.mark.parametrize("text, message", [
    ("table,source\nt,s", "the columns are ['table', 'source'], expected"),
    (f"{HEADER}\n" + GOOD.replace("R@1", "mAP@R"), "line 2: metric 'mAP@R' is not one of"),
    (f"{HEADER}\n" + GOOD.replace("fashion", "imagenet"), "line 2: dataset 'imagenet' is not one of"),
    (f"{HEADER}\n" + GOOD.replace("none,", "vanilla,"), "line 2: defense 'vanilla' is not one of"),
    (f"{HEADER}\n" + GOOD.replace("87.6", "high"), "line 2: value 'high' is not a number"),
    (f"{HEADER}\n" + GOOD.replace("87.6", "nan"), "line 2: value 'nan' is not finite"),
    (f"{HEADER}\n" + GOOD.replace("a source", ""), "line 2: column 'source' is empty"),
    (f"{HEADER}\n{GOOD}\n{GOOD}", "line 3: R@1 of none on fashion is given twice in table 't'"),
    (f"{HEADER}\n{GOOD}\n" + GOOD.replace("a source", "another").replace("R@1", "R@2"), "line 3: table 't' cites"),
])
def test_a_bad_file_is_one_line_naming_the_file_and_the_line(text, message):
    with pytest.raises(ArtifactError) as error:
        parse_published(text, "docs/published.csv")
    assert str(error.value).startswith("docs/published.csv: ") and message in str(error.value)
    assert "\n" not in str(error.value)


def test_a_good_line_becomes_a_typed_row():
    (row,) = parse_published(f"{HEADER}\n{GOOD}\n", "x.csv")
    assert (row.table, row.dataset, row.defense, row.metric, row.value, row.note) == (
        "t", "fashion", "none", "R@1", 87.6, "a caveat")
