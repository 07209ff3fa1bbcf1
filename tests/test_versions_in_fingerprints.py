"""What enters the stages' fingerprints besides their configs: simulator versions,
RESULTS_VERSION, a label method's extra inputs; and what the runtime-field lists keep out."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

import pytest

import rayrg.provenance as provenance
from rayrg.data.generate import GenerateConfig, generate_inputs
from rayrg.envs.base import EvalTask
from rayrg.envs.registry import env_versions
from rayrg.evaluation.config import EvalConfig
from rayrg.evaluation.evaluate import RUNTIME_FIELDS as EVAL_RUNTIME_FIELDS
from rayrg.evaluation.evaluate import eval_inputs
from rayrg.provenance import StaleOutputError, claim, fingerprint


def _pretend(monkeypatch: pytest.MonkeyPatch, package: str, version: str) -> None:
    real = metadata.version
    monkeypatch.setattr(metadata, "version", lambda name: version if name == package else real(name))


def test_a_new_minigrid_changes_the_generate_fingerprint_and_refuses(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    config = GenerateConfig()
    before = generate_inputs(config)
    assert before["versions"]["minigrid"] == metadata.version("minigrid")
    claim(tmp_path, "generate", before, quiet=True).finish()
    _pretend(monkeypatch, "minigrid", "99.0.0")
    after = generate_inputs(config)
    assert fingerprint(after) != fingerprint(before)
    with pytest.raises(StaleOutputError, match=r"versions\.minigrid: .* → \"99\.0\.0\""):
        claim(tmp_path, "generate", after)


def test_evaluation_is_keyed_to_each_task_environment_s_simulator(monkeypatch: pytest.MonkeyPatch) -> None:
    thor = [EvalTask("t0", "alfred-thor", "put a mug in the sink", 2, 0, 10)]
    babyai = [EvalTask("b0", "babyai-chain", "go to the red ball", 1, 0, 5)]
    config = EvalConfig()
    thor_before, babyai_before = eval_inputs(config, "random", thor), eval_inputs(config, "random", babyai)
    assert set(thor_before["versions"]) == {"alfred-thor"}
    _pretend(monkeypatch, "ai2thor", "5.9.9")
    assert eval_inputs(config, "random", thor) != thor_before  # a new THOR build: other episodes
    assert eval_inputs(config, "random", babyai) == babyai_before  # BabyAI does not run THOR
    _pretend(monkeypatch, "minigrid", "99.0.0")
    assert eval_inputs(config, "random", babyai) != babyai_before


def test_the_environment_s_own_version_enters(monkeypatch: pytest.MonkeyPatch) -> None:
    from rayrg.envs import registry

    before = env_versions("babyai-chain")
    entry = registry._ENVIRONMENTS["babyai-chain"]
    monkeypatch.setitem(registry._ENVIRONMENTS, "babyai-chain",
                        registry.Environment(entry.actions, entry.factory, entry.packages, version="2"))
    assert env_versions("babyai-chain")["env"] != before["env"]
    assert env_versions("babyai-chain")["minigrid"] == before["minigrid"]


def test_results_version_redoes_every_stage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    inputs = {"config": {"a": 1}}
    claim(tmp_path, "stage", inputs, quiet=True).finish()
    assert claim(tmp_path, "stage", inputs).done
    monkeypatch.setattr(provenance, "RESULTS_VERSION", "999")
    with pytest.raises(StaleOutputError, match="results_version"):
        claim(tmp_path, "stage", inputs)


def test_label_inputs_carry_extra_inputs_and_leave_runtime_fields_out(tmp_path: Path, make_toy_dataset,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from rayrg.rewards import registry
    from rayrg.rewards.registry import LabelMethod, label_inputs
    from rayrg.rewards.rgvlm import RGVLM
    from rayrg.rewards.rgvlm.config import RGVLMConfig

    monkeypatch.setenv("RAYRG_CACHE_DIR", str(tmp_path / "identity"))
    dataset = make_toy_dataset(num_episodes=1, steps=(3,), frame_size=16)
    model = tmp_path / "weights"
    model.mkdir()
    (model / "config.json").write_text("{}")

    def inputs(**backend) -> dict:
        config = RGVLMConfig.from_dict({"backend": {"type": "transformers", "model": str(model), **backend}})
        return label_inputs(RGVLM, config, dataset)

    base = inputs()
    assert base["prompt"]["system"] and base["model_identity"].startswith("sha256:")
    # runtime fields (registry.RUNTIME_FIELDS, and the config's neutral fields) stay out
    assert {"num_actors", "batch_size", "num_cpus"} <= registry.RUNTIME_FIELDS
    assert inputs(num_actors=3, batch_size=9, num_cpus=1.0) == base
    assert inputs(dtype="bfloat16") != base  # an answer setting enters
    # a method's extra_inputs enter as they are
    plain = LabelMethod("x", RGVLMConfig, RGVLM.run)
    config = RGVLMConfig.from_dict({"backend": {"type": "transformers", "model": str(model)}})
    extra = LabelMethod("x", RGVLMConfig, RGVLM.run, extra_inputs=lambda c: {"tool": "v2"})
    assert label_inputs(extra, config, dataset) == {**label_inputs(plain, config, dataset), "tool": "v2"}


def test_train_and_evaluate_runtime_fields_stay_out(make_toy_dataset) -> None:
    from rayrg.rl.config import TrainConfig
    from rayrg.rl.train import RUNTIME_FIELDS as TRAIN_RUNTIME_FIELDS
    from rayrg.rl.train import train_inputs

    dataset = make_toy_dataset(num_episodes=1, steps=(3,), frame_size=16)
    base = train_inputs(TrainConfig(), dataset)
    assert "torch_threads" in TRAIN_RUNTIME_FIELDS
    assert train_inputs(TrainConfig(torch_threads=7, num_steps=3), dataset) == base
    assert train_inputs(TrainConfig(expectile=0.7), dataset) != base

    tasks = [EvalTask("b0", "babyai-chain", "go to the red ball", 1, 0, 5)]
    assert {"num_actors", "envs_per_actor"} <= set(EVAL_RUNTIME_FIELDS)
    base = eval_inputs(EvalConfig(), "random", tasks)
    assert eval_inputs(EvalConfig(num_actors=5, envs_per_actor=1), "random", tasks) == base
    assert eval_inputs(EvalConfig(budget_multiplier=3.0), "random", tasks) != base


# Parallelism, actor counts and inference batch sizes: how fast or where a labeller runs.
PARALLELISM = {"num_actors": 3, "max_actors": 3, "max_in_flight": 7, "batch_size": 5, "concurrency": 3,
               "num_cpus": 0.5, "num_gpus": 0.5, "tensor_parallel_size": 2, "device": "cuda"}


def test_runtime_settings_of_every_label_method_and_backend_are_in_no_fingerprint(
        tmp_path: Path, make_toy_dataset, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib
    import pkgutil

    import rayrg.rewards.rgvlm.backends as backends
    from rayrg.rewards.registry import LABEL_METHODS, label_inputs, load_label_config
    from rayrg.rewards.rgvlm.settings import BackendSettings

    monkeypatch.setenv("RAYRG_CACHE_DIR", str(tmp_path / "identity"))
    dataset = make_toy_dataset(num_episodes=1, steps=(3,), frame_size=16)
    model = tmp_path / "weights"
    model.mkdir()
    (model / "config.json").write_text("{}")
    local = {"type": "transformers", "model": str(model)}
    minimal = {"shape": {"column": "reward_sparse", "variant": "potential"}, "simulated": {"accuracy": 0.9},
               "rgvlm": {"backend": local}, "gvl": {"backend": local}, "topreward": {"backend": local},
               "clip": {"model": str(model)}, "vlmrm": {"model": str(model), "baseline": "a"},
               "blip2": {"model": str(model)}, "roboclip": {"model": str(model)}}
    varied: set[str] = set()
    for name in sorted(LABEL_METHODS):
        raw = {"method": name, **minimal.get(name, {})}
        method, config = load_label_config(raw)
        base = label_inputs(method, config, dataset)
        for field in PARALLELISM.keys() & set(type(config).model_fields):
            changed = load_label_config({**raw, field: PARALLELISM[field]})[1]
            assert label_inputs(method, changed, dataset) == base, (name, field)
            varied.add(f"{name}.{field}")
        backend = getattr(config, "backend", None)
        for field in PARALLELISM.keys() & set(type(backend).model_fields if backend is not None else ()):
            changed = load_label_config({**raw, "backend": {**raw["backend"], field: PARALLELISM[field]}})[1]
            assert label_inputs(method, changed, dataset) == base, (name, f"backend.{field}")
            varied.add(f"{name}.backend.{field}")
    # not vacuous: every similarity labeller's parallelism and batch size, and a local backend's
    assert {f"{m}.{f}" for m in ("clip", "vlmrm", "blip2", "roboclip") for f in ("max_actors", "batch_size", "device")} <= varied
    assert {"rgvlm.backend.num_actors", "rgvlm.backend.batch_size", "rgvlm.backend.device",
            "gvl.backend.num_actors"} <= varied

    # every backend type (HTTP ones included): parallelism stays out of the answer settings
    for info in pkgutil.iter_modules(backends.__path__):
        importlib.import_module(f"{backends.__name__}.{info.name}")
    classes, seen = list(BackendSettings.__subclasses__()), []
    while classes:
        cls = classes.pop()
        classes += cls.__subclasses__()
        kind = cls.model_fields.get("type")
        if kind is None or kind.default is None:
            continue  # a shared base, not a backend
        required = {"model": str(model), **({"base_url": "http://127.0.0.1:9/v1"}
                                            if cls.model_fields.get("base_url") else {})}
        config = cls.model_validate(required)
        for field in PARALLELISM.keys() & set(cls.model_fields):
            assert cls.model_validate({**required, field: PARALLELISM[field]}).answer_settings() \
                == config.answer_settings(), (cls.__name__, field)
            seen.append(f"{kind.default}.{field}")
    assert {"openai.num_actors", "openai.max_in_flight", "vllm.tensor_parallel_size", "vllm.batch_size"} <= set(seen)
