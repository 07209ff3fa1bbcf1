"""``rayrg browse``: a label browser page, checked in headless Chromium on a labelled dataset
made by the real RG-VLM pipeline against the loopback chat server (some windows failed)."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlencode

import pyarrow.parquet as pq
import pytest
import yaml

from rayrg.data.schema import DatasetError
from rayrg.report.browse import write_browser
from rayrg.rewards.rgvlm.browse import transition_truth, window_agreement
from rayrg.rewards.rgvlm.loopback import Faults, LoopbackServer
from tests._browser import dump_dom


def test_truth_and_agreement_follow_the_reward_report() -> None:
    # step 0: expert's action; step 1: not, no sub-task; step 2: not the expert's, but a sub-task done
    truth = transition_truth([1, 2, 0], [1, 0, 3], before=1, completed=[1, 1, 2])
    assert truth == [True, False, True]
    assert window_agreement([5, 4, 9], truth, 0.5) == ("agree", [True, True, True])
    assert window_agreement([5, 5, 9], truth, 0.5) == ("disagree", [True, False, True])
    assert window_agreement([4, 4, 9], truth, 0.4) == ("disagree", [True, False, True])
    assert window_agreement(None, truth, 0.5) == ("n/a", None)


@pytest.fixture(scope="module")
def labelled(make_toy_dataset, tmp_path_factory, ray_local) -> Path:
    """An rgvlm-labelled toy dataset; one actor, one request at a time and no retries, so the
    seeded server fails the same windows (429/500) every run."""
    from rayrg.cli import main

    source = make_toy_dataset(num_episodes=3, steps=(5, 9, 12), frame_size=16)
    tmp = tmp_path_factory.mktemp("browse")
    with LoopbackServer(Faults(error_rate=0.3, retry_after_s=None, seed=5)) as server:
        config = {"method": "rgvlm", "windows": {"window_size": 4, "stride": 4},
                  "backend": {"type": "openai", "base_url": server.base_url, "model": "loopback-vlm",
                              "num_actors": 1, "max_in_flight": 1, "max_retries": 0, "backoff_initial_s": 0.01}}
        (tmp / "label.yaml").write_text(yaml.safe_dump(config))
        assert main(["label", "--config", str(tmp / "label.yaml"), "--dataset", str(source),
                     "--out", str(tmp / "out")]) == 0
    labels = pq.read_table(tmp / "out" / "_labels").to_pylist()
    statuses = {r["status"] for r in labels}
    assert statuses == {"ok", "failed"}, statuses  # the fixture must give both kinds
    return tmp / "out"


class _Shown(HTMLParser):
    """The window cards and images of a dumped DOM."""

    def __init__(self) -> None:
        super().__init__()
        self.cards: list[dict[str, str | None]] = []
        self.images: list[dict[str, str | None]] = []
        self.body: dict[str, str | None] = {}
        self.embedded: dict[str, str | None] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "article":
            self.cards.append(a)
        elif tag == "img":
            self.images.append(a)
        elif tag == "body":
            self.body = a
        elif a.get("id") == "embedded":
            self.embedded = a


def _dump(html_file: Path, tmp_path: Path, **query: str) -> _Shown:
    url = html_file.resolve().as_uri() + (f"?{urlencode(query)}" if query else "")
    dom = dump_dom(url, tmp_path / "chromium-profile")
    shown = _Shown()
    shown.feed(dom)
    assert shown.body.get("data-ready") == "1", dom[-2000:]  # the page's script ran to the end
    return shown


@pytest.mark.integration
@pytest.mark.browser
def test_browser_pages_filters_and_renders_images(labelled: Path, tmp_path: Path) -> None:
    from rayrg.cli import main

    page = tmp_path / "page.html"
    assert main(["browse", str(labelled), "--out", str(page), "--page-size", "4"]) == 0
    text = page.read_text()
    assert "<link" not in text and "http://" not in text and "https://" not in text  # no CDN, no server
    labels = pq.read_table(labelled / "_labels").to_pylist()
    failed = {r["window_id"] for r in labels if r["status"] == "failed"}
    by_episode: dict[str, set[str]] = {}
    for r in labels:
        by_episode.setdefault(r["episode_id"], set()).add(r["window_id"])

    everything = _dump(page, tmp_path)
    assert everything.body["data-matching"] == str(len(labels))
    assert len(everything.cards) == min(4, len(labels))  # one page
    assert everything.images and all(int(i["data-natural-width"] or 0) > 0 for i in everything.images)
    assert everything.embedded["data-embedded"] == str(len(labels))

    only_failed = _dump(page, tmp_path, status="failed")
    assert only_failed.body["data-matching"] == str(len(failed))
    assert only_failed.cards and {c["data-window-id"] for c in only_failed.cards} <= failed
    assert {c["data-status"] for c in only_failed.cards} == {"failed"}
    ok = _dump(page, tmp_path, status="ok")
    assert ok.body["data-matching"] == str(len(labels) - len(failed))
    assert {c["data-status"] for c in ok.cards} == {"ok"}

    episode, windows = max(by_episode.items(), key=lambda kv: len(kv[1]))
    one = _dump(page, tmp_path, episode=episode)
    assert one.body["data-matching"] == str(len(windows))
    assert {c["data-window-id"] for c in one.cards} == windows and {c["data-episode"] for c in one.cards} == {episode}

    ordered = [r["window_id"] for r in sorted(labels, key=lambda r: (r["episode_id"], r["start_step"]))]
    second = _dump(page, tmp_path, page="2")
    assert [c["data-window-id"] for c in second.cards] == ordered[4:8]

    agree, disagree = (_dump(page, tmp_path, agree=v) for v in ("agree", "disagree"))
    assert int(agree.body["data-matching"]) + int(disagree.body["data-matching"]) == len(labels) - len(failed)
    assert {c["data-agreement"] for c in agree.cards} <= {"agree"}
    assert {c["data-agreement"] for c in disagree.cards} <= {"disagree"}


@pytest.mark.integration
@pytest.mark.browser
def test_failed_reasons_and_model_text_are_shown(labelled: Path, tmp_path: Path) -> None:
    page = write_browser(labelled, tmp_path / "p.html", page_size=100)
    dom = dump_dom(page.resolve().as_uri(), tmp_path / "profile")
    labels = pq.read_table(labelled / "_labels").to_pylist()
    for r in labels:
        if r["status"] == "failed":
            assert f"Failed: {r['error']}".replace("&", "&amp;").replace("<", "&lt;") in dom
        else:
            first_line = r["turn1_text"].splitlines()[0]
            assert first_line.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;") in dom


@pytest.mark.integration
def test_max_windows_embeds_the_first_and_says_so(labelled: Path, tmp_path: Path) -> None:
    page = write_browser(labelled, tmp_path / "p.html", max_windows=2)
    text = page.read_text()
    data = json.loads(text.split('<script id="data" type="application/json">')[1].split("</script>")[0])
    meta = json.loads(text.split('<script id="meta" type="application/json">')[1].split("</script>")[0])
    labels = pq.read_table(labelled / "_labels").sort_by([("episode_id", "ascending"), ("start_step", "ascending")])
    assert [w["id"] for w in data] == labels.column("window_id").to_pylist()[:2]
    assert meta["embedded"] == 2 and meta["total"] == labels.num_rows > 2
    assert "embeds the first ${m.embedded} of ${m.total} windows" in text
    assert all(w["image"].startswith("data:image/png;base64,") for w in data)


@pytest.mark.integration
def test_report_links_the_browser(labelled: Path, tmp_path: Path) -> None:
    from rayrg.contracts.manifest import LabelStep, Manifest, write_manifest
    from rayrg.report.build import build_report

    write_manifest(tmp_path, Manifest(name="t", labels=[LabelStep(
        index=0, method="rgvlm", path=labelled, labels=labelled / "_labels", windows=labelled / "_windows")]))
    build_report(tmp_path)
    assert '<a href="labels_browser.html">' in (tmp_path / "report" / "report.html").read_text()
    assert (tmp_path / "report" / "labels_browser.html").stat().st_size > 1000


def test_a_dataset_without_rgvlm_labels_is_one_line_error(make_toy_dataset, capsys) -> None:
    from rayrg.cli import main

    source = make_toy_dataset(num_episodes=1, steps=(3,), frame_size=8)
    with pytest.raises(DatasetError, match="no RG-VLM labels"):
        write_browser(source)
    assert main(["browse", str(source)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("rayrg browse: error:") and "no RG-VLM labels" in err and "\n" not in err
