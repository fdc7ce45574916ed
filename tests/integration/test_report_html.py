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
