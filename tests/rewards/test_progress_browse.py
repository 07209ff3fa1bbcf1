"""GVL's and TOPReward's browser sections: one card per episode with the frames as the model was
shown them, what it answered for each, failed chunks with their reason, and the derived progress."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from rayrg.rewards.registry import load_label_config, run_label
from tests.rewards.test_progress_methods import _openai, trajectories  # noqa: F401 - the fixture


def _articles(page: str) -> list[str]:
    return re.findall(r"<article\b.*?</article>", page, flags=re.S)


def _captions(html_part: str) -> list[str]:
    return re.findall(r"<figcaption>(.*?)</figcaption>", html_part, flags=re.S)


@pytest.mark.integration
def test_gvl_page_shows_frames_in_shown_order_with_answers_and_failed_chunks(
        trajectories: Path, tmp_path: Path, ray_local) -> None:  # noqa: F811 - the fixture
    from rayrg.report.browse import write_browser
    from rayrg.rewards.rgvlm.loopback import Faults, LoopbackServer

    with LoopbackServer(Faults(invalid_progress_rate=0.4, seed=1)) as server:
        method, config = load_label_config(_openai(server.base_url, "gvl", frames=6, max_chunk_frames=10,
                                                   chunk_overlap=3, max_parse_attempts=1))
        out = run_label(method, config, trajectories, tmp_path / "gvl")
    summary = json.loads((out / "_gvl_summary.json").read_text())
    assert summary["failed"] > 0
    page = Path(write_browser(out, tmp_path / "page.html")).read_text()
    articles = _articles(page)
    assert len(articles) == summary["episodes"]  # one card per episode
    assert "http://" not in page and "https://" not in page  # self-contained: data: URIs only
    records = pq.read_table(out / "_gvl_answers" / "answers.parquet").to_pylist()
    assert len(records) == summary["windows"]
    assert sum(page.count(f"query {r['query_id']} failed: invalid answer") for r in records) == summary["failed"]
    for r in records:
        card = next(a for a in articles if f'data-episode="{r["episode_id"]}"' in a)
        chunk = card.split(f"chunk [{r['chunk_start']}, {r['chunk_stop']})", 1)[1].split("</div>", 1)[0]
        captions = _captions(chunk)
        # frame by frame, in the order the model saw them: shown #i is steps[order[i]]
        assert [int(re.search(r"t=(\d+)", c).group(1)) for c in captions] == [r["steps"][k] for k in r["order"]]
        assert r["order"][0] == 0 and "t=0 · " in captions[0]  # frame 0 shown first
        if r["status"] == "ok":
            assert captions[0].endswith("t=0 · 0 %")  # the 0 % reference
            want = [f"{100 * r['values'][k]:.0f} %" for k in r["order"]]
            assert [c.rsplit("· ", 1)[1] for c in captions] == want
        else:
            assert all(c.endswith("—") for c in captions) and 'class="failed"' in card
    assert page.count("<svg") == summary["episodes"]  # the progress curve per episode


@pytest.mark.integration
def test_topreward_page_marks_bounded_frames(trajectories: Path, tmp_path: Path, ray_local) -> None:  # noqa: F811
    from rayrg.report.browse import write_browser
    from rayrg.rewards.rgvlm.loopback import Faults, LoopbackServer

    with LoopbackServer(Faults(drop_affirmative_rate=0.3, seed=2)) as server:
        method, config = load_label_config(_openai(server.base_url, "topreward", frames=5))
        out = run_label(method, config, trajectories, tmp_path / "top")
    summary = json.loads((out / "_topreward_summary.json").read_text())
    page = Path(write_browser(out, tmp_path / "page.html")).read_text()
    assert len(_articles(page)) == summary["episodes"]
    captions = _captions(page)
    assert len(captions) == summary["windows"]  # one frame per query
    assert sum("(bound: not in top-k)" in c for c in captions) == summary["bounded_frames"] > 0
    assert page.count('<figure class="bounded">') == summary["bounded_frames"]
