"""S3 against a real loopback S3 server (moto_server, signatures checked): mirror pull-through,
write-back, fallbacks, never placing a wrong object, push, and output delivery with presigned URLs."""

from __future__ import annotations

import hashlib
import logging

import pytest
import requests

import model_fetch
from model_fetch import DownloadError, IntegrityError, ModelEntry, Settings, Store
from model_fetch._s3 import make_client, writeback_hook
from tests.s3server import s3_server
from worker.outputs import OutputFile, to_s3

KiB = 1024
UNREACHABLE = "http://127.0.0.1:9/origin/model.bin"  # nothing listens on port 9


@pytest.fixture(scope="module")
def s3():
    with s3_server(buckets=["models"]) as server:
        yield server


def data_of(size: int, seed: int) -> bytes:
    return hashlib.shake_256(str(seed).encode()).digest(size)


def settings_for(s3, tmp_path, name="models", **kw) -> Settings:
    base = dict(models_dirs=[tmp_path / name], include_default_manifest=False, chunk_size=256 * KiB, connections=4,
                min_free_bytes=0, s3_endpoint_url=s3.endpoint, s3_region="us-east-1", s3_access_key_id=s3.access_key,
                s3_secret_access_key=s3.secret_key, max_attempts=3, backoff_base=0.01)
    return Settings(**{**base, **kw})


def origin_file(tmp_path, data: bytes) -> str:
    path = tmp_path / "origin" / "model.bin"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path.as_uri()


def test_pull_through_the_mirror_with_origin_unreachable(s3, tmp_path):
    data = data_of(2 * 1024 * KiB + 7, 1)
    s3.client().put_object(Bucket="models", Key="m1/loras/model.bin", Body=data)
    entry = ModelEntry("model.bin", "loras", url=UNREACHABLE, sha256=hashlib.sha256(data).hexdigest(),
                       mirrors=("s3://models/m1/loras/model.bin",))
    report = model_fetch.ensure([entry], settings=settings_for(s3, tmp_path), store=Store([tmp_path / "models"]))
    (f,) = report.files
    assert f.path.read_bytes() == data and f.source == "s3://models/m1/loras/model.bin"
    assert report.downloaded_bytes == len(data)


def test_writeback_then_second_store_pulls_from_mirror_without_origin(s3, tmp_path):
    data = data_of(1536 * KiB, 2)
    sha = hashlib.sha256(data).hexdigest()
    settings = settings_for(s3, tmp_path, mirror_writeback="s3://models/wb")
    hook = writeback_hook(settings)
    entry = ModelEntry("model.bin", "vae", url=origin_file(tmp_path, data), sha256=sha)
    first = model_fetch.ensure([entry], settings=settings, store=Store([tmp_path / "models"]), after_place=hook)
    assert first.files[0].source.startswith("file://")  # mirror empty: came from the origin
    assert hook.wait(30) == [{"name": "model.bin", "url": "s3://models/wb/vae/model.bin", "state": "uploaded"}]
    head = s3.client().head_object(Bucket="models", Key="wb/vae/model.bin")
    assert head["Metadata"]["sha256"] == sha and head["ContentLength"] == len(data)
    # a second worker: empty store, origin gone, same write-back mirror configured
    offline_origin = ModelEntry("model.bin", "vae", url=UNREACHABLE, sha256=sha)
    second = model_fetch.ensure([offline_origin], settings=settings_for(s3, tmp_path, "models2", mirror_writeback="s3://models/wb"),
                                store=Store([tmp_path / "models2"]))
    assert second.files[0].source == "s3://models/wb/vae/model.bin"
    assert second.files[0].path.read_bytes() == data


def test_unverified_origin_bytes_are_not_written_back(s3, tmp_path, caplog):
    data = data_of(100 * KiB, 3)
    settings = settings_for(s3, tmp_path, mirror_writeback="s3://models/unverified")
    hook = writeback_hook(settings)
    entry = ModelEntry("nohash.bin", "vae", url=origin_file(tmp_path, data))
    with caplog.at_level(logging.WARNING):
        model_fetch.ensure([entry], settings=settings, store=Store([tmp_path / "models"]), after_place=hook)
    assert hook.wait(5) == [] and "not written back" in caplog.text
    assert "Contents" not in s3.client().list_objects_v2(Bucket="models", Prefix="unverified/")


@pytest.mark.parametrize("case", ["wrong_credentials", "missing_object", "missing_bucket"])
def test_mirror_failure_falls_back_to_origin_with_one_warning(s3, tmp_path, caplog, case):
    data = data_of(700 * KiB, 4)
    s3.client().put_object(Bucket="models", Key="m4/model.bin", Body=data)
    mirror = {"wrong_credentials": "s3://models/m4/model.bin", "missing_object": "s3://models/m4/absent.bin",
              "missing_bucket": "s3://no-such-bucket/model.bin"}[case]
    kw = {"s3_secret_access_key": "wrong-secret"} if case == "wrong_credentials" else {}
    entry = ModelEntry("model.bin", "loras", url=origin_file(tmp_path, data), sha256=hashlib.sha256(data).hexdigest(),
                       mirrors=(mirror,))
    with caplog.at_level(logging.WARNING, logger="model_fetch"):
        report = model_fetch.ensure([entry], settings=settings_for(s3, tmp_path, **kw), store=Store([tmp_path / "models"]))
    assert report.files[0].path.read_bytes() == data and report.files[0].source.startswith("file://")
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "falling back" in r.getMessage()]
    assert len(warnings) == 1 and mirror in warnings[0].getMessage()
    assert "wrong-secret" not in caplog.text and s3.secret_key not in caplog.text


def test_wrong_hash_object_on_mirror_is_never_placed(s3, tmp_path):
    good = data_of(600 * KiB, 5)
    bad = bytearray(good)
    bad[1000] ^= 0xFF
    sha = hashlib.sha256(good).hexdigest()
    # the corrupted object even claims the right sha256 in its metadata
    s3.client().put_object(Bucket="models", Key="m5/model.bin", Body=bytes(bad), Metadata={"sha256": sha})
    store = Store([tmp_path / "models"])
    entry = ModelEntry("model.bin", "loras", url=UNREACHABLE, sha256=sha, mirrors=("s3://models/m5/model.bin",))
    with pytest.raises((IntegrityError, DownloadError)):
        model_fetch.ensure([entry], settings=settings_for(s3, tmp_path), store=store)
    assert not (tmp_path / "models" / "loras" / "model.bin").exists()
    assert not (tmp_path / "models" / "loras" / "model.bin.part").exists()
    # with a reachable origin the good bytes win
    entry2 = ModelEntry("model.bin", "loras", url=origin_file(tmp_path, good), sha256=sha, mirrors=entry.mirrors)
    report = model_fetch.ensure([entry2], settings=settings_for(s3, tmp_path), store=store)
    assert report.files[0].path.read_bytes() == good and report.files[0].source.startswith("file://")


def test_push_seeds_the_mirror_once(s3, tmp_path):
    from model_fetch._s3 import push

    data = data_of(300 * KiB, 6)
    settings = settings_for(s3, tmp_path)
    store = Store([tmp_path / "models"])
    entry = ModelEntry("seed.bin", "text_encoders", url=origin_file(tmp_path, data), sha256=hashlib.sha256(data).hexdigest())
    model_fetch.ensure([entry], settings=settings, store=store)
    missing = ModelEntry("absent.bin", "vae", url=UNREACHABLE)
    first = push([entry, missing], store, settings, "s3://models/seed")
    assert [r["state"] for r in first] == ["uploaded", "missing"]
    assert push([entry], store, settings, "s3://models/seed")[0]["state"] == "present"
    body = s3.client().get_object(Bucket="models", Key="seed/text_encoders/seed.bin")["Body"].read()
    assert body == data
    manifest = model_fetch.Manifest()
    manifest.add(entry)
    manifest.add(missing)
    tiers = {f.entry.name: f.tiers for f in model_fetch.status(settings=settings.with_(mirror_writeback="s3://models/seed"),
                                                                manifest=manifest, store=store, remote=True)}
    assert tiers == {"seed.bin": ["local", "s3-mirror", "origin"], "absent.bin": ["origin"]}


@pytest.fixture(scope="module")
def s3_open():
    with s3_server(auth=False, buckets=["outputs"]) as server:
        yield server


def test_output_multipart_upload_and_presigned_url(s3_open, tmp_path):
    s3 = s3_open
    video = tmp_path / "out" / "clip_00001_.mp4"
    video.parent.mkdir()
    video.write_bytes(data_of(70 * 1024 * KiB, 7))  # over the 64 MB multipart threshold
    client = make_client(settings_for(s3, tmp_path))
    (item,) = to_s3([OutputFile("15", "images", video.name, "", video)], client, "outputs", "jobs/abc", 600)
    head = s3.client().head_object(Bucket="outputs", Key="jobs/abc/clip_00001_.mp4")
    assert head["ContentType"] == "video/mp4" and "-" in head["ETag"]  # multipart ETag: "<md5>-<parts>"
    assert item["type"] == "s3_url" and item["expires_in"] == 600
    got = requests.get(item["data"], timeout=30)
    assert got.status_code == 200 and got.content == video.read_bytes()


@pytest.mark.parametrize("url, expected", [
    ("https://videos.s3.eu-west-3.amazonaws.com", ("https://s3.eu-west-3.amazonaws.com", "videos", True, "eu-west-3")),
    ("https://my.videos.s3-us-west-2.amazonaws.com/", ("https://s3-us-west-2.amazonaws.com", "my.videos", True, "us-west-2")),
    ("https://clips.s3.us-west-002.backblazeb2.com", ("https://s3.us-west-002.backblazeb2.com", "clips", True, "us-west-002")),
    ("https://s3.us-east-1.amazonaws.com/videos", ("https://s3.us-east-1.amazonaws.com", "videos", False, "us-east-1")),
    ("http://127.0.0.1:9000/videos/ignored", ("http://127.0.0.1:9000", "videos", False, None)),
    ("https://acct.r2.cloudflarestorage.com", ("https://acct.r2.cloudflarestorage.com", None, False, None)),
])
def test_bucket_endpoint_url_forms(url, expected):
    """BUCKET_ENDPOINT_URL as RunPod users write it: the bucket leaves the host or the path, never the key."""
    from model_fetch._s3 import parse_endpoint

    e = parse_endpoint(url)
    assert (e.url, e.bucket, e.virtual, e.region) == expected
