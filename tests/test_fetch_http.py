"""The engine over real HTTP on loopback: parallel ranges, the Hugging Face endpoint through
huggingface_hub, auth and redirects, and every server fault mode — always the right file or a
clear error, never a wrong file under its final name."""

from __future__ import annotations

import threading
import time

import pytest

import model_fetch
from model_fetch import DownloadError, IntegrityError, ModelEntry, Settings, SourceNotFound, Store
from model_fetch._store import journal_path, part_path
from tests.fileserver import Fault, FileServer, make_file

MiB = 1024 * 1024
SIZE = 6 * MiB + 12345


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("served")
    sha = make_file(root / "model.bin", SIZE, seed=7)
    return root, sha


@pytest.fixture
def server(files):
    root, _ = files
    with FileServer(root) as srv:
        yield srv


def settings(tmp_path, **kw) -> Settings:
    base = dict(models_dirs=[tmp_path / "models"], include_default_manifest=False, chunk_size=1 * MiB,
                connections=4, min_free_bytes=0, backoff_base=0.05, backoff_max=0.5, max_attempts=5,
                stall_timeout=2.0, hf_endpoint="http://127.0.0.1:1")
    return Settings(**{**base, **kw})


def pull(tmp_path, entry, **kw):
    s = settings(tmp_path, **kw)
    return model_fetch.ensure([entry], settings=s, store=Store(s.models_dirs))


def final_of(tmp_path, folder="loras", name="model.bin"):
    return tmp_path / "models" / folder / name


def assert_nothing_wrong_placed(tmp_path, expected: bytes | None):
    final = final_of(tmp_path)
    if final.exists():
        assert expected is not None and final.read_bytes() == expected
    assert not part_path(final).exists() or expected is None


def test_parallel_ranges_fetch_the_file_once(server, files, tmp_path):
    root, sha = files
    report = pull(tmp_path, ModelEntry("model.bin", "loras", url=f"{server.url}/model.bin", sha256=sha))
    assert report.files[0].path.read_bytes() == (root / "model.bin").read_bytes()
    ranges = [r for r in server.counters.ranges if r[0] == "/model.bin"]
    assert len(ranges) >= SIZE // MiB  # one request per chunk (plus the 1-byte probe)
    assert server.counters.peak_connections >= 2
    assert server.counters.bytes_by_path["/model.bin"] <= SIZE + 1


def test_ranges_reuse_kept_alive_connections(server, files, tmp_path):
    """Seven 1 MiB ranges and the probe over at most one connection per worker (plus the probe's): no new
    TCP (and, against a CDN, TLS) handshake per chunk."""
    root, sha = files
    pull(tmp_path, ModelEntry("model.bin", "loras", url=f"{server.url}/model.bin", sha256=sha), connections=2)
    requests_made = len([r for r in server.counters.ranges if r[0] == "/model.bin"])
    assert requests_made >= SIZE // MiB + 1
    assert server.counters.connections <= 3 < requests_made


@pytest.mark.parametrize("lead_mib, bounded", [(1, True), (1024, False)])
def test_workers_stay_within_the_lead_of_the_hashed_prefix(server, files, tmp_path, monkeypatch, lead_mib, bounded):
    """While chunk 0 stalls for 1 s, the workers fetch at most ``lead`` chunks past it (received pages that
    are not hashed yet stay resident, so this bounds memory); with a huge lead they run ahead at once."""
    from model_fetch import _engine as engine

    monkeypatch.setattr(engine, "LEAD_BYTES", lead_mib * MiB)  # lead = max(connections + 1, LEAD / chunk) = 4
    root, sha = files
    arrivals: dict[str, float] = {}

    def note(req) -> bool:
        if req.method == "GET" and req.range:
            arrivals.setdefault(req.range, time.monotonic())
        return False  # never fires: only records when each range was asked for

    server.faults.add("/model.bin", Fault.STATUS, predicate=note)
    server.faults.add("/model.bin", Fault.STALL, offset=1000, duration=1.0, times=1)
    pull(tmp_path, ModelEntry("model.bin", "loras", url=f"{server.url}/model.bin", sha256=sha), connections=3)
    first = arrivals[f"bytes=0-{MiB - 1}"]
    beyond = arrivals[f"bytes={4 * MiB}-{5 * MiB - 1}"] - first  # chunk 4: past the lead of 4 from chunk 0
    assert (beyond >= 0.9) is bounded, f"chunk 4 asked for {beyond:.2f} s after chunk 0"


def test_hugging_face_endpoint_lfs_sha_and_token_stay_on_the_hub_host(server, files, tmp_path):
    root, sha = files
    hf = server.add_hf_file("org/wan", "split/model.bin", root / "model.bin", token="secret-token")
    url = f"{server.url}/org/wan/resolve/main/split/model.bin"
    report = pull(tmp_path, ModelEntry("model.bin", "loras", url=url), hf_endpoint=server.url, hf_token="secret-token")
    f = report.files[0]
    assert f.path.read_bytes() == (root / "model.bin").read_bytes()
    assert Store([tmp_path / "models"]).valid_stamp(f.path).expected  # verified against X-Linked-Etag
    assert hf.sha256 == sha
    assert server.counters.authorizations(path_prefix="/org/wan/") == ["Bearer secret-token"] * len(
        server.counters.authorizations(path_prefix="/org/wan/"))
    assert set(server.counters.authorizations(path_prefix="/cdn/")) == {None}  # the CDN (other host) never sees it


def test_hub_url_is_rewritten_to_hf_endpoint(server, files, tmp_path):
    root, sha = files
    server.add_hf_file("org/wan", "model.bin", root / "model.bin")
    entry = ModelEntry("model.bin", "loras", url="https://huggingface.co/org/wan/resolve/main/model.bin")
    assert pull(tmp_path, entry, hf_endpoint=server.url).files[0].sha256 == sha


def test_hub_wrong_token_is_a_clear_error(server, files, tmp_path):
    root, _ = files
    server.add_hf_file("org/private", "model.bin", root / "model.bin", token="right")
    entry = ModelEntry("model.bin", "loras", url=f"{server.url}/org/private/resolve/main/model.bin")
    with pytest.raises(SourceNotFound) as err:
        pull(tmp_path, entry, hf_endpoint=server.url, hf_token="wrong")
    assert "HF_TOKEN" in str(err.value) and "wrong" not in str(err.value)


def test_cross_host_redirect_drops_authorization(server, files, tmp_path):
    root, sha = files
    server.faults.add("/model.bin", Fault.REDIRECT, to="/model.bin", cross_host=True)
    entry = ModelEntry("model.bin", "loras", url=f"{server.url}/model.bin", sha256=sha)
    s = settings(tmp_path)
    from model_fetch._engine import Download
    from model_fetch._transports import HttpTransport

    final = final_of(tmp_path)
    final.parent.mkdir(parents=True)
    transport = HttpTransport(entry.url, s, headers={"Authorization": "Bearer origin-only"})
    result = Download(transport, final, s, expected_sha256=sha).run()
    assert result.sha256 == sha
    hosts = {r.host.split(":")[0]: r.authorization for r in server.counters.log}
    assert hosts["127.0.0.1"] == "Bearer origin-only" and hosts["127.0.0.2"] is None


def test_server_ignoring_range_is_read_as_one_stream(server, files, tmp_path):
    root, sha = files
    server.faults.add("/model.bin", Fault.IGNORE_RANGE)
    report = pull(tmp_path, ModelEntry("model.bin", "loras", url=f"{server.url}/model.bin", sha256=sha))
    assert report.files[0].sha256 == sha and not journal_path(report.files[0].path).exists()


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_is_honoured(server, files, tmp_path, status):
    root, sha = files
    server.faults.add("/model.bin", Fault.STATUS, status=status, retry_after=1, times=2, methods={"GET"})
    t0 = time.monotonic()
    report = pull(tmp_path, ModelEntry("model.bin", "loras", url=f"{server.url}/model.bin", sha256=sha))
    assert report.files[0].sha256 == sha
    assert time.monotonic() - t0 >= 1.0  # waited as told (backoff alone is at most 0.5 s here)


def test_reset_mid_body_resumes_the_chunk_from_its_last_byte(server, files, tmp_path):
    root, sha = files
    server.faults.add("/model.bin", Fault.RESET_MID_BODY, offset=2 * MiB + 500_000, times=1)
    report = pull(tmp_path, ModelEntry("model.bin", "loras", url=f"{server.url}/model.bin", sha256=sha))
    assert report.files[0].sha256 == sha
    # re-fetched at most what was in flight on the reset connection
    assert server.counters.bytes_by_path["/model.bin"] <= SIZE + 1 * MiB


def test_truncated_body_is_retried(server, files, tmp_path):
    root, sha = files
    server.faults.add("/model.bin", Fault.TRUNCATE, offset=4 * MiB + 10, times=2)
    assert pull(tmp_path, ModelEntry("model.bin", "loras", url=f"{server.url}/model.bin", sha256=sha)).files[0].sha256 == sha


def test_wrong_bytes_once_then_right(server, files, tmp_path):
    """Corrupted bytes fail the one download (integrity_error, nothing placed, no second download in the same
    run); the next pull gets the right bytes."""
    root, sha = files
    server.faults.add("/model.bin", Fault.WRONG_BYTES, offset=3 * MiB, length=16, times=1)
    entry = ModelEntry("model.bin", "loras", url=f"{server.url}/model.bin", sha256=sha)
    with pytest.raises(IntegrityError):
        pull(tmp_path, entry)
    assert server.counters.bytes_by_path["/model.bin"] <= SIZE + 1
    assert pull(tmp_path, entry).files[0].sha256 == sha


def test_wrong_bytes_always_is_an_error_and_nothing_is_placed(server, files, tmp_path):
    root, sha = files
    server.faults.add("/model.bin", Fault.WRONG_BYTES, offset=3 * MiB, length=16)
    with pytest.raises(IntegrityError):
        pull(tmp_path, ModelEntry("model.bin", "loras", url=f"{server.url}/model.bin", sha256=sha))
    assert not final_of(tmp_path).exists() and not part_path(final_of(tmp_path)).exists()


def test_stalled_connection_is_dropped_and_retried(server, files, tmp_path):
    root, sha = files
    server.faults.add("/model.bin", Fault.STALL, offset=1 * MiB + 100, duration=30, times=1)
    t0 = time.monotonic()
    report = pull(tmp_path, ModelEntry("model.bin", "loras", url=f"{server.url}/model.bin", sha256=sha), stall_timeout=1.0)
    assert report.files[0].sha256 == sha and time.monotonic() - t0 < 20


def test_missing_file_is_a_clear_error(server, tmp_path):
    with pytest.raises(SourceNotFound, match="HTTP 404"):
        pull(tmp_path, ModelEntry("model.bin", "loras", url=f"{server.url}/nope.bin"))


def test_persistent_5xx_gives_up_and_keeps_partial_for_resume(server, files, tmp_path):
    root, sha = files
    entry = ModelEntry("model.bin", "loras", url=f"{server.url}/model.bin", sha256=sha)
    server.faults.add("/model.bin", Fault.STATUS, status=500,
                      predicate=lambda req: bool(req.range) and int(req.range.split('=')[1].split('-')[0]) >= 3 * MiB)
    with pytest.raises(DownloadError, match="HTTP 500"):
        pull(tmp_path, entry, max_attempts=2, connections=1)
    final = final_of(tmp_path)
    assert not final.exists() and part_path(final).exists() and journal_path(final).exists()
    server.faults.clear()
    server.reset_counters()
    report = pull(tmp_path, entry, connections=1)
    assert report.files[0].sha256 == sha
    assert server.counters.bytes_by_path["/model.bin"] <= SIZE - 3 * MiB + 1  # only what was missing


def test_second_process_waits_and_reports_progress_instead_of_downloading(server, files, tmp_path):
    root, sha = files
    server.rate_limit = 1 * MiB  # per connection: the first pull lasts seconds, longer than a loaded start-up
    entry = ModelEntry("model.bin", "loras", url=f"{server.url}/model.bin", sha256=sha)
    s = settings(tmp_path, connections=2)
    first = threading.Thread(target=model_fetch.ensure, args=([entry],), kwargs={"settings": s, "store": Store(s.models_dirs)})
    first.start()
    lease = Store(s.models_dirs).lease_path(final_of(tmp_path))
    while not lease.exists():
        time.sleep(0.01)
    events = []
    import subprocess
    import sys
    import json
    code = (f"import json, model_fetch\nfrom model_fetch import *\n"
            f"s = Settings(models_dirs=[{str(tmp_path / 'models')!r}], include_default_manifest=False, min_free_bytes=0)\n"
            f"e = ModelEntry('model.bin', 'loras', url={entry.url!r}, sha256={sha!r})\n"
            f"r = model_fetch.ensure([e], settings=s, on_progress=lambda p: print(json.dumps(p.as_dict()), flush=True))\n"
            f"print('ACTION', r.files[0].action)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120).stdout
    first.join()
    events = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert "ACTION waited" in out
    assert any(e["phase"] == "wait" and e["done"] > 0 for e in events)
    assert server.counters.bytes_by_path["/model.bin"] <= SIZE + 1  # fetched once in all


def test_workflow_source_redirect_to_plain_http_is_refused_and_nothing_is_kept(tmp_path, monkeypatch):
    """An untrusted (workflow) source is checked on every redirect hop: https to http is refused."""
    from model_fetch._urlguard import request_guard
    from tests.tls import make_cert, server_context

    cert = make_cert(tmp_path / "tls")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert.ca))
    make_file(tmp_path / "www" / "m.safetensors", 200_000)
    with FileServer(tmp_path / "www", tls=server_context(cert)) as secure:
        secure.faults.add("/m.safetensors", Fault.REDIRECT, to="http://127.0.0.1:9/m.safetensors")
        entry = ModelEntry(name="m.safetensors", directory="loras", url=f"{secure.url}/m.safetensors", origin="workflow")
        s = settings(tmp_path, url_guard=request_guard(allow_private=True))
        with pytest.raises(SourceNotFound, match="redirects to http://127.0.0.1:9/m.safetensors, refused: only https"):
            model_fetch.ensure([entry], settings=s, store=Store(s.models_dirs))
        assert not [p for p in (tmp_path / "models").rglob("m.safetensors*") if p.is_file()]
        secure.faults.clear()
        assert model_fetch.ensure([entry], settings=s, store=Store(s.models_dirs)).files[0].action == "downloaded"


def test_cancel_stops_the_download_keeps_the_part_and_the_next_ensure_resumes(server, files, tmp_path):
    root, sha = files
    server.rate_limit = 1 * MiB  # per connection: seconds to go when it is cancelled
    entry = ModelEntry("model.bin", "loras", url=f"{server.url}/model.bin", sha256=sha)
    s = settings(tmp_path, connections=2)
    cancel, outcome = threading.Event(), {}

    def run() -> None:
        try:
            model_fetch.ensure([entry], settings=s, store=Store(s.models_dirs), cancel=cancel,
                               on_progress=lambda p: cancel.set() if p.phase == "download" and p.done >= 2 * MiB else None)
        except BaseException as exc:  # noqa: BLE001 - the outcome is checked below
            outcome["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(60)
    assert not thread.is_alive()
    assert isinstance(outcome.get("error"), model_fetch.DownloadCancelled), outcome
    assert outcome["error"].code == "download_cancelled" and "resumes" in str(outcome["error"])
    final = final_of(tmp_path)
    assert not final.exists() and part_path(final).exists() and journal_path(final).exists()
    assert not Store(s.models_dirs).lease_path(final).exists()  # the lease is released
    received = server.counters.bytes_by_path["/model.bin"]
    assert received < SIZE
    server.rate_limit = None
    server.reset_counters()
    report = pull(tmp_path, entry, connections=2)
    assert report.files[0].sha256 == sha and final.read_bytes() == (root / "model.bin").read_bytes()
    assert report.files[0].fetched_bytes < SIZE  # resumed: what the cancelled run had is not fetched again
