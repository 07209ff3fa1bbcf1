"""Issue 27: label methods and backends own their needs. A toy paid HTTP method defined in one
test module (tests/rewards/toy_paid_method.py) and registered by one line is estimated,
confirmed, preflighted, labelled, reported and browsed with no edit elsewhere; and no generic
module names a method or a backend type."""

from __future__ import annotations

import io
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from rayrg.cli import main
from rayrg.rewards.registry import LABEL_METHODS
from tests.rewards import toy_paid_method as toy

ROOT = Path(__file__).resolve().parents[2]
KEY_ENV = "TOYPAID_TEST_KEY"


class ToyServer:
    """A real HTTP server on 127.0.0.1: the paid API (counts requests, checks the key)."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.auth: list[str] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                owner.requests.append(body)
                owner.auth.append(self.headers.get("Authorization", ""))
                n = body["steps"]
                data = json.dumps({"progress": [(i + 1) / n for i in range(n)]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/progress"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> ToyServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def registered(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(LABEL_METHODS, "toypaid", toy.TOY_PAID)  # the register line


@pytest.fixture
def server():
    with ToyServer() as s:
        yield s


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def _config(tmp_path: Path, url: str) -> Path:
    path = tmp_path / "toy.yaml"
    path.write_text(yaml.safe_dump({"method": "toypaid", "base_url": url, "api_key_env": KEY_ENV}))
    return path


def test_toy_paid_method_end_to_end(registered, server, make_toy_dataset, tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    dataset = make_toy_dataset(num_episodes=3, steps=(2, 3, 4), frame_size=8)
    config = _config(tmp_path, server.url)
    monkeypatch.setenv(KEY_ENV, "sk-toy-secret")

    # estimated: the method's own estimate through `rayrg estimate` (no request made)
    assert main(["estimate", "--config", str(config), "--dataset", str(dataset), "--json"]) == 0
    estimate = json.loads(capsys.readouterr().out)
    assert estimate["requests"] == 3 and estimate["cost_usd"] == pytest.approx(0.75)
    assert server.requests == []

    # confirmed on a terminal: asked; "n" starts nothing
    monkeypatch.setattr("sys.stdin", FakeTTY("n\n"))
    out = tmp_path / "labelled"
    assert main(["label", "--config", str(config), "--dataset", str(dataset), "--out", str(out)]) == 1
    printed = capsys.readouterr().out
    assert "Proceed and spend about $0.75? [y/N]" in printed and "not started" in printed
    assert server.requests == []

    # not a terminal: printed, then it proceeds and labels
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    assert main(["label", "--config", str(config), "--dataset", str(dataset), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "estimate: toypaid" in printed and "stdin is not a terminal: proceeding" in printed
    assert len(server.requests) == 3 and set(server.auth) == {"Bearer sk-toy-secret"}
    from rayrg.contracts.datasets import read_metadata
    from rayrg.data.access import Dataset

    column = Dataset.open(out).read(["step", toy.COLUMN]).column(toy.COLUMN).to_pylist()
    assert sorted(column)[-1] == 1.0 and all(0 < v <= 1 for v in column)
    assert read_metadata(out).column_kinds[toy.COLUMN] == "progress"

    # reported: its section and its browser page, from the manifest alone
    from rayrg.contracts.manifest import LabelStep, Manifest, write_manifest
    from rayrg.report.build import build_report

    exp = tmp_path / "exp"
    exp.mkdir()
    write_manifest(exp, Manifest(name="t", labels=[LabelStep(index=0, method="toypaid", path=out)]))
    report = build_report(exp).read_text()
    assert "## Toy paid method" in report and "3 paid requests, $0.75" in report
    assert "[toy browser](labels_browser.html)" in report
    assert 'id="toypaid" data-requests="3"' in (exp / "report" / "labels_browser.html").read_text()

    # browsed: `rayrg browse` finds the method from the dataset's provenance
    assert main(["browse", str(out)]) == 0
    page = (out / "labels_browser.html").read_text()
    assert page.startswith("<!doctype html>") and "labelled: 3 requests" in page
    assert "sk-toy-secret" not in page + report


def test_toy_paid_method_is_preflighted_in_one_line(registered, server, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump({
        "methods": {"toy": {"reward_column": "reward_sparse"}}, "out": str(tmp_path / "out"),
        "labels": [{"method": "sparse"}, {"method": "toypaid", "base_url": server.url, "api_key_env": KEY_ENV}]}))
    assert main(["run", str(path)]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert errors == [f"rayrg run: error: labels[1].api_key_env: environment variable {KEY_ENV} is not set "
                      "(the toy paid API's key)"]
    assert not (tmp_path / "out").exists() and server.requests == []
    # with the key: the plan names it through its own description, no request made
    monkeypatch.setenv(KEY_ENV, "k")
    assert main(["run", str(path), "--dry-run"]) == 0
    assert f"label[1] toypaid: the toy API at {server.url}" in capsys.readouterr().out


def test_a_declared_column_of_the_wrong_kind_is_refused(registered, monkeypatch: pytest.MonkeyPatch) -> None:
    import dataclasses

    from rayrg.config import ConfigError
    from rayrg.rewards.declarations import OutputColumn
    from rayrg.rewards.registry import load_label_config

    wrong = dataclasses.replace(toy.TOY_PAID, outputs=lambda c: [OutputColumn("reward_toypaid", "progress")])
    monkeypatch.setitem(LABEL_METHODS, "toypaid", wrong)
    with pytest.raises(ConfigError, match="'reward_toypaid' is declared progress but its family 'reward' is reward"):
        load_label_config({"method": "toypaid", "base_url": "http://127.0.0.1:1/"})


def test_backends_are_built_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``auto_backend``: each backend's own ``from_env``, tried by rank; the entry's fields win."""
    from rayrg.rewards.rgvlm import from_env

    monkeypatch.setenv("GEMINI_API_KEY", "g")
    monkeypatch.setenv("RAYRG_GEMINI_MODEL", "gemini-x")
    monkeypatch.setenv("RAYRG_OPENAI_BASE_URL", "http://127.0.0.1:1/v1")
    found = from_env({"method": "rgvlm", "backend": {"max_in_flight": 2}}, tmp_path)
    assert found.note is None
    assert found.config["backend"] == {"type": "gemini", "api_key_env": "GEMINI_API_KEY", "model": "gemini-x",
                                       "max_in_flight": 2}
    monkeypatch.delenv("GEMINI_API_KEY")
    monkeypatch.setenv("RAYRG_OPENAI_MODEL", "served")
    assert from_env({"method": "rgvlm"}, tmp_path).config["backend"]["type"] == "openai"


# Generic modules: they loop over declarations, so none names a method or a backend type.
GENERIC = ["rayrg/experiments/preflight.py", "rayrg/experiments/runner.py", "rayrg/rewards/cli.py",
           "rayrg/report/build.py", "rayrg/report/browse.py", "rayrg/report/cli.py"]
NAMES = ["rgvlm", "rg-vlm", "clip", "vlmrm", "blip2", "roboclip", "sparse", "simulated",  # methods
         "gemini", "openai", "transformers", "vllm", "encoder"]  # backend types; RoboCLIP's attribute


@pytest.mark.parametrize("module", GENERIC)
def test_generic_modules_name_no_method_or_backend(module: str) -> None:
    text = (ROOT / module).read_text()
    found = sorted({m.group(0) for m in re.finditer(rf"(?i)\b({'|'.join(map(re.escape, NAMES))})\b", text)})
    assert not found, f"{module} names {found}: declare it on the method or backend instead"
