"""No credential is written or logged: configs, provenance, labels, caches, Ray's session logs.

A distinct fake key sits in every place a credential can be given: the environment (read
through ``api_key_env``), HTTP headers, ``extra_body`` (under neutral and under
key/token/secret/password names, nested too) and the URL's query string. ``rayrg label``
then runs on a real local Ray against real servers on 127.0.0.1: the OpenAI-compatible
loopback server and a ``generateContent`` server that the real google-genai client talks
to over its own HTTP transport. Each key is asserted to have reached its server (so it was
really used, and a missing scrub would leave it somewhere), then every file under the run's
output, cache and labels and every Ray session log is scanned for its bytes.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
from pathlib import Path
from typing import Any

import pytest
import yaml

from rayrg.config import REDACTED, scrub_secrets
from rayrg.rewards.rgvlm.cache import AnswerCache
from rayrg.rewards.rgvlm.loopback import LoopbackServer

# One distinct key per place, so a hit names the place that leaked.
SECRETS = {
    "openai_env": "sk-rgx-env-Hq83ZtLw01",
    "gemini_env": "AIza-rgx-env-Pw52KdUo77",
    "header": "rgx-header-Yt61MaQe4",
    "extra_neutral": "rgx-extra-user-Bn29XsVo",
    "extra_token": "rgx-extra-token-Lk40HgTc",
    "extra_secret": "rgx-extra-secret-Mz18FpWa",
    "extra_password": "rgx-extra-password-Df75JqNs",
    "query": "rgx-query-Ce93RuVb",
}
OPENAI_ENV, GEMINI_ENV = "RAYRG_SECRET_TEST_OPENAI_KEY", "RAYRG_SECRET_TEST_GEMINI_KEY"
# Set at collection time, before the session's Ray cluster starts: local Ray workers read
# keys from the environment they inherit from this process.
os.environ[OPENAI_ENV] = SECRETS["openai_env"]
os.environ[GEMINI_ENV] = SECRETS["gemini_env"]

EXTRA_BODY = {"user": SECRETS["extra_neutral"], "auth_token": SECRETS["extra_token"],
              "metadata": {"client_secret": SECRETS["extra_secret"], "db_password": SECRETS["extra_password"]}}
HEADERS = {"X-Gateway-Auth": SECRETS["header"]}


def test_scrub_secrets_by_place_and_name() -> None:
    raw = {"api_key_env": "OPENAI_API_KEY", "max_tokens_scores": 96, "tokens_per_minute": 1000.0,
           "base_url": f"https://user:pw@host/v1?key={SECRETS['query']}", "extra_body": EXTRA_BODY,
           "headers": HEADERS, "engine_kwargs": {"hf_token": "hf_x", "dtype": "bfloat16"},
           "nested": [{"refresh_token": "r"}, {"xApiKey": "k"}, {"password": None}]}
    out = scrub_secrets(raw)
    assert out["api_key_env"] == "OPENAI_API_KEY"  # a variable's name is provenance
    assert out["max_tokens_scores"] == 96 and out["tokens_per_minute"] == 1000.0
    assert out["base_url"] == f"https://{REDACTED}@host/v1?{REDACTED}"
    assert out["extra_body"] == {"user": REDACTED, "auth_token": REDACTED,
                                 "metadata": {"client_secret": REDACTED, "db_password": REDACTED}}
    assert out["headers"] == {"X-Gateway-Auth": REDACTED}
    assert out["engine_kwargs"] == {"hf_token": REDACTED, "dtype": "bfloat16"}
    assert out["nested"] == [{"refresh_token": REDACTED}, {"xApiKey": REDACTED}, {"password": None}]
    assert raw["extra_body"]["user"] == SECRETS["extra_neutral"]  # a copy: the input is untouched


def test_a_key_in_the_wrong_field_is_not_echoed() -> None:
    from rayrg.config import ConfigError
    from rayrg.rewards.rgvlm.config import RGVLMConfig

    for backend in ({"type": "gemini", "api_key_env": "AIzaSyAbCdEfGhIjKl0123"},
                    {"type": "openai", "base_url": "http://h/v1", "model": "m", "api_token": "AIzaSyAbCdEfGhIjKl0123"}):
        with pytest.raises(ConfigError) as info:
            RGVLMConfig.from_dict({"backend": backend})
        assert "AIzaSyAbCdEfGhIjKl0123" not in str(info.value)
        assert info.value.__cause__ is None and info.value.__suppress_context__


def test_keys_are_refused_in_ray_runtime_env() -> None:
    from rayrg.config import ConfigError
    from rayrg.runtime import init_ray

    with pytest.raises(ConfigError, match="OPENAI_API_KEY") as info:
        init_ray(runtime_env={"env_vars": {"OPENAI_API_KEY": SECRETS["openai_env"], "OMP_NUM_THREADS": "1"}})
    assert SECRETS["openai_env"] not in str(info.value)


class RecordingLoopback(LoopbackServer):
    """The loopback server, also keeping what each request carried besides its body's chat."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []

    async def _handle(self, request):
        body = await request.read()
        self.seen.append(json.dumps({"headers": dict(request.headers), "query": request.query_string,
                                     "body": json.loads(body)}))
        return await super()._handle(request)


class GeminiServer:
    """``POST /v1beta/models/<model>:generateContent`` and ``GET /v1beta/models/<model>`` on
    127.0.0.1 (enough of the REST API for the google-genai client): turn 1 gets an analysis,
    turn 2 valid scores for its schema; the model's metadata gives its version."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True, name="gemini-server")
        self.port: int | None = None

    async def _handle(self, request):
        from aiohttp import web

        body = await request.json()
        self.seen.append(json.dumps({"path": request.path, "headers": dict(request.headers), "body": body}))
        schema = (body.get("generationConfig") or {}).get("responseSchema")
        if schema is None:
            text = "t=0: the agent turns towards the ball."
        else:
            scores = schema["properties"]["scores"]
            n = int(scores.get("minItems", scores.get("min_items")))
            text = json.dumps({"scores": [i % 11 for i in range(n)]})
        return web.json_response({
            "candidates": [{"content": {"role": "model", "parts": [{"text": text}]}, "finishReason": "STOP"}],
            "usageMetadata": {"promptTokenCount": 300, "candidatesTokenCount": 20, "totalTokenCount": 320}})

    async def _model(self, request):
        """``GET /v1beta/models/<model>``: what the model identity asks (its reported version)."""
        from aiohttp import web

        self.seen.append(json.dumps({"path": request.path, "headers": dict(request.headers)}))
        name = request.path.rsplit("/", 1)[-1]
        return web.json_response({"name": f"models/{name}", "version": "001", "displayName": name})

    async def _start(self) -> None:
        from aiohttp import web

        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/{tail:.*}", self._handle)
        app.router.add_get("/{tail:.*}", self._model)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]

    def __enter__(self) -> GeminiServer:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=10)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)


def _label(tmp_path: Path, name: str, source: Path, backend: dict[str, Any]) -> dict[str, Path]:
    from rayrg.cli import main

    paths = {"out": tmp_path / name / "out", "cache": tmp_path / name / "cache",
             "labels": tmp_path / name / "labels"}
    config = {"method": "rgvlm", "backend": {"backoff_initial_s": 0.01, "max_retries": 1, **backend},
              "windows": {"window_size": 4}, "cache_dir": str(paths["cache"]), "labels_dir": str(paths["labels"])}
    config_path = tmp_path / name / "label.yaml"
    config_path.parent.mkdir(parents=True)
    config_path.write_text(yaml.safe_dump(config))
    assert main(["label", "--config", str(config_path), "--dataset", str(source), "--out", str(paths["out"])]) == 0
    config_path.unlink()  # the user's own file holds the keys by design; everything else must not
    return paths


def _files(*roots: Path) -> list[Path]:
    return [p for root in roots if root.exists() for p in root.rglob("*") if p.is_file()]


@pytest.mark.integration
def test_no_key_in_outputs_cache_labels_or_ray_logs(make_toy_dataset, tmp_path: Path, ray_local, capfd) -> None:
    pytest.importorskip("google.genai")
    import pyarrow.parquet as pq
    import ray

    from rayrg.data.schema import DatasetMetadata

    source = make_toy_dataset(num_episodes=2, steps=(5, 4), frame_size=16)
    with RecordingLoopback() as openai_server, GeminiServer() as gemini_server:
        openai_run = _label(tmp_path, "openai", source, {
            "type": "openai", "model": "loopback-vlm", "api_key_env": OPENAI_ENV, "headers": HEADERS,
            "base_url": f"{openai_server.base_url}?key={SECRETS['query']}", "extra_body": EXTRA_BODY})
        gemini_run = _label(tmp_path, "gemini", source, {
            "type": "gemini", "model": "gemini-3-flash", "api_key_env": GEMINI_ENV, "headers": HEADERS,
            "base_url": f"http://127.0.0.1:{gemini_server.port}/"})

    # every key was really sent, so the scan below is not vacuous
    sent_openai, sent_gemini = "\n".join(openai_server.seen), "\n".join(gemini_server.seen)
    for place in ("openai_env", "header", "extra_neutral", "extra_token", "extra_secret", "extra_password", "query"):
        assert SECRETS[place] in sent_openai, place
    assert f"Bearer {SECRETS['openai_env']}" in openai_server.stats.auth_headers
    for place in ("gemini_env", "header"):
        assert SECRETS[place] in sent_gemini, place
    assert any(":generateContent" in json.loads(s)["path"] for s in gemini_server.seen)

    for run in (openai_run, gemini_run):
        labels = pq.read_table(run["labels"])
        assert set(labels.column("status").to_pylist()) == {"ok"}  # the runs really labelled
        assert len(AnswerCache(run["cache"])) > 0

    session_logs = Path(ray._private.worker._global_node.get_session_dir_path()) / "logs"
    scanned = _files(tmp_path, session_logs)
    assert any(p.suffix == ".parquet" for p in scanned) and any(p.name == "metadata.json" for p in scanned)
    assert any(p.is_relative_to(session_logs) for p in scanned)
    captured = capfd.readouterr()
    leaks = [(place, str(path)) for path in scanned for place, secret in SECRETS.items()
             if secret.encode() in path.read_bytes()]
    leaks += [(place, "console") for place, secret in SECRETS.items() if secret in captured.out + captured.err]
    assert not leaks

    # scrubbed, not dropped: provenance still says which fields were sent
    for run in (openai_run, gemini_run):
        prov = DatasetMetadata.read(run["out"]).extra["labels"]["reward_rgvlm"]["backend_config"]
        assert prov["headers"] == {"X-Gateway-Auth": REDACTED}
    public = yaml.safe_load((openai_run["out"] / "_rgvlm.yaml").read_text())["backend"]
    assert public["extra_body"]["metadata"]["db_password"] == REDACTED
    assert public["base_url"].endswith(f"/v1?{REDACTED}")


def test_backend_errors_are_redacted(monkeypatch: pytest.MonkeyPatch) -> None:
    """A server or client library may echo a request back in an error; what a backend records
    as a window's error never holds its credentials."""
    from rayrg.rewards.rgvlm.backends import build_backend
    from rayrg.rewards.rgvlm.config import RGVLMConfig

    config = RGVLMConfig.from_dict({"backend": {
        "type": "openai", "model": "m", "api_key_env": OPENAI_ENV, "headers": HEADERS, "extra_body": EXTRA_BODY,
        "base_url": f"http://127.0.0.1:9/v1?key={SECRETS['query']}"}})
    backend = build_backend(config)
    try:
        echoed = "HTTP 400: " + json.dumps({"sent": {**EXTRA_BODY, "headers": HEADERS,
                                                     "auth": f"Bearer {SECRETS['openai_env']}"},
                                            "url": backend.url})
        redacted = backend.redact(echoed)
    finally:
        backend.close()
    assert [p for p, s in SECRETS.items() if s in echoed] and REDACTED in redacted
    assert not [place for place, secret in SECRETS.items() if secret in redacted]
    assert redacted.startswith("HTTP 400: ") and "/v1/chat/completions" in redacted
