"""S3 pull benchmark: a 1 GiB object from the loopback S3 server (moto_server), model-fetch's engine
(8 ranged connections, journal, inline sha256, atomic rename) against boto3 `download_file` with its
default TransferConfig, in the same run. Size: BENCH_S3_GIB (default 1)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from bench.fetch import BIN, PY, pull_cmd, timed
from bench.report import table, write_section

MiB = 1024 * 1024


def run() -> None:
    from tests.fileserver import make_file
    from tests.s3server import start_s3_server

    size = int(float(os.environ.get("BENCH_S3_GIB", "1")) * 1024 * MiB)
    s3 = start_s3_server(auth=False)
    try:
        with tempfile.TemporaryDirectory(prefix="bench-s3-") as d:
            tmp = Path(d)
            src = tmp / "model.bin"
            make_file(src, size, seed=3)
            client = s3.client()
            client.create_bucket(Bucket="bench")
            client.upload_file(str(src), "bench", "models/model.bin")
            src.unlink()
            env = {**s3.env(), "AWS_ACCESS_KEY_ID": s3.access_key, "AWS_SECRET_ACCESS_KEY": s3.secret_key}
            manifest = tmp / "m.json"
            manifest.write_text(json.dumps([{"name": "model.bin", "directory": "vae", "url": "s3://bench/models/model.bin"}]))
            rows = []
            ours, rss_ours, code_ours = timed(pull_cmd(manifest, tmp / "models"), env)
            rows.append(["model-fetch pull (8 ranged GETs)", f"{ours:.2f}", f"{size / ours / MiB:.0f}", f"{rss_ours / MiB:.0f}", code_ours])
            boto, rss_boto, code_boto = timed([PY, "-c", (
                "import boto3, sys; from botocore.config import Config\n"
                f"c = boto3.client('s3', endpoint_url={s3.endpoint!r}, region_name='us-east-1', "
                "config=Config(s3={'addressing_style': 'path'}))\n"
                "c.download_file('bench', 'models/model.bin', sys.argv[1])"), str(tmp / "boto.bin")], env)
            rows.append(["boto3 download_file (default TransferConfig)", f"{boto:.2f}", f"{size / boto / MiB:.0f}",
                         f"{rss_boto / MiB:.0f}", code_boto])
    finally:
        s3.stop()
    ratio = boto / ours
    body = (f"{size / MiB / 1024:.1f} GiB object on the loopback S3 server (moto_server, one Python process), same run. "
            "model-fetch also hashes (sha256) and fsyncs before the atomic rename; boto3 does neither.\n\n"
            + table(["client", "seconds", "MiB/s", "peak RSS MiB", "exit"], rows)
            + f"\n\nRatio (boto3 time / model-fetch time): **{ratio:.2f}x**. Both clients are held back by the server "
            "on this 2-core machine: moto serves every byte from Python, so this measures parity of the request "
            "pattern, not the ceiling of either client.")
    write_section("s3", "S3: pull of a 1 GiB object", body, "make bench (python -m bench s3)")


__all__ = ["run", "BIN"]
