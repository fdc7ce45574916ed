"""The HTML report: one self-contained page with the KPI tables, trend charts and actions."""

from __future__ import annotations

import base64
import re
from pathlib import Path

from modelwarden.report.service import build_weekly_report, write_report
from modelwarden.settings import Settings


def test_html_report_is_self_contained_and_matches_the_report(
    seeded_data_dir: Path, tmp_path: Path
) -> None:
    s = Settings(data_dir=seeded_data_dir, embedder="hashing")
    rep = build_weekly_report(s, "2026-W47", embedder="hashing")
    path = write_report(rep, tmp_path / "weekly.html", s, "html")
    page = path.read_text()
    assert page.startswith("<!doctype html>")
    # Nothing is fetched: every chart is an embedded PNG.
    assert "http://" not in page and "https://" not in page
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    # Three KPI trends, and the prompt and response drift trends from the drift history (which
    # holds at least this report's own week).
    assert len(images) == 5
    assert 'alt="prompt drift trend"' in page and 'alt="response drift trend"' in page
    assert all(base64.b64decode(img)[:8] == b"\x89PNG\r\n\x1a\n" for img in images)
    assert f'id="finding-count">{len(rep.findings)}<' in page
    assert f'id="drift-status">{rep.drift_status}<' in page
    for p in rep.plants:
        assert f"<td>{p['plant_id']}</td><td>{p['requests']}</td>" in page
    actions = re.search(r'<ol id="actions">(.*?)</ol>', page, re.S)
    assert actions and actions.group(1).count("<li>") == max(1, len(rep.actions))


def _plain(cell: str) -> str:
    return cell.replace("**", "").replace("`", "").replace("*", "").strip()


def test_the_html_page_carries_every_section_and_row_of_the_markdown(
    seeded_data_dir: Path, tmp_path: Path
) -> None:
    import html as html_lib

    from modelwarden.report.weekly import render_markdown

    s = Settings(data_dir=seeded_data_dir, embedder="hashing")
    rep = build_weekly_report(s, "2026-W47", embedder="hashing")
    md = render_markdown(rep)
    page = write_report(rep, tmp_path / "weekly.html", s, "html").read_text()
    # The HTML without the embedded Markdown copy: the page itself must carry everything.
    body = html_lib.unescape(page.split("<details>")[0])
    headings = [line.lstrip("#").strip() for line in md.splitlines() if line.startswith("##")]
    for h in headings:
        title = h.split(". ", 1)[-1] if h[:1].isdigit() else h
        assert title.replace("&", "&") in body, f"section {title!r} is missing from the HTML"
    rows = [line for line in md.splitlines() if line.startswith("| ") and "---" not in line]
    for line in rows:
        first = _plain(line.strip("|").split("|")[0])
        assert first in body, f"row {first!r} is missing from the HTML"
    assert "All plants" in body and "Δ feedback" in body and "Δ safety (pp)" in body
    for topic_line in [x for x in md.splitlines() if x.startswith("- ") and " topic *" in x]:
        assert topic_line.split(" topic *")[1].split("*")[0] in body
    for f in rep.findings:
        assert f in body
