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
from pathlib import Path

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


def test_unfinished_labels_are_refused_used_on_opt_in_and_redone_after_the_retry(
        make_toy_dataset, tmp_path: Path, ray_local, capsys: pytest.CaptureFixture) -> None:
    source = make_toy_dataset(num_episodes=2, steps=(5, 9))
    labelled, run = tmp_path / "labelled", tmp_path / "train"
    with LoopbackServer(Faults(error_rate=1.0, retry_after_s=None)) as server:
        config = _rgvlm_yaml(tmp_path / "label.yaml", server.base_url)
        label_cmd = ["label", "--config", str(config), "--dataset", str(source), "--out", str(labelled)]
        assert main(label_cmd) == 0
        capsys.readouterr()
        meta = json.loads((labelled / "metadata.json").read_text())
        unfinished = meta["extra"][UNFINISHED_KEY]
        assert meta["fingerprint"] is None  # no final fingerprint on a partial result
        assert unfinished["failed"] == unfinished["windows"] > 0
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
        server.faults.error_rate = 0.0
        assert main(label_cmd) == 0
    meta = json.loads((labelled / "metadata.json").read_text())
    assert UNFINISHED_KEY not in meta["extra"] and meta["fingerprint"]
    capsys.readouterr()
    # the consumer does not skip its work as up to date: refused by default, redone on request
    with pytest.raises(StaleOutputError, match="dataset"):
        train(config_zero, labelled, run)
    train(config_zero, labelled, run, on_change="redo")
    out = capsys.readouterr().out
    assert "skipping" not in out and "redoing it" in out
    after = read_record(run)
    assert after["complete"] and after["inputs"]["dataset"] == meta["fingerprint"] != before["inputs"]["dataset"]


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
