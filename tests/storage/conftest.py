from tests.storage._moto import moto_server, moto_server_iam, s3_bucket  # noqa: F401 - fixtures
