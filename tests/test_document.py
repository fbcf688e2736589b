"""The report's two renderings: the same blocks as markdown and as one self-contained HTML page."""

import base64
import re

from catride_core.report.document import (
    Bullets,
    Heading,
    Image,
    Paragraph,
    Table,
    to_html,
    to_markdown,
)

PNG = b"\x89PNG\r\n\x1a\n-not-really-an-image"
BLOCKS = [Heading("Report", 1), Paragraph("Run `dvc repro`; 3 < 4 & 5 > 2."), Bullets(("one", "two")),
          Table(("model", "ERS"), (("hm", "47.5 [45.0, 50.1]"),)), Image("figures/a.png", "ERS per <model>")]


def test_markdown_has_every_block_and_links_images_relative_to_it():
    text = to_markdown(BLOCKS, {"figures/a.png": "../figures/a.png"})
    assert text.splitlines()[0] == "# Report"
    assert "- one\n- two" in text and "| model | ERS |\n|---|---|\n| hm | 47.5 [45.0, 50.1] |" in text
    assert "![ERS per <model>](../figures/a.png)" in text


def test_html_embeds_every_image_escapes_text_and_loads_nothing_else():
    page = to_html(BLOCKS, {"figures/a.png": PNG}, "t")
    assert page.startswith("<!DOCTYPE html>") and "<h1>Report</h1>" in page
    assert "<p>Run <code>dvc repro</code>; 3 &lt; 4 &amp; 5 &gt; 2.</p>" in page
    assert '<td>hm</td><td class="num">47.5 [45.0, 50.1]</td>' in page and "<li>two</li>" in page
    sources = re.findall(r'src="([^"]+)"', page)
    assert sources == [f"data:image/png;base64,{base64.b64encode(PNG).decode()}"]
    assert "http" not in page and "<script" not in page and "<link" not in page  # no CDN, no JS, nothing fetched
    assert "<figcaption>ERS per &lt;model&gt;</figcaption>" in page
