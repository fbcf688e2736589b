"""``catride report`` on small saved results: every table, figure and page it writes, and the HTML page rendered
offline in headless Chromium."""

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from PIL import Image
from saved_results import write_results
from support import ROOT

from catride_core.commands.report import report
from catride_core.report.palette import MODEL_COLOURS

PARAMS = "models: [pretrained, tride, ca_tride]\nreport:\n  example_models: [ca_tride]\n"
FIGURES = {"scores", "attacks", "tradeoff", "finetune", "pretrain"}
CHROMIUM = shutil.which("chromium")
#: no network at all: every host resolves to nothing and every request goes to a closed port
OFFLINE = ["--headless", "--disable-gpu", "--no-sandbox", "--proxy-server=127.0.0.1:9",
           "--host-resolver-rules=MAP * ~NOTFOUND", "--hide-scrollbars"]


def write_png(path: Path, colour: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (40, 30), colour).save(path)


def run_report(root: Path, *extra: str):
    (root / "params.yaml").write_text(PARAMS)
    out = root / "reports"
    args = ["--params", root / "params.yaml", "--metrics", root / "metrics", "--bootstrap", root / "bootstrap",
            "--logs", root / "logs", "--table", out / "robustness.csv", "--tradeoff", out / "tradeoff.csv",
            "--markdown", out / "index.md", "--html", out / "index.html", "--figures", out / "figures",
            "--commit", "abc123", *extra]
    return CliRunner().invoke(report, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    root = write_results(tmp_path_factory.mktemp("results"))
    write_png(root / "reports" / "sweep.png", "red")
    for name in ("pretrained_es", "ca_tride_es"):
        write_png(root / "reports" / "examples" / f"{name}.png", "blue")
    result = run_report(root, "--sweep", root / "reports" / "sweep.png", "--examples", root / "reports" / "examples")
    assert result.exit_code == 0, result.output
    return root / "reports", result.output


def test_report_writes_the_tables_with_intervals(written):
    out, printed = written
    table = pd.read_csv(out / "robustness.csv")
    assert list(table["model"]) == ["pretrained", "tride", "ca_tride"] and table.loc[2, "ERS_low"] == 28.5
    assert pd.read_csv(out / "tradeoff.csv").columns.tolist() == ["model", "R@1", "ERS", "ARS"]
    assert "ca_tride" in printed


def test_report_draws_every_figure_as_a_png(written):
    out, _ = written
    assert {p.stem for p in (out / "figures").iterdir()} == FIGURES
    for path in (out / "figures").iterdir():
        with Image.open(path) as image:
            assert image.format == "PNG" and image.width > 600


def test_markdown_and_html_say_the_same_and_show_every_image(written):
    out, _ = written
    markdown, page = (out / "index.md").read_text(), (out / "index.html").read_text()
    links = re.findall(r"!\[[^]]*\]\(([^)]+)\)", markdown)
    assert sorted(links) == sorted([*(f"figures/{f}.png" for f in FIGURES), "sweep.png", "examples/ca_tride_es.png",
                                    "examples/pretrained_es.png"])
    assert all((out / link).is_file() for link in links)
    sources = re.findall(r'<img src="([^"]+)"', page)
    assert len(sources) == len(links) and all(s.startswith("data:image/png;base64,") for s in sources)
    for heading in re.findall(r"^#+ (.+)$", markdown, re.MULTILINE):
        assert re.search(rf"<h\d>{re.escape(heading)}</h\d>", page), heading
    # the paired comparison of adjacent models (tests/saved_results.py: 80 % intervals)
    assert "ca_tride over tride: ERS +1.0, 80% interval [-0.6, +2.6]: not distinguishable" in markdown
    assert "tride over pretrained: ERS +19.0, 80% interval [+9.4, +12.6]: different" in markdown
    assert "| code | commit abc123 |" in markdown


def test_a_missing_optional_input_fails_with_one_line_before_writing(tmp_path):
    root = write_results(tmp_path)
    result = run_report(root, "--sweep", root / "reports" / "sweep.png")
    assert result.exit_code == 1 and result.output.strip() == f"error: {root / 'reports' / 'sweep.png'}: missing; " \
                                                              "run the stage that writes it first"
    assert not (root / "reports" / "index.md").exists() and not (root / "reports" / "figures").exists()


def chromium(page: Path, *args: str) -> str:
    run = subprocess.run([CHROMIUM, *OFFLINE, f"--user-data-dir={page.parent / '.chromium'}", *args, page.as_uri()],
                         check=False, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    return run.stdout


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (Debian: apt-get install -y chromium); "
                                             "the offline render of reports/index.html is not checked")
def test_html_renders_offline_in_headless_chromium_with_every_image_loaded(written):
    out, _ = written
    # a copy beside the page that marks each image once the page has loaded (the page itself runs no script)
    probe = out / "probe.html"
    probe.write_text((out / "index.html").read_text().replace("</body>", (
        "<script>window.addEventListener('load', () => { for (const i of document.images)"
        " i.setAttribute('data-loaded', String(i.complete && i.naturalWidth > 0)); });</script></body>")))
    dom = chromium(probe, "--virtual-time-budget=10000", "--dump-dom")
    loaded = re.findall(r'data-loaded="(\w+)"', dom)
    assert loaded == ["true"] * 8, loaded
    shot = out / "screenshot.png"
    chromium(out / "index.html", f"--screenshot={shot}", "--window-size=1280,4000")
    pixels = np.asarray(Image.open(shot).convert("RGB"))
    assert pixels.shape[:2] == (4000, 1280)
    not_white = (pixels < 245).any(axis=2).mean()
    assert not_white > 0.02, f"screenshot is nearly blank ({not_white:.1%} of pixels drawn)"
    # the figures are drawn: the colour of ca_tride's bars is on the page
    colour = np.array([int(MODEL_COLOURS["ca_tride"][i:i + 2], 16) for i in (1, 3, 5)])
    assert (np.abs(pixels.astype(int) - colour).sum(axis=2) < 12).sum() > 200


def table_widths(page: Path, width: int) -> tuple[int, list[int]]:
    """The page's layout width and each table's right edge, in CSS px, rendered in a ``width``-px wide window."""
    probe = page.parent / f"widths-{page.stem}.html"
    probe.write_text(page.read_text().replace("</body>", (
        "<script>window.addEventListener('load', () => { document.body.setAttribute('data-viewport',"
        " String(document.documentElement.clientWidth)); for (const t of document.querySelectorAll('table'))"
        " t.setAttribute('data-right', String(Math.ceil(t.getBoundingClientRect().right))); });</script></body>")))
    dom = chromium(probe, f"--window-size={width},2000", "--virtual-time-budget=10000", "--dump-dom")
    probe.unlink()
    return int(re.search(r'data-viewport="(\d+)"', dom).group(1)), [int(r) for r in re.findall(r'data-right="(\d+)"', dom)]


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (Debian: apt-get install -y chromium); "
                                             "the report's layout on a 1,280 px screen is not checked")
@pytest.mark.parametrize("which", ["written", "committed"])
def test_no_table_of_the_report_is_wider_than_a_laptop_screen(which, written, tmp_path):
    # the committed report of the default pipeline (seven models), and one written here with intervals on every score
    page = written[0] / "index.html" if which == "written" else shutil.copy(ROOT / "reports" / "index.html", tmp_path)
    viewport, rights = table_widths(Path(page), 1280)
    assert viewport == 1280 and len(rights) >= 4, (viewport, rights)
    assert max(rights) <= viewport, f"a table runs off a 1,280 px page: right edges {rights}"
    # and the check can fail: in a 700 px window the same tables run off the page
    narrow, rights = table_widths(Path(page), 700)
    assert max(rights) > narrow


def test_report_of_a_subset_of_attacks_has_no_composite_and_still_draws(tmp_path):
    # attack.names = [es]: ERS and ARS are null, and nothing is bootstrapped
    root = write_results(tmp_path)
    for model in ("pretrained", "tride", "ca_tride"):
        path = root / "metrics" / "robustness" / f"{model}.json"
        path.write_text('{"ERS": null, "ARS": null, "adversarial": {"ES:D": 0.5, "ES:R": 40.0}, "clean": {}}')
    (root / "params.yaml").write_text(PARAMS)
    out = root / "reports"
    result = CliRunner().invoke(report, [str(a) for a in (
        "--params", root / "params.yaml", "--metrics", root / "metrics", "--table", out / "robustness.csv",
        "--tradeoff", out / "tradeoff.csv", "--markdown", out / "index.md", "--html", out / "index.html",
        "--figures", out / "figures", "--commit", "abc")], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert {p.stem for p in (out / "figures").iterdir()} == {"scores", "attacks", "tradeoff"}  # no --logs
    markdown = (out / "index.md").read_text()
    assert "- by ERS: n/a (attacks missing)" in markdown and "interval [" not in markdown
    # the robustness table in its two parts: ERS, ARS, CA, QA; then TMA, ES:D, ES:R, LTM, GTM, GTT
    assert "| pretrained | n/a | n/a | n/a | n/a | n/a | n/a |" in markdown
    assert "| pretrained | n/a | 0.500 | 40.0 | n/a | n/a | n/a |" in markdown
