"""A real S3-compatible server on loopback: ``moto_server`` in its own process.

With ``auth=True`` signatures are checked after the first three requests, which create an IAM user,
its access key and an allow-all policy; from then on wrong credentials are refused as by AWS.
(moto's IAM mode cannot check presigned URLs, so tests that fetch one use ``auth=False``.)
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import requests

from worker.supervisor import free_port


@dataclass
class S3Server:
    endpoint: str
    access_key: str
    secret_key: str
    proc: subprocess.Popen

    def client(self, access_key: str | None = None, secret_key: str | None = None):
        import boto3
        from botocore.config import Config

        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id=access_key or self.access_key,
                            aws_secret_access_key=secret_key or self.secret_key,
                            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}))

    def env(self) -> dict[str, str]:
        """RunPod's variable names for this server."""
        return {"BUCKET_ENDPOINT_URL": self.endpoint, "BUCKET_ACCESS_KEY_ID": self.access_key,
                "BUCKET_SECRET_ACCESS_KEY": self.secret_key, "AWS_REGION": "us-east-1"}

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def start_s3_server(auth: bool = True) -> S3Server:
    port = free_port()
    env = {**os.environ, "MOTO_PORT": str(port)}
    if auth:
        env["INITIAL_NO_AUTH_ACTION_COUNT"] = "3"
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        env.pop(key, None)
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            requests.get(f"{endpoint}/moto-api/", timeout=1)
            break
        except requests.RequestException:
            time.sleep(0.1)
    else:
        proc.kill()
        raise RuntimeError("moto_server did not start")
    if not auth:
        return S3Server(endpoint, "test-access-key", "test-secret-key", proc)
    import boto3

    iam = boto3.client("iam", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="bootstrap",
                       aws_secret_access_key="bootstrap")
    iam.create_user(UserName="tester")
    key = iam.create_access_key(UserName="tester")["AccessKey"]
    iam.put_user_policy(UserName="tester", PolicyName="all",
                        PolicyDocument='{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}')
    return S3Server(endpoint, key["AccessKeyId"], key["SecretAccessKey"], proc)


@contextlib.contextmanager
def s3_server(auth: bool = True, buckets: Iterable[str] = ()) -> Iterator[S3Server]:
    """``start_s3_server`` with ``buckets`` created, stopped on leaving (a fixture's whole body)."""
    server = start_s3_server(auth=auth)
    try:
        for bucket in buckets:
            server.client().create_bucket(Bucket=bucket)
        yield server
    finally:
        server.stop()
