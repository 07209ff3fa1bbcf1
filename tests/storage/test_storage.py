"""rayrg.storage on local paths and on a real S3-protocol server (moto) on 127.0.0.1."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pytest

from rayrg import storage
from rayrg.config import scrub_secrets
from rayrg.errors import scrub_text
from rayrg.storage import Location, StorageError, check_writable, resolve, scrub_uri


# -- local paths: exactly as today, unless a storage root is set --------------------------------
def test_local_path_keeps_path_semantics(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RAYRG_STORAGE", raising=False)
    monkeypatch.chdir(tmp_path)
    loc = resolve("runs/x")
    assert loc.is_local and loc.local_path == Path("runs/x") and str(loc) == "runs/x"
    assert loc.path == str(tmp_path / "runs" / "x")
    (loc / "a.json").write_text("{}")
    assert (tmp_path / "runs/x/a.json").read_text() == "{}"
    assert [p.name for p in loc.ls()] == ["a.json"] and [p.name for p in loc.glob(".json")] == ["a.json"]
    assert resolve(f"file://{tmp_path}/runs/x").local_path == tmp_path / "runs/x"


def test_relative_path_resolves_against_the_storage_root(s3_bucket, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAYRG_STORAGE", f"{s3_bucket.uri}/root")
    loc = resolve("runs/x")
    assert not loc.is_local and str(loc) == f"{s3_bucket.uri}/root/runs/x"
    assert resolve(tmp_path / "abs").local_path == tmp_path / "abs"  # absolute stays local
    assert str(resolve("runs/x", root=tmp_path)) == str(tmp_path / "runs/x")  # root= wins


def test_local_write_is_atomic_and_leaves_no_temporary(tmp_path: Path) -> None:
    loc = resolve(tmp_path / "out" / "f.bin")
    loc.write_bytes(b"one")
    loc.write_bytes(b"two")
    assert loc.read_bytes() == b"two" and os.listdir(tmp_path / "out") == ["f.bin"]


# -- S3 (moto) ----------------------------------------------------------------------------------
def test_location_on_s3(s3_bucket) -> None:
    root = check_writable(f"{s3_bucket.uri}/run")
    # the probe was deleted (pyarrow leaves an empty "run/" folder marker behind it)
    assert [k for k in s3_bucket.keys() if not k.endswith("/")] == []
    (root / "a" / "b.txt").write_text("hello")
    (root / "c.parquet").write_bytes(b"x")
    assert [k for k in s3_bucket.keys() if not k.endswith("/")] == ["run/a/b.txt", "run/c.parquet"]
    assert (root / "a/b.txt").read_text() == "hello" and (root / "a").is_dir()
    assert [x.name for x in root.ls()] == ["a", "c.parquet"]
    assert [str(x) for x in root.glob(".txt")] == [f"{s3_bucket.uri}/run/a/b.txt"]
    with pytest.raises(FileNotFoundError, match="nothing.txt"):
        (root / "nothing.txt").read_bytes()
    root.delete_tree()
    assert s3_bucket.keys() == [] and not root.exists()
    check_writable(root)
    root.delete_tree()


def test_ray_data_parquet_round_trip_through_s3(s3_bucket, ray_local) -> None:
    import ray

    path, fs = storage.ray_data_args(f"{s3_bucket.uri}/table")
    assert path == f"{s3_bucket.name}/table" and fs is not None
    remote = {"runtime_env": {"env_vars": s3_bucket.env}}  # the tasks' S3 settings, as a node's
    ray.data.from_items([{"i": i, "s": str(i)} for i in range(20)]).repartition(2).write_parquet(
        path, filesystem=fs, ray_remote_args=remote)
    assert any(k.endswith(".parquet") for k in s3_bucket.keys())
    rows = ray.data.read_parquet(path, filesystem=fs, ray_remote_args=remote).take_all()
    assert sorted(r["i"] for r in rows) == list(range(20))
    assert storage.train_storage(f"{s3_bucket.uri}/ckpt")[0] == f"{s3_bucket.name}/ckpt"
    assert storage.train_storage("/abs/ckpt") == ("/abs/ckpt", None)


# -- bad input: one line naming the URI, before any work ----------------------------------------
@pytest.mark.parametrize("uri", ["s3:/bucket/x", "s3:bucket", "gs:/b/x"])
def test_uri_typo_is_refused_and_creates_nothing(uri: str, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(StorageError, match=r"needs '//'") as err:
        check_writable(uri)
    assert "\n" not in str(err.value) and uri in str(err.value)
    assert list(tmp_path.iterdir()) == []  # no local folder named 's3:'


def test_unknown_scheme(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match=r"^ftp://h/x: unknown storage scheme 'ftp://'"):
        resolve("ftp://h/x")


def test_missing_bucket(s3_bucket) -> None:
    with pytest.raises(StorageError, match=r"^s3://no-such-bucket/x: bucket 'no-such-bucket' does not exist$"):
        check_writable("s3://no-such-bucket/x")


def _iam_env(monkeypatch: pytest.MonkeyPatch, iam, keys: dict[str, str] | None) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", iam.server.endpoint)
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/config")
    for name, value in (keys or {}).items():
        monkeypatch.setenv(name, value)


def test_no_write_permission(moto_server_iam, monkeypatch: pytest.MonkeyPatch) -> None:
    _iam_env(monkeypatch, moto_server_iam, moto_server_iam.read_only)
    with pytest.raises(StorageError, match=r"^s3://guarded/run: no permission to write here"):
        check_writable("s3://guarded/run")


def test_rejected_credentials(moto_server_iam, monkeypatch: pytest.MonkeyPatch) -> None:
    _iam_env(monkeypatch, moto_server_iam, {"AWS_ACCESS_KEY_ID": "AKIAUNKNOWN",
                                            "AWS_SECRET_ACCESS_KEY": "unknownsecret"})
    with pytest.raises(StorageError, match=r"^s3://guarded/run: the AWS credentials were rejected"):
        check_writable("s3://guarded/run")


def test_missing_credentials(moto_server_iam, monkeypatch: pytest.MonkeyPatch) -> None:
    """No key in the environment or files and no instance role (metadata disabled): the
    request goes unsigned, the IAM-enforcing server refuses it."""
    _iam_env(monkeypatch, moto_server_iam, None)
    with pytest.raises(StorageError, match=r"^s3://guarded/run: no AWS credentials found"):
        check_writable("s3://guarded/run")


# -- credentials inside a URI ----------------------------------------------------------------
SECRET_URI = "s3://AKIAEXAMPLE:wJalr/XUtn+FEMI@bucket/run"


def test_credentials_in_a_uri_are_refused_and_scrubbed_everywhere() -> None:
    with pytest.raises(StorageError) as err:
        resolve(SECRET_URI)
    message = str(err.value)
    assert "credentials inside a storage URI are not used" in message
    for part in ("AKIAEXAMPLE", "wJalr", "XUtn"):
        assert part not in message
        assert part not in scrub_uri(SECRET_URI)
        assert part not in scrub_text(f"writing to {SECRET_URI} failed")
        assert part not in str(scrub_secrets({"out": SECRET_URI}))
    assert scrub_uri(SECRET_URI) == "s3://<redacted>@bucket/run"
    assert scrub_uri("s3://bucket/run") == "s3://bucket/run" and scrub_uri("runs/x") == "runs/x"


@pytest.mark.parametrize("argv", [
    ["generate", "--out", SECRET_URI, "--episodes-per-count", "1"],
    ["generate", "--out", SECRET_URI.replace("://", ":/"), "--episodes-per-count", "1"],  # a typo too
    ["export", "minari", "labelled", "--out", SECRET_URI.replace("://", ":/")],
    ["import", "lerobot", "src", "--out", SECRET_URI],
    ["export", "lerobot", SECRET_URI, "--out", "exp"],
    ["inspect", SECRET_URI],
    ["run", "exp.yaml"],  # out: the URI
    ["run", "rooted.yaml"],  # storage: the URI as the root of a relative out
])
def test_a_uri_with_credentials_is_one_line_without_them_and_writes_nothing(
        argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    """From every entry point: exit 2, one line naming the URI scrubbed, and no file anywhere
    (no provenance record, manifest, log or report can hold what was never written)."""
    import yaml

    from rayrg.cli import main

    monkeypatch.chdir(tmp_path)
    base = {"methods": {"sparse": {"reward_column": "reward_sparse"}}, "labels": [{"method": "sparse"}]}
    if argv[-1] == "exp.yaml":
        (tmp_path / "exp.yaml").write_text(yaml.safe_dump({**base, "out": SECRET_URI}))
    elif argv[-1] == "rooted.yaml":
        (tmp_path / "rooted.yaml").write_text(yaml.safe_dump({**base, "out": "runs/x", "storage": SECRET_URI}))
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main(argv) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert "\n" not in err and "<redacted>@bucket/run" in err, err
    if argv[-1] == "rooted.yaml":  # names the setting that holds the URI, not the relative out
        assert "storage (out: runs/x): " in err and " out: " not in err, err
    for part in ("AKIAEXAMPLE", "wJalr", "XUtn"):
        assert part not in captured.err + captured.out
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_location_is_picklable_and_shows_no_secret(s3_bucket) -> None:
    import pickle

    loc = resolve(f"{s3_bucket.uri}/x")
    again = pickle.loads(pickle.dumps(loc))
    assert isinstance(again, Location) and str(again) == str(loc)
    again.write_text("ok")
    assert loc.read_text() == "ok"
    assert isinstance(pa.fs.FileSystem, type)


# -- multi-node guards that need no second node -------------------------------------------------
def test_marker_round_trip_and_refusal_on_one_machine(tmp_path: Path) -> None:
    token = storage.claim_shared(tmp_path)
    storage.assert_shared(tmp_path, token)  # the driver itself sees it
    with pytest.raises(storage.NotSharedError, match=r"is not shared storage: node .* cannot see"):
        storage.assert_shared(tmp_path, "0" * 16)
    storage.release_shared(tmp_path, token)
    assert list(tmp_path.iterdir()) == []


def test_relative_out_refused_inside_ray_job(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("RAYRG_STORAGE", raising=False)
    monkeypatch.delenv("RAY_JOB_CONFIG_JSON_ENV_VAR", raising=False)
    monkeypatch.chdir(tmp_path)
    storage.refuse_relative_in_job("runs/x")  # not in a job: fine
    monkeypatch.setenv("RAY_JOB_CONFIG_JSON_ENV_VAR", "{}")
    with pytest.raises(StorageError, match=r"^runs/x: a relative output path inside `ray job submit`"):
        storage.refuse_relative_in_job("runs/x")
    storage.refuse_relative_in_job(tmp_path / "abs")
    storage.refuse_relative_in_job("s3://b/x")
    storage.refuse_relative_in_job("runs/x", root="s3://b/root")


def test_shared_mounts_are_accepted(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("RAYRG_SHARED_MOUNTS", f"/nonexistent{os.pathsep}{tmp_path}")
    assert storage.is_declared_shared(resolve(tmp_path / "run"))
    assert not storage.is_declared_shared(resolve("/elsewhere/run"))


def test_config_files_read_from_a_uri(s3_bucket) -> None:
    """A job's config kept beside its outputs: read through the URI (a Path would make it
    's3:/…', not found); missing, or unreadable, is one ConfigError naming the URI."""
    from rayrg.config import ConfigError, read_yaml_mapping
    from rayrg.rl.config import TrainConfig

    s3_bucket.client().put_object(Bucket=s3_bucket.name, Key="configs/train.yaml", Body=b"num_steps: 7\n")
    assert read_yaml_mapping(f"{s3_bucket.uri}/configs/train.yaml") == {"num_steps": 7}
    assert TrainConfig.from_yaml(f"{s3_bucket.uri}/configs/train.yaml").num_steps == 7
    with pytest.raises(ConfigError, match=rf"^config file not found: {s3_bucket.uri}/configs/none.yaml$"):
        read_yaml_mapping(f"{s3_bucket.uri}/configs/none.yaml")
    with pytest.raises(ConfigError, match=r"cannot be read") as info:
        read_yaml_mapping("nosuch://bucket/x.yaml")
    assert "\n" not in str(info.value)
