"""A real S3-protocol server on 127.0.0.1: ``moto_server`` (moto[server], a dev extra).

Fixtures (import them into a test module or conftest to use them elsewhere):

- ``moto_server``: one server per test session (no IAM checks: any key is accepted).
- ``s3_bucket``: a fresh bucket on it; ``AWS_ENDPOINT_URL`` and dummy credentials set through
  ``monkeypatch`` (the standard variables rayrg.storage reads), ``AWS_EC2_METADATA_DISABLED``
  so no instance-metadata lookup waits. Yields ``S3Bucket(name, uri, endpoint, env)``;
  ``env`` is what a Ray process (``runtime_env={"env_vars": env}``, a ``ray start``) needs.
- ``moto_server_iam``: a second server that enforces IAM (``INITIAL_NO_AUTH_ACTION_COUNT``):
  for rejected keys, missing credentials and a read-only user.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
DUMMY_KEYS = {"AWS_ACCESS_KEY_ID": "rayrgtestkey", "AWS_SECRET_ACCESS_KEY": "rayrgtestsecret"}


def free_port() -> int:
    """A free port outside Ray's default worker range (10002–19999)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if not 10002 <= port <= 19999:
            return port


@dataclass
class MotoServer:
    endpoint: str
    process: subprocess.Popen = field(repr=False)


def start_moto(extra_env: dict[str, str] | None = None) -> MotoServer:
    # this interpreter's own moto first: a `moto_server` found on PATH (a pyenv shim) may be
    # another install whose multipart uploads fail
    exe = str(BIN / "moto_server") if (BIN / "moto_server").exists() else shutil.which("moto_server")
    if exe is None:
        pytest.skip("moto_server is not installed (pip install 'moto[server]>=5', the dev extra)")
    port = free_port()
    env = {**os.environ, **(extra_env or {})}
    process = subprocess.Popen([exe, "-H", "127.0.0.1", "-p", str(port)], env=env, cwd=tempfile.gettempdir(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            _boto(endpoint, "s3", DUMMY_KEYS).list_buckets()
            return MotoServer(endpoint, process)
        except Exception:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError(f"moto_server did not come up on {endpoint}") from None
            time.sleep(0.3)


def stop_moto(server: MotoServer) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()


@dataclass
class S3Bucket:
    name: str
    endpoint: str
    env: dict[str, str]

    @property
    def uri(self) -> str:
        return f"s3://{self.name}"

    def client(self):  # boto3, to look at the bucket independently of rayrg/pyarrow
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id=self.env.get("AWS_ACCESS_KEY_ID", "x"),
                            aws_secret_access_key=self.env.get("AWS_SECRET_ACCESS_KEY", "x"))

    def keys(self) -> list[str]:
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=self.name)
        return sorted(obj["Key"] for page in pages for obj in page.get("Contents", []))


def _boto(endpoint: str, service: str, keys: dict[str, str]):
    import boto3

    return boto3.client(service, endpoint_url=endpoint, region_name="us-east-1",
                        aws_access_key_id=keys["AWS_ACCESS_KEY_ID"],
                        aws_secret_access_key=keys["AWS_SECRET_ACCESS_KEY"])


def s3_env(endpoint: str) -> dict[str, str]:
    return {"AWS_ENDPOINT_URL": endpoint, "AWS_REGION": "us-east-1",
            "AWS_EC2_METADATA_DISABLED": "true", **DUMMY_KEYS}


def _create_bucket(endpoint: str, name: str, keys: dict[str, str]) -> None:
    import boto3

    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                 aws_access_key_id=keys["AWS_ACCESS_KEY_ID"],
                 aws_secret_access_key=keys["AWS_SECRET_ACCESS_KEY"]).create_bucket(Bucket=name)


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    server = start_moto()
    yield server
    stop_moto(server)


@pytest.fixture
def s3_bucket(moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch) -> S3Bucket:
    env = s3_env(moto_server.endpoint)
    for name in ("AWS_ENDPOINT_URL_S3", "AWS_PROFILE", "AWS_SESSION_TOKEN", "RAYRG_STORAGE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    name = f"rayrg-{secrets.token_hex(4)}"
    _create_bucket(moto_server.endpoint, name, env)
    return S3Bucket(name, moto_server.endpoint, env)


@dataclass
class IamServer:
    """A moto server enforcing IAM: ``bucket`` exists, ``read_only`` keys may only read."""

    server: MotoServer
    bucket: str
    read_only: dict[str, str]


@pytest.fixture(scope="session")
def moto_server_iam() -> Iterator[IamServer]:
    import boto3

    # The first 5 requests are unauthenticated (start_moto's readiness call and the set-up
    # below); every later one is checked.
    server = start_moto({"INITIAL_NO_AUTH_ACTION_COUNT": "5"})
    try:
        kw = {"endpoint_url": server.endpoint, "region_name": "us-east-1", **{
            k.lower(): v for k, v in DUMMY_KEYS.items()}}
        iam, s3 = boto3.client("iam", **kw), boto3.client("s3", **kw)
        iam.create_user(UserName="reader")
        iam.put_user_policy(UserName="reader", PolicyName="read", PolicyDocument=json.dumps({
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": ["s3:GetObject", "s3:ListBucket"], "Resource": "*"}]}))
        key = iam.create_access_key(UserName="reader")["AccessKey"]
        s3.create_bucket(Bucket="guarded")
        yield IamServer(server, "guarded", {"AWS_ACCESS_KEY_ID": key["AccessKeyId"],
                                            "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"]})
    finally:
        stop_moto(server)


@pytest.fixture
def ray_s3(s3_bucket: S3Bucket) -> Iterator[S3Bucket]:
    """A local Ray cluster whose workers have the bucket's S3 settings in their environment, as
    every node of a real cluster has its credentials: a cluster the session started earlier
    (before the variables were set) is restarted, and restarted again afterwards without them."""
    import ray

    from rayrg.runtime import init_ray

    ray.shutdown()
    init_ray(num_cpus=2, object_store_memory=400 * 1024 * 1024)
    try:
        yield s3_bucket
    finally:
        ray.shutdown()
        for name in s3_bucket.env:  # the session's cluster again, without the bucket's settings
            os.environ.pop(name, None)
        init_ray(num_cpus=2, object_store_memory=400 * 1024 * 1024)
