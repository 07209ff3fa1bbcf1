"""Unfinished labels never pass as finished, and a refusal names what changed.

RG-VLM labels a toy dataset through a real chat server on 127.0.0.1 (the loopback server)
that answers every request 500 with no retries allowed, so every window fails; consumers
must refuse the result in one line naming the failed count and the command that retries,
use it only when told to (keyed to the missing windows), and redo their work after the
retry fills them. Refusals of changed settings name the setting, also when it enters the
key as a hash, and never print a secret-bearing value. Runtime settings (a CLIP labeller's
``max_actors``) are in no fingerprint.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from rayrg.cli import main
from rayrg.data.access import UNFINISHED_KEY, UnfinishedLabelsError
from rayrg.provenance import StaleOutputError, read_record
from rayrg.rewards.registry import get_method, load_label_config, run_label
from rayrg.rewards.rgvlm.loopback import Faults, LoopbackServer
from rayrg.rl.config import TrainConfig
from rayrg.rl.train import train

pytestmark = pytest.mark.integration

TRAIN = {"observation": "frame", "channels": [4, 8, 8], "batch_size": 8, "hidden": 32, "text_dim": 8,
         "report_every": 5, "checkpoint_every": 5, "updates_per_call": 5, "num_steps": 5,
         "reward_column": "reward_rgvlm_sparse"}


def _rgvlm_yaml(path: Path, base_url: str, **top) -> Path:
    backend = {"type": "openai", "base_url": base_url, "model": "loopback-vlm", "max_retries": 0,
               **top.pop("backend", {})}
    path.write_text(yaml.safe_dump({"method": "rgvlm", "backend": backend, **top}))
    return path


def _metadata(dataset: Path) -> dict[str, Any]:
    return json.loads((dataset / "metadata.json").read_text())


@dataclass
class _Unfinished:
    """RG-VLM labels at ``labelled`` whose every window failed, the ``rayrg label`` command that
    made them, and the loopback server that failed them (healthy again on :meth:`retry`)."""

    labelled: Path
    config: Path
    command: list[str]
    server: LoopbackServer

    def retry(self) -> str:
        """The same command with the server answering: the labels are finished; their fingerprint."""
        self.server.faults.error_rate = 0.0
        assert main(self.command) == 0
        meta = _metadata(self.labelled)
        assert UNFINISHED_KEY not in meta["extra"] and meta["fingerprint"]
        return meta["fingerprint"]


@contextmanager
def _unfinished_labels(source: Path, tmp_path: Path, **top: Any) -> Iterator[_Unfinished]:
    """Label ``source`` with RG-VLM through a server that answers every request 500 (no retries
    allowed): every window fails. ``top``: more of the label config."""
    labelled = tmp_path / "labelled"
    with LoopbackServer(Faults(error_rate=1.0, retry_after_s=None)) as server:
        config = _rgvlm_yaml(tmp_path / "label.yaml", server.base_url, **top)
        command = ["label", "--config", str(config), "--dataset", str(source), "--out", str(labelled)]
        assert main(command) == 0
        meta = _metadata(labelled)
        assert meta["fingerprint"] is None  # no final fingerprint on a partial result
        assert meta["extra"][UNFINISHED_KEY]["failed"] == meta["extra"][UNFINISHED_KEY]["windows"] > 0
        yield _Unfinished(labelled, config, command, server)


def test_unfinished_labels_are_refused_used_on_opt_in_and_redone_after_the_retry(
        make_toy_dataset, tmp_path: Path, ray_local, capsys: pytest.CaptureFixture) -> None:
    source = make_toy_dataset(num_episodes=2, steps=(5, 9))
    run = tmp_path / "train"
    with _unfinished_labels(source, tmp_path) as labels:
        labelled, config = labels.labelled, labels.config
        capsys.readouterr()
        unfinished = _metadata(labelled)["extra"][UNFINISHED_KEY]
        retry = f"rayrg label --config {config} --dataset {source} --out {labelled}"
        assert unfinished["retry"] == retry

        # train refuses in one line: the failed count and the exact command that retries
        train_yaml = tmp_path / "train.yaml"
        train_yaml.write_text(yaml.safe_dump(TRAIN))
        assert main(["train", "--config", str(train_yaml), "--dataset", str(labelled), "--out", str(run)]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1, err
        assert f"{unfinished['failed']} of {unfinished['windows']} rgvlm windows failed" in err
        assert f"`{retry}`" in err and "nan_policy: zero" in err
        assert not run.exists()
        # ... and so does every other consumer, before it reads or writes anything: the
        # commands in one line each (tune, both exports, the reward bench) ...
        for command, opt_in in (
                (["tune", "--dataset", str(labelled), "--out", str(tmp_path / "tune")], "train.nan_policy: zero"),
                (["export", "minari", str(labelled), "--out", str(tmp_path / "minari")], "--allow-unfinished"),
                (["export", "lerobot", str(labelled), "--out", str(tmp_path / "lerobot")], "--allow-unfinished"),
                (["reward-bench", "--dataset", str(labelled), "--out", str(tmp_path / "bench")],
                 "--allow-unfinished")):
            assert main(command) == 2, command
            err = capsys.readouterr().err.strip()
            assert len(err.splitlines()) == 1, err
            assert f"{unfinished['failed']} of {unfinished['windows']} rgvlm windows failed" in err, err
            assert f"`{retry}`" in err and opt_in in err, err
            assert not Path(command[command.index("--out") + 1]).exists(), command
        # ... and the functions behind label, encode and export
        with pytest.raises(UnfinishedLabelsError, match="retry them with"):
            run_label(get_method("sparse"), load_label_config({"method": "sparse"})[1], labelled, tmp_path / "l2")
        from rayrg.data.lerobot import export_lerobot
        from rayrg.encode.stage import encode

        with pytest.raises(UnfinishedLabelsError, match="--allow-unfinished to encode"):
            encode(labelled, tmp_path / "features", "clip", tmp_path / "no-checkpoint")
        with pytest.raises(UnfinishedLabelsError, match="--allow-unfinished to export lerobot"):
            export_lerobot(labelled, tmp_path / "export")
        assert not (tmp_path / "l2").exists() and not (tmp_path / "features").exists()

        # the explicit opt-in trains on them, keyed to which windows were missing
        config_zero = TrainConfig(**TRAIN, nan_policy="zero")
        assert (train(config_zero, labelled, run) / "step.txt").read_text() == "5"
        before = read_record(run)
        assert before["complete"] and before["inputs"]["dataset"].startswith("unfinished:")

        # the retry fills the windows: the labels are finished and carry a fingerprint
        finished = labels.retry()
    capsys.readouterr()
    # the consumer does not skip its work as up to date: refused by default, redone on request
    with pytest.raises(StaleOutputError, match="dataset"):
        train(config_zero, labelled, run)
    train(config_zero, labelled, run, on_change="redo")
    out = capsys.readouterr().out
    assert "skipping" not in out and "redoing it" in out
    after = read_record(run)
    assert after["complete"] and after["inputs"]["dataset"] == finished != before["inputs"]["dataset"]


def _recorded_dataset(out: Path) -> str:
    """The dataset fingerprint a stage's output is keyed to (its provenance record)."""
    return read_record(out)["inputs"]["dataset"]


@pytest.mark.parametrize("source_format", ["lerobot_import", "minari_import"])
def test_every_consumer_that_opted_in_redoes_its_work_after_the_retry(
        source_format: str, tmp_path: Path, ray_local, capsys: pytest.CaptureFixture) -> None:
    """Each consumer told to use unfinished labels (a label method on top, reward-bench, encode,
    both exports) keys its output to the missing windows; after the retry it never skips as up
    to date: with ``on_change="redo"`` (``--overwrite``) it says why in one line and redoes it,
    keyed to the finished labels (refused by default: the train test above). The exports need
    a dataset imported from their format: LeRobot's import carries every other consumer too."""
    from rayrg.bench.bench import reward_bench
    from rayrg.config import ConfigError
    from rayrg.contracts.features import read_encoder_record
    from rayrg.encode.stage import encode

    # name → (run it with its opt-in: labels, out, on_change; the dataset key its output recorded)
    consumers: dict[str, tuple[Callable[[Path, Path, str], Any], Callable[[Path], str]]] = {}
    if source_format == "lerobot_import":
        from rayrg.data.lerobot import export_lerobot, import_lerobot
        from rayrg.models.tiny_clip import build_tiny_clip
        from tests.data import _lerobot_synth as synth

        source = import_lerobot(synth.write_dataset(tmp_path / "lerobot"), tmp_path / "imported")
        top: dict[str, Any] = {"continuous_actions": "as_vectors"}  # the synthetic robot's actions
        shape = load_label_config({"method": "shape", "column": "reward_rgvlm", "variant": "centred",
                                   "sparse_weight": None})
        clip = build_tiny_clip(tmp_path / "clip", size="xs")
        consumers = {
            "label shape": (lambda labels, out, on_change: run_label(*shape, labels, out, on_change=on_change,
                                                                     allow_unfinished=True), _recorded_dataset),
            "reward-bench": (lambda labels, out, on_change: reward_bench(
                labels, out, ["reward_rgvlm"], on_change=on_change, allow_unfinished=True), _recorded_dataset),
            "export lerobot": (lambda labels, out, on_change: export_lerobot(
                labels, out, "reward_rgvlm", on_change=on_change, allow_unfinished=True), _recorded_dataset),
            # encode never skips nor redoes in place (features are never mixed or reused): its
            # features record the key, so whatever is keyed to them changes with the labels
            "encode": (lambda labels, out, on_change: encode(labels, out, "clip", clip, max_actors=1,
                                                             allow_unfinished=True),
                       lambda out: read_encoder_record(out)["dataset_fingerprint"]),
        }
    else:
        pytest.importorskip("minari")
        from rayrg.data.minari import MINARI, SOURCE_REWARD_COLUMN, MinariImportConfig
        from tests.data.test_minari import MINIGRID_ACTIONS, write_store

        store = write_store(tmp_path / "minari_store")
        source = MINARI.import_(store["source"], tmp_path / "imported",
                                MinariImportConfig(action_names=MINIGRID_ACTIONS)).trajectories
        top = {}
        # Minari holds no NaN rewards: with the opt-in, a column the failed windows left whole
        consumers = {"export minari": (lambda labels, out, on_change: MINARI.export(
            labels, out, SOURCE_REWARD_COLUMN, on_change=on_change, allow_unfinished=True), _recorded_dataset)}

    outs = {name: tmp_path / "out" / name.replace(" ", "-") for name in consumers}
    before, after, said = {}, {}, {}
    with _unfinished_labels(source, tmp_path, **top) as labels:
        for name, (run, recorded) in consumers.items():
            run(labels.labelled, outs[name], "refuse")
            before[name] = recorded(outs[name])
        # the same unfinished labels again: up to date (so what follows tests the key, not a
        # consumer that always redoes); a label on top is complete, its output unfinished
        capsys.readouterr()
        for name in set(consumers) - {"encode"}:
            consumers[name][0](labels.labelled, outs[name], "refuse")
            assert "up to date" in capsys.readouterr().out, name
        finished = labels.retry()
    capsys.readouterr()
    for name, (run, recorded) in consumers.items():
        out = outs[name]
        if name == "encode":  # refused in place, never reused: encoded anew elsewhere
            with pytest.raises(ConfigError, match="not empty"):
                run(labels.labelled, out, "refuse")
            out = tmp_path / "out" / "encode-again"
        run(labels.labelled, out, "redo")
        said[name], after[name] = capsys.readouterr().out, recorded(out)
    # none skips as up to date; each says in one line why it redoes: the labels it used changed
    assert {name: "up to date" in text for name, text in said.items()} == dict.fromkeys(said, False), said
    assert all('inputs changed (dataset: "unfinished:' in text and "redoing it" in text
               for name, text in said.items() if name != "encode"), said
    # the outputs were keyed to the missing windows, now to the finished labels
    assert after == dict.fromkeys(consumers, finished)
    assert all(key.startswith("unfinished:") for key in before.values()), before
    if source_format == "lerobot_import":  # the label on top is finished now, keyed to the finished labels
        meta = _metadata(outs["label shape"])
        assert UNFINISHED_KEY not in meta["extra"] and meta["fingerprint"] == read_record(outs["label shape"])["fingerprint"]


def test_a_refusal_names_the_changed_answer_setting_and_never_a_secret_value(
        make_toy_dataset, tmp_path: Path, ray_local) -> None:
    source = make_toy_dataset(num_episodes=1, steps=(5,), frame_size=16)
    out = tmp_path / "labelled"
    header_value = "tenant-Vq48RkZm-secret"
    with LoopbackServer() as server:
        def config(temperature: float = 0.0, tenant: str = header_value):
            return load_label_config({"method": "rgvlm", "backend": {
                "type": "openai", "base_url": server.base_url, "model": "loopback-vlm",
                "headers": {"X-Tenant": tenant}}, "decoding": {"temperature": temperature}})

        method, first = config()
        run_label(method, first, source, out)
        assert read_record(out)["complete"]
        with pytest.raises(StaleOutputError) as refused:
            run_label(method, config(temperature=0.7)[1], source, out)
        assert "answers.decoding.temperature: 0.0 → 0.7" in str(refused.value)

        with pytest.raises(StaleOutputError) as refused:
            run_label(method, config(tenant="tenant-Ub17XwPe-other")[1], source, out)
        text = str(refused.value)
        assert "answers.backend.headers: changed (value not shown)" in text
        assert "tenant-" not in text and "X-Tenant" not in text
    assert header_value not in (out / "_provenance.json").read_text()


def test_runtime_settings_of_clip_are_in_no_fingerprint(make_toy_dataset, tmp_path: Path, ray_local,
                                                        capsys: pytest.CaptureFixture) -> None:
    from rayrg.models.tiny_clip import build_tiny_clip

    source = make_toy_dataset(num_episodes=2, steps=(3, 4), frame_size=32)
    checkpoint = build_tiny_clip(tmp_path / "clip", size="xs")
    out = tmp_path / "labelled"

    def clip(**runtime):
        return load_label_config({"method": "clip", "model": str(checkpoint), "device": "cpu",
                                  "negatives": {"source": "config", "texts": ["open the door"]}, **runtime})

    method, first = clip(max_actors=1, batch_size=8)
    run_label(method, first, source, out)
    fingerprint = read_record(out)["fingerprint"]
    capsys.readouterr()
    run_label(method, clip(max_actors=2, batch_size=4, num_cpus=0.25)[1], source, out)
    assert "up to date" in capsys.readouterr().out
    assert read_record(out)["fingerprint"] == fingerprint


def test_rayrg_run_refuses_unfinished_labels_before_its_later_stages(
        make_toy_dataset, tmp_path: Path, ray_local, capsys: pytest.CaptureFixture) -> None:
    from rayrg.contracts.tasks import write_eval_tasks
    from rayrg.evaluation.evaluate import EvalTask

    source = make_toy_dataset(num_episodes=2, steps=(5, 9))
    tasks = write_eval_tasks(tmp_path / "eval_tasks.json",
                             [EvalTask("b0", "babyai-chain", "go to the red ball", 1, 0, 5)])
    out = tmp_path / "run"
    with LoopbackServer(Faults(error_rate=1.0, retry_after_s=None)) as server:
        config = tmp_path / "exp.yaml"
        config.write_text(yaml.safe_dump({
            "out": str(out), "data": {"source": "path", "trajectories": str(source), "eval_tasks": str(tasks)},
            "labels": [{"method": "rgvlm", "backend": {"type": "openai", "base_url": server.base_url,
                                                       "model": "loopback-vlm", "max_retries": 0}}],
            "methods": {"rgvlm": {"reward_column": "reward_rgvlm_sparse"}},
            "evalset": {}, "bench": {}, "seeds": [0],
            "train": {k: v for k, v in TRAIN.items() if k != "reward_column"}}))
        assert main(["run", str(config)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    unfinished = json.loads((out / "labels" / "0-rgvlm" / "metadata.json").read_text())["extra"][UNFINISHED_KEY]
    assert f"{unfinished['failed']} of {unfinished['windows']} rgvlm windows failed" in err
    # the command that retries is the run itself (its label stage resumes the failed windows)
    assert f"`rayrg run {config}`" in err and "train.nan_policy: zero" in err
    # refused right after the label stage: no evaluation set labelled, no bench, no training
    assert not any((out / name).exists() for name in ("evalset", "evalset_labels", "bench", "train"))
