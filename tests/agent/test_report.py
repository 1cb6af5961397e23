"""Explanation reports on real ml-100k: schema, provenance, rendering, bad input, cohorts."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from agent import Recommender
from agent.llm.types import RankedPick, RerankOutput, RerankRequest, TierAnswer
from agent.report import (
    Report,
    ReportError,
    build_report,
    render,
    report,
    report_schema,
    write_report,
)
from tests.conftest import run_cli

COHORT = ["1", "42", "7", "100", "250"]


@pytest.fixture(scope="module")
def rec(trained_workspace: Path) -> Recommender:
    return Recommender.load(trained_workspace, llm="none")


class StandInTier:
    """An in-process LLM tier: one grounded explanation, one that cites a made-up history item."""

    name = "local"
    model_name = "stand-in"
    prompt_id = "stand-in-v1"

    def rerank(self, req: RerankRequest) -> TierAnswer:
        # Like a capable model, it cites a history item the prompt lists as raising the pick.
        c0 = next((c for c in req.candidates if c.support), req.candidates[0])
        c1 = next(c for c in req.candidates if c is not c0)
        cited = list(c0.support[:1])
        title = next((h.title for h in req.history if h.short_id in cited), "what you rated")
        picks = [
            RankedPick(
                id=c0.short_id,
                explanation=f"You rated {title} and this is close to it.",
                cited_history=cited,
                categories=list(c0.categories[:1]),
            ),
            RankedPick(id=c1.short_id, explanation="Like your favourite.", cited_history=["H999"]),
        ]
        return TierAnswer(RerankOutput(ranking=picks), model="stand-in")


def test_json_validates_against_the_published_schema(rec: Recommender, capsys) -> None:
    text = report(rec, user_id="42", format="json", k=5)
    data = Report.model_validate_json(text)
    assert data.kind == "user" and data.llm == "none" and data.cohort is None
    u = data.users[0]
    assert u.user_id == "42" and not u.cold_start and u.tier == "none"
    assert len(u.items) == 5 and u.history_size == len(u.timeline) > 0
    assert all(t.timestamp for t in u.timeline)  # dataset rows carry their time
    assert u.top_categories and 0.99 < sum(e.model for e in u.interest) < 1.01
    assert all(abs(e.gap - (e.model - e.history)) < 1e-3 for e in u.interest)
    try:
        import jsonschema
    except ImportError:  # pydantic validation above is the contract; jsonschema is a bonus
        jsonschema = None
    if jsonschema is not None:
        jsonschema.validate(json.loads(text), report_schema())
    code, out, _ = run_cli(["report", "--schema"], capsys)
    assert code == 0 and json.loads(out) == Report.model_json_schema()


def test_every_explanation_carries_grounding_and_tier(rec: Recommender) -> None:
    rec.chain.set_tier("local", StandInTier())
    try:
        # k = every candidate, so both of the tier's picks are in the list whatever the fusion.
        data = build_report(rec, user_id="42", k=rec.settings.candidates, llm="local")
    finally:
        rec.chain.set_tier("local", None)
    u = data.users[0]
    assert u.tier == "local"
    for it in u.items:
        e = it.explanation
        assert isinstance(e.grounded, bool) and e.tier in ("remote", "local", "none") and e.text
    by_source = {(e.source, e.grounded, e.tier) for e in (it.explanation for it in u.items)}
    assert ("llm", True, "local") in by_source  # the grounded LLM text is shown, credited
    assert ("template", False, "none") in by_source  # the invented citation was replaced
    written = next(it for it in u.items if it.explanation.source == "llm")
    assert written.explanation.evidence.history_items and written.llm_rank == 1
    ev = written.explanation.evidence  # titles name the cited items, not the template's
    assert list(ev.history_titles) == [rec.ds.item(i).title for i in ev.history_items]
    html = render(data, "html")
    assert "LLM text failed grounding; template shown" in html and "LLM tier local" in html


def test_html_is_self_contained_escaped_and_renders_in_chromium(
    rec: Recommender, tmp_path: Path
) -> None:
    data = build_report(rec, user_id="42", k=5)
    # Catalog text is untrusted: markup and mathtext in it must come out inert.
    data.users[0].items[0].title = "<script>alert(1)</script>"
    data.users[0].interest[0].category = "$\\frac{1}{0}$ <b>x</b>"
    html = render(data, "html")
    assert "<script" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)  # nothing remote
    assert html.count("data:image/png;base64,") >= 2  # timeline and interest charts
    md = render(data, "md")
    assert "<script>" not in md and "\\<script\\>" in md

    chromium = _chromium()
    page = tmp_path / "report.html"
    page.write_text(html, encoding="utf-8")
    shot = tmp_path / "shot.png"
    subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--no-first-run",
            f"--user-data-dir={tmp_path / 'profile'}",
            f"--screenshot={shot}",
            "--window-size=1200,2000",
            page.as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    from PIL import Image

    pixels = np.asarray(Image.open(shot).convert("L"), dtype=np.float64)
    assert pixels.shape == (2000, 1200)
    assert pixels.var() > 0 and (pixels < 250).mean() > 0.01  # text and charts, not a blank page


def _chromium() -> str:
    """Debian's chromium: found, installed when allowed (root and CI/MTREC_INSTALL_BROWSER)."""
    path = shutil.which("chromium")
    if (
        path is None
        and os.geteuid() == 0
        and (os.environ.get("CI") or os.environ.get("MTREC_INSTALL_BROWSER"))
    ):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        install = ["apt-get", "install", "-y", "-q", "chromium"]
        if subprocess.run(install, env=env, capture_output=True, timeout=900).returncode != 0:
            subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, timeout=300)
            subprocess.run(install, env=env, capture_output=True, timeout=900)
        path = shutil.which("chromium")
    if path is None:
        pytest.skip(
            "chromium is not installed: apt-get install chromium, or set CI=1 or "
            "MTREC_INSTALL_BROWSER=1 as root to let this test install it"
        )
    return path


def test_unknown_user_is_a_clear_error(rec: Recommender, trained_workspace: Path, capsys) -> None:
    with pytest.raises(KeyError, match="no-such-user"):
        report(rec, user_id="no-such-user")
    with pytest.raises(KeyError, match=r"unknown user ids in the cohort: \['nope'\]"):
        report(rec, users=["42", "nope"], format="md")
    out = trained_workspace.parent / "unknown.md"
    code, stdout, stderr = run_cli(
        ["report", "-w", str(trained_workspace), "--user", "no-such-user", "--out", str(out)],
        capsys,
    )
    assert code == 2 and stdout == "" and not out.exists()
    assert "no-such-user" in stderr and "Traceback" not in stderr
    assert len(stderr.strip().splitlines()) == 1


def test_empty_history_gives_a_cold_start_report(rec: Recommender) -> None:
    data = Report.model_validate_json(report(rec, history=[], format="json", k=5))
    u = data.users[0]
    assert u.cold_start and u.history_size == 0 and u.user_id is None and u.timeline == []
    assert u.notes[0].startswith("Cold start") and u.top_categories == []
    # With no history the templates say the item is popular with new users.
    assert len(u.items) == 5 and all("popular" in (it.explanation.text or "") for it in u.items)
    assert all(it.explanation.evidence.history_items == () for it in u.items)
    assert all(e.history == 0 for e in u.interest) and u.extrapolation == []
    assert "Cold start" in report(rec, history=[], format="md", k=5)


def test_output_is_atomic_and_bad_paths_are_refused(
    trained_workspace: Path, tmp_path: Path, capsys
) -> None:
    target = write_report("new", "sub/../report.md", base=tmp_path)
    assert target == tmp_path / "report.md" and target.read_text() == "new"
    with pytest.raises(ReportError, match="escapes"):
        write_report("x", "../outside.md", base=tmp_path)
    with pytest.raises(ReportError, match="is missing"):
        write_report("x", tmp_path / "no" / "such" / "dir.md")
    with pytest.raises(ReportError, match="is a directory"):
        write_report("x", tmp_path)
    missing = tmp_path / "missing" / "r.html"
    code, _, stderr = run_cli(
        ["report", "-w", str(trained_workspace), "--user", "42", "--out", str(missing)], capsys
    )
    assert code == 2 and "is missing" in " ".join(stderr.split()) and not missing.parent.exists()
    # A failure at the last step leaves the old report whole and no temp file behind.
    real_replace = os.replace

    def broken(*args: object) -> None:
        raise OSError(28, "No space left on device")

    os.replace = broken  # type: ignore[assignment]
    try:
        with pytest.raises(ReportError, match="No space left"):
            write_report("half", target)
    finally:
        os.replace = real_replace
    assert target.read_text() == "new" and sorted(p.name for p in tmp_path.iterdir()) == [
        "report.md"
    ]


def test_cohort_report_in_md_and_html(
    rec: Recommender, trained_workspace: Path, tmp_path: Path, capsys
) -> None:
    ids = tmp_path / "users.txt"
    ids.write_text("# a cohort\n" + "\n".join(COHORT) + "\n42\n\n", encoding="utf-8")
    out = tmp_path / "cohort.md"
    code, _, stderr = run_cli(
        ["report", "-w", str(trained_workspace), "--users", str(ids), "-k", "5", "--out", str(out)],
        capsys,
    )
    assert code == 0, stderr
    md = out.read_text(encoding="utf-8")
    assert "## Cohort: 5 users" in md and "catalog coverage" in md and "Model metrics" in md
    assert all(f"## user {u}" in md for u in COHORT)
    assert "valid\\_ndcg@10" in md  # the checkpoint's metrics, shown as stored

    data = build_report(rec, users=COHORT, k=5)
    c = data.cohort
    assert c is not None and c.users_reported == 5 and not c.sampled
    assert c.tier_mix == {"none": 5} and c.grounding_pass_rate == 1.0
    assert c.llm_grounding_pass_rate is None and c.latency_ms and c.latency_ms.n == 5
    assert 0 < c.catalog_coverage <= 25 / rec.ds.n_items
    assert c.intra_list_diversity and 0 <= c.intra_list_diversity.mean <= 1
    assert "valid_ndcg@10" in c.model_metrics
    html = render(data, "html")
    assert "Cohort: 5 users" in html and html.count("data:image/png;base64,") >= 2 + 2 * 5


def test_all_users_are_sampled_with_a_seed(rec: Recommender) -> None:
    a = build_report(rec, users="all", k=3, sample=3, seed=1)
    b = build_report(rec, users="all", k=3, sample=3, seed=1)
    assert a.cohort and a.cohort.sampled and a.cohort.seed == 1
    assert a.cohort.users_selected == rec.ds.n_users and a.cohort.users_reported == 3
    assert [u.user_id for u in a.users] == [u.user_id for u in b.users]
    assert "Sampled 3 of" in a.cohort.notes[0]
    assert "sampled 3 with seed 1" in render(a, "md")


def test_cohort_shows_the_latest_tier_evaluation(
    rec: Recommender, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import agent.report

    results = tmp_path / "agent.json"
    results.write_text(
        json.dumps(
            {
                "date": "2026-01-02T03:04:05+00:00",
                "accuracy": {
                    "none": {"users": 50, "ndcg@10": 0.05, "answered_by": {"none": 50}},
                    "local": {"users": 50, "ndcg@10": 0.061, "llm_explanations_kept": 0.8},
                },
                "latency": {"local": {"p50_ms": 900.5}},
            }
        )
    )
    monkeypatch.setattr(agent.report.cohort, "TIER_EVALUATION", results)
    data = build_report(rec, users=["42"], k=5)
    c = data.cohort
    assert c is not None and c.tier_evaluation_source == "agent.json of 2026-01-02T03:04:05+00:00"
    assert c.tier_evaluation["local"] == {
        "accuracy.users": 50,
        "accuracy.ndcg@10": 0.061,
        "accuracy.llm_explanations_kept": 0.8,
        "latency.p50_ms": 900.5,
    }
    assert c.tier_evaluation["none"]["accuracy.answered_by.none"] == 50
    assert "accuracy.ndcg@10" in render(data, "html") and "0.061" in render(data, "md")
    results.write_text("{not json")
    broken = build_report(rec, users=["42"], k=5).cohort
    assert (
        broken
        and broken.tier_evaluation == {}
        and "could not be read" in str(broken.tier_evaluation_source)
    )
