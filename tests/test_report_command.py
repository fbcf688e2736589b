"""``catride report`` on small saved results: every table, figure and page it writes, and the HTML page rendered
offline in headless Chromium."""

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from click.testing import CliRunner
from PIL import Image
from saved_results import write_results
from support import ROOT

from catride_core.commands.report import report
from catride_core.report.palette import MODEL_COLOURS

PARAMS = "models: [pretrained, tride, ca_tride]\nadaptive:\n  surrogate: pretrained\nreport:\n  example_models: [ca_tride]\n"
FIGURES = {"scores", "attacks", "tradeoff", "finetune", "pretrain"}
CHROMIUM = shutil.which("chromium")
#: no network at all: every host resolves to nothing and every request goes to a closed port
OFFLINE = ["--headless", "--disable-gpu", "--no-sandbox", "--proxy-server=127.0.0.1:9",
           "--host-resolver-rules=MAP * ~NOTFOUND", "--hide-scrollbars"]


def write_png(path: Path, colour: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (40, 30), colour).save(path)


def run_report(root: Path, *extra: str, params: str = PARAMS):
    (root / "params.yaml").write_text(params)
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
    # the examples of report.example_models, and a stale one of a model no longer shown, which the report leaves out
    for name in ("ca_tride_es", "ca_tride_ca_plus", "pretrained_es"):
        write_png(root / "reports" / "examples" / f"{name}.png", "blue")
    result = run_report(root, "--sweep", root / "reports" / "sweep.png", "--examples", root / "reports" / "examples")
    assert result.exit_code == 0, result.output
    return root / "reports", result.output


#: a Fashion-MNIST run of vanilla, ACT and TRIDE (no published row), the rest of params.yaml at its defaults
FASHION = "prepare:\n  dataset: fashion\nmodels: [none, act, tride]\nreport:\n  example_models: [tride]\n"
PUBLISHED = ("--published", ROOT / "docs" / "published.csv", "--presets", ROOT / "presets")


def with_reference_rule(root: Path, model: str, gtm_ref: float, ers_ref: float) -> None:
    """Add GTM:ref and ERS:ref (and their intervals, +- 1.5) to a saved robustness result, as gtm_ref leaves them."""
    path = root / "metrics" / "robustness" / f"{model}.json"
    metrics = json.loads(path.read_text())
    for side, shift in (("adversarial", 0.0), ("adversarial_low", -1.5), ("adversarial_high", 1.5)):
        metrics[side]["GTM:ref"] = gtm_ref + shift
    metrics |= {"ERS:ref": ers_ref, "ERS:ref_low": ers_ref - 1.5, "ERS:ref_high": ers_ref + 1.5}
    path.write_text(json.dumps(metrics))


def report_of(root: Path, params: str, *extra) -> str:
    result = run_report(root, *extra, params=params)
    assert result.exit_code == 0, result.output
    return (root / "reports" / "index.md").read_text()


@pytest.fixture(scope="module")
def fashion(tmp_path_factory):
    root = write_results(tmp_path_factory.mktemp("fashion"), ("none", "act", "tride"))
    with_reference_rule(root, "none", gtm_ref=12.0, ers_ref=4.4)
    return root, report_of(root, FASHION, *PUBLISHED)


def test_a_fashion_run_is_set_against_each_published_table_of_fashion(fashion):
    _, markdown = fashion
    section = markdown.split("## Against the published numbers", 1)[1].split("## Figures", 1)[0]
    # one table per published source of Fashion-MNIST, each naming its source and its caveats
    assert section.count("### RobRank repository") == 2 and "doc/dmltab-fashion.txt" in section
    assert "- best-epoch numbers of multi-GPU runs" in section
    # saved_results: ERS of none is 4.0 [2.5, 5.5]; published 4.2 (per attack) and 4.5 (README): within
    assert "| none | ERS | 4.0 [2.5, 5.5] | 4.2 | -0.2 | yes |" in section
    assert "| none | ERS | 4.0 [2.5, 5.5] | 4.5 | -0.5 | yes |" in section
    # GTM (the 9th score, 8.0) and GTM:ref against the same published 12.6; ERS:ref likewise
    assert "| none | GTM | 8.0 [7.5, 8.5] | 12.6 | -4.6 | no |" in section
    assert "| none | GTM:ref | 12.0 [10.5, 13.5] | 12.6 | -0.6 | yes |" in section
    assert "| none | ERS:ref | 4.4 [2.9, 5.9] | 4.2 | +0.2 | yes |" in section
    # act was not attacked with gtm_ref: its reference-rule rows say so
    assert "| act | GTM:ref | n/a | 60.2 | n/a | n/a |" in section
    # benign: RobRank's mAP@R against our mAP@10 (78.0 +- 1), NMI as mean +- std over k-means seeds; TMA with 3 decimals
    assert "| none | mAP@10 | 78.0 [77.0, 79.0] | 83.1 | -5.1 | no |" in section
    assert "| none | NMI | 70.0 ± 0.5 | 76.6 | -6.6 | n/a |" in section
    assert "| act | TMA | 4.000 [3.500, 4.500] | 0.259 | +3.741 | no |" in section
    # tride has no published row
    assert "| tride |" not in section


def test_the_fashion_runs_departures_from_robranks_protocol_are_listed(fashion):
    _, markdown = fashion
    section = markdown.split("### Departures from the published protocol", 1)[1].split("## Figures", 1)[0]
    assert "presets/fashion.yaml`" in section
    assert "| pretrain.epochs | 8 | 0 |" in section and "| finetune.none.miner | gradual_semihard | random |" in section
    assert "| attack.max_queries | 250 | null |" in section
    assert "| finetune.tride.ramp | progress | epoch |" in section
    # the data's folder, the models and the report's figures are not the protocol
    assert "| prepare.root |" not in section and "| models |" not in section and "| report." not in section


def test_a_run_without_pretraining_has_no_pretraining_figure(tmp_path):
    # pretrain.epochs 0 logs the initialisation's one row of epoch 0, without a loss: there is no curve to draw
    root = write_results(tmp_path, ("none", "act"))
    pd.DataFrame({"epoch": [0], "step": [0], "R@1": [80.0], "collapseness": [-0.2], "spread": [1.1]}).to_csv(
        root / "logs" / "pretrain.csv", index=False)
    markdown = report_of(root, "pretrain:\n  epochs: 0\nmodels: [none, act]\nreport:\n  example_models: [act]\n")
    assert not (root / "reports" / "figures" / "pretrain.png").exists() and "figures/pretrain.png" not in markdown
    assert (root / "reports" / "figures" / "finetune.png").exists()
    assert "no pretraining: every model trains from the initialisation" in markdown


def test_a_run_with_the_preset_applied_follows_the_published_protocol(tmp_path):
    root = write_results(tmp_path, ("none", "act"))
    params = yaml.safe_load((ROOT / "presets" / "fashion.yaml").read_text()) | {
        "models": ["none", "act"], "report": {"example_models": ["act"]}}
    params["prepare"]["root"] = "elsewhere"  # where the data lives is no departure
    markdown = report_of(root, yaml.safe_dump(params), *PUBLISHED)
    assert "The run follows the published protocol (`" in markdown and "| setting | this run |" not in markdown


def test_a_run_on_a_dataset_without_published_numbers_has_no_such_section(tmp_path):
    root = write_results(tmp_path)
    without = report_of(root, PARAMS)
    with_published = report_of(root, PARAMS, *PUBLISHED)
    assert "Against the published numbers" not in with_published and with_published == without


def test_published_and_presets_go_together(tmp_path):
    root = write_results(tmp_path)
    result = run_report(root, "--published", ROOT / "docs" / "published.csv", params=FASHION)
    assert result.exit_code == 2 and "--published and --presets go together" in result.output


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
                                    "examples/ca_tride_ca_plus.png"])
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


def test_a_missing_example_of_a_shown_model_fails_with_one_line_before_writing(tmp_path):
    # report.example_models is [ca_tride]: its CA+ example missing is an error, never a report without it
    root = write_results(tmp_path)
    write_png(root / "reports" / "sweep.png", "red")
    write_png(root / "reports" / "examples" / "ca_tride_es.png", "blue")
    result = run_report(root, "--sweep", root / "reports" / "sweep.png", "--examples", root / "reports" / "examples")
    missing = root / "reports" / "examples" / "ca_tride_ca_plus.png"
    assert result.exit_code == 1 and result.output.strip().startswith(f"error: {missing}: missing; the examples stage")
    assert not (root / "reports" / "index.md").exists()


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
@pytest.mark.parametrize("which", ["written", "committed", "fashion"])
def test_no_table_of_the_report_is_wider_than_a_laptop_screen(which, written, fashion, tmp_path):
    # the committed report of the default pipeline (seven models), one written here with intervals on every score,
    # and one set against the published numbers
    page = {"written": written[0] / "index.html", "fashion": fashion[0] / "reports" / "index.html",
            "committed": ROOT / "reports" / "index.html"}[which]
    page = shutil.copy(page, tmp_path)
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
