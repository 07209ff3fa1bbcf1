"""Model identity in every label fingerprint and answer-cache key (rayrg.models.identity).

A model's name is not its identity: weights re-saved into the same directory, or another
server answering the same served name, must make labels and cached answers refuse or redo,
never be reused. The checkpoints are tiny real ones; the servers are real HTTP servers on
127.0.0.1; Gemini is the real SDK over its own httpx transport hook.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from rayrg.models import identity as ident
from rayrg.models.identity import local_identity, model_identity, served_identity
from rayrg.provenance import StaleOutputError, claim
from rayrg.rewards.registry import label_inputs, run_label
from rayrg.rewards.rgvlm.loopback import LoopbackServer
from rayrg.rewards.rgvlm.pipeline import SUMMARY_FILE, build_query, key_settings
from tests.rewards._rgvlm_helpers import window_row


@pytest.fixture(autouse=True)
def _own_identity_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAYRG_CACHE_DIR", str(tmp_path / "identity-cache"))


def _swap_weights(directory: Path, build, seed: int) -> None:
    """Re-save the checkpoint with other random weights into the same directory, keeping
    every other file (the tiny builder's marker records its seed: put the old one back)."""
    from rayrg.pipeline_check import MARKER

    marker = (directory / MARKER).read_bytes()
    build(directory, seed=seed, overwrite=True)
    (directory / MARKER).write_bytes(marker)


def test_local_identity_follows_the_weights_and_is_cached_by_size_and_mtime(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from rayrg.models.tiny_clip import build_tiny_clip

    model = build_tiny_clip(tmp_path / "clip", seed=0)
    first = local_identity(model)
    hashed: list[Path] = []
    real = ident._file_sha256
    monkeypatch.setattr(ident, "_file_sha256", lambda p: hashed.append(p) or real(p))
    assert local_identity(model) == first and hashed == []  # unchanged files: not read again
    assert ident.cache_path().exists()

    _swap_weights(model, build_tiny_clip, seed=1)
    assert local_identity(model) != first
    assert "model.safetensors" in {p.name for p in hashed}  # rewritten files are hashed again
    assert model_identity(str(model)) == local_identity(model)


def test_hub_id_is_keyed_to_the_cached_snapshot_revision(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hub = tmp_path / "hub"
    for revision in ("aaa111", "bbb222"):
        snap = hub / "models--org--tiny" / "snapshots" / revision
        snap.mkdir(parents=True)
        (snap / "config.json").write_text("{}")
    refs = hub / "models--org--tiny" / "refs"
    refs.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hub))
    (refs / "main").write_text("aaa111")
    assert model_identity("org/tiny") == "hub:org/tiny@aaa111"
    (refs / "main").write_text("bbb222")  # a new snapshot of the same id
    assert model_identity("org/tiny") == "hub:org/tiny@bbb222"
    assert model_identity("org/absent") == "hub:org/absent@not-in-local-cache"
    # a snapshot without config.json that the weights check accepts (a diffusers pipeline)
    snap = hub / "models--org--pipe" / "snapshots" / "ccc333"
    snap.mkdir(parents=True)
    (snap / "model_index.json").write_text("{}")
    (hub / "models--org--pipe" / "refs").mkdir()
    (hub / "models--org--pipe" / "refs" / "main").write_text("ccc333")
    assert model_identity("org/pipe") == "hub:org/pipe@ccc333"


def test_served_identity_reads_root_not_the_served_name() -> None:
    listing = {"data": [{"id": "qwen", "root": "/weights/qwen2-vl-72b", "object": "model"},
                        {"id": "other", "root": "/weights/other"}]}
    assert served_identity(listing, "qwen", "http://a:8000/v1") == "served:/weights/qwen2-vl-72b"
    # the host does not enter while the server reports its weights
    assert served_identity(listing, "qwen", "http://b:9000/v1") == "served:/weights/qwen2-vl-72b"
    assert served_identity({"data": [{"id": "m", "root": "r", "revision": "abc"}]}, "m", "x") == "served:r@abc"
    # nothing about the weights: the host, as the docs say
    assert served_identity({"data": [{"id": "gpt"}]}, "gpt", "https://api.example.com/v1") == \
        "host:api.example.com/gpt"
    assert served_identity(None, "gpt", "http://10.0.0.1:8000/v1") == "host:10.0.0.1:8000/gpt"


def test_similarity_labels_refuse_after_weights_swapped_in_place(tmp_path: Path, make_toy_dataset) -> None:
    """The CLIP labeller's fingerprint changes with the weights, so a finished output refuses."""
    from rayrg.models.tiny_clip import build_tiny_clip
    from rayrg.rewards.similarity.clip import CLIP, ClipConfig

    dataset = make_toy_dataset(num_episodes=1, steps=(3,), frame_size=16)
    model = build_tiny_clip(tmp_path / "clip", seed=0)
    config = ClipConfig.from_dict({"method": "clip", "model": str(model)})
    out = tmp_path / "labelled"
    claim(out, "label clip", label_inputs(CLIP, config, dataset), quiet=True).finish()
    assert claim(out, "label clip", label_inputs(CLIP, config, dataset)).done
    _swap_weights(model, build_tiny_clip, seed=1)
    with pytest.raises(StaleOutputError, match="model_identity"):
        claim(out, "label clip", label_inputs(CLIP, config, dataset))


def test_rgvlm_local_weights_swapped_miss_the_cache_and_change_the_fingerprint(tmp_path: Path,
                                                                                make_toy_dataset) -> None:
    """Transformers / vLLM in-process backends: same directory, other weights → other cache
    keys (no cached answer served) and another labels fingerprint."""
    from rayrg.models.tiny_qwen2vl import build_tiny_qwen2vl
    from rayrg.rewards.rgvlm import RGVLM
    from rayrg.rewards.rgvlm.backends import backend_class
    from rayrg.rewards.rgvlm.config import RGVLMConfig

    dataset = make_toy_dataset(num_episodes=1, steps=(3,), frame_size=16)
    model = build_tiny_qwen2vl(tmp_path / "qwen", seed=0)
    row = window_row(0)
    for backend in ("transformers", "vllm"):
        config = RGVLMConfig.from_dict({"backend": {"type": backend, "model": str(model)}})
        cls = backend_class(backend)
        key = build_query(row, config, key_settings(config, cls.model_identity(config.backend))).key
        inputs = label_inputs(RGVLM, config, dataset)
        _swap_weights(model, build_tiny_qwen2vl, seed=len(backend))
        assert build_query(row, config, key_settings(config, cls.model_identity(config.backend))).key != key
        assert label_inputs(RGVLM, config, dataset)["model_identity"] != inputs["model_identity"]



def _model_configs(name: str, model: Path, script: Path) -> list[dict]:
    """Every way ``name`` is pointed at a local checkpoint: a similarity method's ``model``
    (RoboCLIP's TorchScript encoder: one file), a backend labeller's ``backend.model`` on
    each in-process backend."""
    if name == "roboclip":
        return [{"method": name, "model": str(model)},
                {"method": name, "model": str(script), "encoder": "torchscript", "num_frames": 4}]
    return [{"method": name, "model": str(model)},
            *({"method": name, "backend": {"type": kind, "model": str(model)}} for kind in ("transformers", "vllm"))]


def test_every_model_labeller_refuses_after_weights_swapped_in_place(tmp_path: Path, make_toy_dataset) -> None:
    """Each registered label method that declares weights (a ``weights`` or ``file`` need, on
    ``model`` or ``backend.model``), over each in-process backend, keys its labels to the
    weights: bytes rewritten under the same names make a finished output refuse."""
    from rayrg.config import ConfigError
    from rayrg.rewards.registry import LABEL_METHODS, get_method, load_label_config

    dataset = make_toy_dataset(num_episodes=1, steps=(3,), frame_size=16)
    model, script = tmp_path / "weights", tmp_path / "encoder.pt"
    model.mkdir()
    (model / "config.json").write_text("{}")
    covered: set[tuple[str, str]] = set()
    for name in sorted(LABEL_METHODS):
        method = get_method(name)
        for raw in _model_configs(name, model, script):
            (model / "model.safetensors").write_bytes(b"old weights")
            script.write_bytes(b"old encoder")
            try:
                _, config = load_label_config(raw)
            except ConfigError:
                continue  # this method is not pointed at a model this way
            keys = [n.key for n in (method.needs(config) if method.needs else []) if n.kind in ("weights", "file")]
            if not keys:
                continue
            out = tmp_path / "labelled" / f"{name}-{len(covered)}"
            claim(out, f"label {name}", label_inputs(method, config, dataset), quiet=True).finish()
            (model / "model.safetensors").write_bytes(b"new weights")  # same names, other bytes
            script.write_bytes(b"new encoder")
            with pytest.raises(StaleOutputError, match="model_identity"):
                claim(out, f"label {name}", label_inputs(method, config, dataset))
            covered.add((name, raw.get("backend", {}).get("type") or raw.get("encoder", "model")))
    assert covered >= {("rgvlm", "transformers"), ("rgvlm", "vllm"), ("gvl", "transformers"), ("gvl", "vllm"),
                       ("topreward", "transformers"), ("topreward", "vllm"), ("clip", "model"),
                       ("vlmrm", "model"), ("blip2", "model"), ("roboclip", "model"),
                       ("roboclip", "torchscript")}, covered


def _config(path: Path, server: LoopbackServer) -> Path:
    path.write_text(yaml.safe_dump({"method": "rgvlm", "backend": {
        "type": "openai", "base_url": server.base_url, "model": "loopback-vlm", "backoff_initial_s": 0.01}}))
    return path


@pytest.mark.integration
def test_same_served_name_on_another_server_refuses_then_redoes_without_the_cache(
        make_toy_dataset, tmp_path: Path, ray_local, capsys) -> None:
    """Server A and B serve the name ``loopback-vlm`` from other weights (``root``). Labels of
    A are refused for B and, redone, B answers every window itself: A's cached answers (in
    the kept ``_cache``) are not reused. A restarted on another port (same weights) skips."""
    from rayrg.rewards.registry import load_label_config

    source = make_toy_dataset(num_episodes=2, steps=(5, 7), frame_size=16)
    out = tmp_path / "out"
    with LoopbackServer(root="/weights/a") as a:
        method, config = load_label_config(yaml.safe_load(_config(tmp_path / "a.yaml", a).read_text()))
        run_label(method, config, source, out)
        windows = json.loads((out / SUMMARY_FILE).read_text())["windows"]
        assert a.models_requests == 1 and len(a.stats.scores_answers) == windows > 0
    with LoopbackServer(root="/weights/a") as moved:  # same weights, another port: nothing paid again
        method, config = load_label_config(yaml.safe_load(_config(tmp_path / "m.yaml", moved).read_text()))
        run_label(method, config, source, out)
        assert moved.stats.requests == 0 and "up to date" in capsys.readouterr().out
    with LoopbackServer(root="/weights/b") as b:
        method, config = load_label_config(yaml.safe_load(_config(tmp_path / "b.yaml", b).read_text()))
        with pytest.raises(StaleOutputError, match="model_identity"):
            run_label(method, config, source, out)
        assert b.stats.requests == 0
        run_label(method, config, source, out, on_change="redo")
        summary = json.loads((out / SUMMARY_FILE).read_text())
        assert summary["cached"] == 0 and len(b.stats.scores_answers) == windows
        assert b.models_requests == 1  # asked once per run (fingerprint and labeller share it)
    meta = json.loads((out / "metadata.json").read_text())
    assert "served:/weights/b" in json.dumps(meta)


def test_server_without_a_model_list_is_keyed_to_its_host(capsys) -> None:
    from rayrg.rewards.rgvlm.backends.openai_http import OpenAIBackend
    from rayrg.rewards.rgvlm.config import RGVLMConfig

    with LoopbackServer(root=None) as server:
        config = RGVLMConfig.from_dict({"backend": {"type": "openai", "base_url": server.base_url,
                                                    "model": "loopback-vlm"}})
        assert OpenAIBackend.model_identity(config.backend) == f"host:127.0.0.1:{server.port}/loopback-vlm"
    assert "reports nothing about the weights" in capsys.readouterr().out


def test_gemini_identity_is_the_version_the_api_reports(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("google.genai")
    httpx2 = pytest.importorskip("httpx2")
    from rayrg.rewards.rgvlm.backends.gemini import GeminiBackend
    from rayrg.rewards.rgvlm.config import RGVLMConfig

    monkeypatch.setenv("GEMINI_API_KEY", "AIza-test")
    version = {"v": "001"}
    seen: list[str] = []

    def handler(request):
        seen.append(request.url.path)
        return httpx2.Response(200, json={"name": "models/gemini-3-flash", "version": version["v"],
                                          "displayName": "Gemini 3 Flash"})

    config = RGVLMConfig.from_dict({"backend": {"type": "gemini", "model": "gemini-3-flash"}})

    def identity() -> str:
        client = httpx2.Client(transport=httpx2.MockTransport(handler))
        return GeminiBackend.model_identity(config.backend, http_client=client)

    first = identity()
    assert first == "gemini:models/gemini-3-flash@001" and seen[-1].endswith("models/gemini-3-flash")
    version["v"] = "002"  # the alias moved to a new model version
    assert identity() != first


@pytest.mark.integration
def test_gvl_same_served_name_on_another_server_asks_every_chunk_again(make_toy_dataset, tmp_path: Path,
                                                                        ray_local) -> None:
    """The progress labellers' answer cache is kept across a redo (``keep_on_redo``) and may
    be shared (``cache_dir``): another server's weights behind the same served name must
    miss it, chunk by chunk."""
    from rayrg.rewards.registry import load_label_config

    source = make_toy_dataset(num_episodes=2, steps=(5, 7), frame_size=16)
    out, cache = tmp_path / "gvl", tmp_path / "shared-cache"

    def raw(server: LoopbackServer) -> dict:
        return {"method": "gvl", "frames": 4, "cache_dir": str(cache), "backend": {
            "type": "openai", "base_url": server.base_url, "model": "loopback-vlm", "backoff_initial_s": 0.01}}

    with LoopbackServer(root="/weights/a") as a:
        method, config = load_label_config(raw(a))
        run_label(method, config, source, out)
        asked = a.stats.requests
        assert asked > 0 and json.loads((out / "_gvl_summary.json").read_text())["backend_calls"] == asked
    with LoopbackServer(root="/weights/b") as b:
        method, config = load_label_config(raw(b))
        with pytest.raises(StaleOutputError, match="model_identity"):
            run_label(method, config, source, out)
        run_label(method, config, source, tmp_path / "gvl-b")  # a new output, the same cache
        assert b.stats.requests == asked  # every chunk asked of B, none served from A's answers
        assert json.loads((tmp_path / "gvl-b" / "_gvl_summary.json").read_text())["backend_calls"] == asked
