"""The loopback file server used to test the downloader: HTTP semantics, counters, rate limit, faults, fake Hub."""

from __future__ import annotations

import hashlib
import socket
import threading
import time
from pathlib import Path

import pytest
import requests

from tests.fileserver import Fault, FileServer, make_file, sha256_file

SIZE = (1 << 20) + 12345


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Loopback traffic must never go through a proxy from the environment."""
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.setenv(name, "127.0.0.1,127.0.0.2,localhost")


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    make_file(root / "a.bin", SIZE, seed=1)
    make_file(root / "d" / "b.bin", 5000, seed=2)
    (root / "empty.bin").write_bytes(b"")
    (tmp_path / "secret.txt").write_text("outside the root")
    (root / "escape.txt").symlink_to(tmp_path / "secret.txt")
    return root


@pytest.fixture
def server(root: Path):
    with FileServer(root) as srv:
        yield srv


@pytest.fixture
def data(root: Path) -> bytes:
    return (root / "a.bin").read_bytes()


def raw_get(server: FileServer, path: str, headers: str = "",
            timeout: float = 5) -> tuple[str, bytes, Exception | None]:
    """GET over a raw socket, reading until EOF, reset or timeout: (head, body, error)."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=timeout) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {server.url[7:]}\r\nConnection: close\r\n{headers}\r\n".encode())
        received, error = b"", None
        try:
            while chunk := sock.recv(1 << 16):
                received += chunk
        except OSError as exc:
            error = exc
    head, _, body = received.partition(b"\r\n\r\n")
    return head.decode(), body, error


# -- HTTP semantics ---------------------------------------------------------------------------------------

def test_get_and_head(server: FileServer, data: bytes) -> None:
    r = requests.get(f"{server.url}/a.bin")
    assert r.status_code == 200 and r.content == data
    assert r.headers["Accept-Ranges"] == "bytes" and r.headers["Content-Length"] == str(SIZE)
    assert r.headers["ETag"].startswith('"') and r.headers["Last-Modified"].endswith("GMT")
    h = requests.head(f"{server.url}/a.bin")
    assert h.status_code == 200 and h.content == b""
    assert {k: h.headers[k] for k in ("Content-Length", "ETag", "Last-Modified")} == \
           {k: r.headers[k] for k in ("Content-Length", "ETag", "Last-Modified")}
    assert requests.get(f"{server.url}/d/b.bin").content == (server.root / "d" / "b.bin").read_bytes()
    assert server.counters.request_count("GET", "/a.bin") == 1 and server.counters.request_count("HEAD") == 1
    assert server.counters.bytes_by_path["/a.bin"] == SIZE


@pytest.mark.parametrize(("header", "first", "last"), [
    ("bytes=0-9", 0, 9), ("bytes=1000-", 1000, SIZE - 1), ("bytes=-10", SIZE - 10, SIZE - 1),
    ("bytes=5-99999999", 5, SIZE - 1), ("bytes=-99999999", 0, SIZE - 1),
    (f"bytes={SIZE - 1}-{SIZE - 1}", SIZE - 1, SIZE - 1),
])
def test_single_range(server: FileServer, data: bytes, header: str, first: int, last: int) -> None:
    r = requests.get(f"{server.url}/a.bin", headers={"Range": header})
    assert r.status_code == 206
    assert r.headers["Content-Range"] == f"bytes {first}-{last}/{SIZE}"
    assert r.content == data[first:last + 1] and r.headers["Content-Length"] == str(last - first + 1)
    assert server.counters.ranges == [("/a.bin", first, last)]


@pytest.mark.parametrize(("path", "header"), [
    ("/a.bin", f"bytes={SIZE}-"), ("/a.bin", "bytes=-0"), ("/empty.bin", "bytes=0-"), ("/empty.bin", "bytes=-5")])
def test_unsatisfiable_range(server: FileServer, path: str, header: str) -> None:
    r = requests.get(f"{server.url}{path}", headers={"Range": header})
    assert r.status_code == 416
    assert r.headers["Content-Range"] == f"bytes */{SIZE if path == '/a.bin' else 0}"


@pytest.mark.parametrize("header", ["bytes=9-2", "bytes=0-1,5-6", "items=0-1", "bytes=x-"])
def test_invalid_or_multi_range_is_ignored(server: FileServer, data: bytes, header: str) -> None:
    r = requests.get(f"{server.url}/a.bin", headers={"Range": header})
    assert r.status_code == 200 and r.content == data


def test_if_range(server: FileServer, data: bytes) -> None:
    etag = requests.head(f"{server.url}/a.bin").headers["ETag"]
    assert requests.get(f"{server.url}/a.bin", headers={"Range": "bytes=0-3", "If-Range": etag}).status_code == 206
    r = requests.get(f"{server.url}/a.bin", headers={"Range": "bytes=0-3", "If-Range": '"stale"'})
    assert r.status_code == 200 and r.content == data


def test_missing_directories_and_traversal(server: FileServer) -> None:
    for path in ("/nope.bin", "/d", "/d/", "/"):
        assert requests.get(f"{server.url}{path}").status_code == 404, path
    for path in ("/../secret.txt", "/d/../../secret.txt", "/%2e%2e/secret.txt", "/d%2F..%2F..%2Fsecret.txt",
                 "/escape.txt"):
        head, body, _ = raw_get(server, path)
        assert head.startswith("HTTP/1.1 403"), (path, head)
        assert b"outside" not in body


def test_keep_alive_and_connection_counters(server: FileServer) -> None:
    with requests.Session() as session:
        for _ in range(5):
            assert session.get(f"{server.url}/d/b.bin").status_code == 200
    assert server.counters.connections == 1 and server.counters.request_count("GET", "/d/b.bin") == 5


def test_counters_peak_and_reset(server: FileServer) -> None:
    server.faults.add("/a.bin", Fault.SLOW_FIRST_BYTE, delay=0.3)  # keeps the 4 connections open together
    parts = [(i * 1000, i * 1000 + 999) for i in range(4)]

    def fetch(first: int, last: int) -> None:
        requests.get(f"{server.url}/a.bin", headers={"Range": f"bytes={first}-{last}"}, timeout=5)

    threads = [threading.Thread(target=fetch, args=part) for part in parts]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    c = server.counters
    assert c.peak_connections == 4 and c.bytes_sent == 4000 and c.bytes_by_path == {"/a.bin": 4000}
    assert sorted(p[1:] for p in c.ranges) == parts and c.request_count("GET", "/a.bin") == 4
    assert [r.faults for r in c.log] == [["slow_first_byte"]] * 4
    server.reset_counters()
    assert (c.bytes_sent, c.ranges, c.log, c.request_count()) == (0, [], [], 0)


# -- rate limit -------------------------------------------------------------------------------------------

def _timed_get(url: str, headers: dict[str, str] | None = None) -> tuple[int, float]:
    start = time.monotonic()
    with requests.get(url, headers=headers, stream=True, timeout=10) as r:
        n = sum(len(chunk) for chunk in r.iter_content(1 << 20))
    return n, time.monotonic() - start


def test_rate_limit_accuracy(root: Path) -> None:
    rate = 48 << 20
    make_file(root / "r.bin", rate, seed=3)  # one second's worth
    with FileServer(root, rate_limit=rate) as server:
        n, elapsed = _timed_get(f"{server.url}/r.bin")
    assert n == rate
    assert 0.9 < elapsed < 1.3, f"{n / elapsed / 2**20:.1f} MiB/s instead of 48"


def test_rate_limit_is_per_connection_and_changeable(server: FileServer) -> None:
    server.rate_limit = 4 << 20
    results: list[tuple[int, float]] = []
    threads = [threading.Thread(target=lambda: results.append(_timed_get(
        f"{server.url}/a.bin", {"Range": "bytes=0-1048575"}))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # 1 MiB each at 4 MiB/s per connection: ~0.25 s together (a shared limit would take ~0.5 s).
    assert all(n == 1 << 20 and 0.18 < dt < 0.45 for n, dt in results), results

    server.rate_limit = 1 << 20  # 1 MiB/s: the file would take a second...
    start = time.monotonic()
    with requests.get(f"{server.url}/a.bin", stream=True, timeout=10) as r:
        chunks = r.iter_content(64 << 10)
        got = len(next(chunks))
        server.rate_limit = None  # ...until the limit is lifted mid-body
        got += sum(len(c) for c in chunks)
    assert got == SIZE and time.monotonic() - start < 0.6


# -- faults -----------------------------------------------------------------------------------------------

def test_reset_mid_body(server: FileServer, data: bytes) -> None:
    server.faults.add("/a.bin", Fault.RESET_MID_BODY, after_bytes=100_000, times=1)
    head, body, error = raw_get(server, "/a.bin")
    assert head.startswith("HTTP/1.1 200") and f"Content-Length: {SIZE}" in head
    assert isinstance(error, ConnectionResetError) and len(body) <= 100_000 and body == data[:len(body)]
    assert server.counters.bytes_by_path["/a.bin"] == 100_000
    assert requests.get(f"{server.url}/a.bin").content == data  # times=1: used up


def test_reset_at_absolute_offset_hits_only_the_range_holding_it(server: FileServer, data: bytes) -> None:
    rule = server.faults.add("/a.bin", Fault.RESET_MID_BODY, offset=600_000, times=1)
    assert requests.get(f"{server.url}/a.bin", headers={"Range": "bytes=0-499999"}).content == data[:500_000]
    assert rule.fired == 0
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        requests.get(f"{server.url}/a.bin", headers={"Range": "bytes=500000-699999"})
    assert rule.fired == 1 and server.counters.bytes_by_path["/a.bin"] == 500_000 + 100_000


def test_truncated_body(server: FileServer, data: bytes) -> None:
    server.faults.add("/a.bin", Fault.TRUNCATE, after_bytes=12345, times=1)
    head, body, error = raw_get(server, "/a.bin")
    assert f"Content-Length: {SIZE}" in head and error is None and body == data[:12345]
    server.faults.add("/a.bin", Fault.TRUNCATE, after_bytes=10, times=1)
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        requests.get(f"{server.url}/a.bin")


def test_ignore_range(server: FileServer, data: bytes) -> None:
    server.faults.add("/a.bin", Fault.IGNORE_RANGE, times=1)
    assert requests.get(f"{server.url}/a.bin").status_code == 200  # no Range: not counted
    r = requests.get(f"{server.url}/a.bin", headers={"Range": "bytes=10-19"})
    assert r.status_code == 200 and r.content == data and "Content-Range" not in r.headers
    assert requests.get(f"{server.url}/a.bin", headers={"Range": "bytes=10-19"}).status_code == 206


@pytest.mark.parametrize("status", [429, 503, 500, 408])
def test_status_with_retry_after(server: FileServer, status: int) -> None:
    server.faults.add("/a.bin", Fault.STATUS, status=status, retry_after=2, times=2)
    with requests.Session() as session:
        for _ in range(2):
            r = session.get(f"{server.url}/a.bin")
            assert r.status_code == status and r.headers["Retry-After"] == "2"
        assert session.get(f"{server.url}/a.bin").status_code == 200
    assert server.counters.bytes_sent == SIZE  # error bodies are not counted


def test_status_by_predicate_all_paths_and_methods(server: FileServer) -> None:
    server.faults.add(None, Fault.STATUS, status=500, predicate=lambda req: req.range is not None, methods={"GET"})
    assert requests.get(f"{server.url}/d/b.bin", headers={"Range": "bytes=0-1"}).status_code == 500
    assert requests.head(f"{server.url}/d/b.bin", headers={"Range": "bytes=0-1"}).status_code == 206
    assert requests.get(f"{server.url}/a.bin").status_code == 200
    server.faults.clear()
    assert requests.get(f"{server.url}/d/b.bin", headers={"Range": "bytes=0-1"}).status_code == 206


def test_wrong_bytes(server: FileServer, data: bytes) -> None:
    rule = server.faults.add("/a.bin", Fault.WRONG_BYTES, offset=700_000, length=16, times=1)
    assert requests.get(f"{server.url}/a.bin", headers={"Range": "bytes=0-99"}).content == data[:100]
    assert rule.fired == 0  # the range did not hold the offset
    body = requests.get(f"{server.url}/a.bin").content
    assert len(body) == SIZE and body[:700_000] == data[:700_000] and body[700_016:] == data[700_016:]
    assert all(a != b for a, b in zip(body[700_000:700_016], data[700_000:700_016]))
    assert hashlib.sha256(requests.get(f"{server.url}/a.bin").content).digest() == hashlib.sha256(data).digest()


def test_stall_then_resume(server: FileServer, data: bytes) -> None:
    server.faults.add("/a.bin", Fault.STALL, after_bytes=1000, duration=0.4, times=1)
    with pytest.raises(requests.exceptions.ConnectionError):  # a read timeout as a client watchdog sees it
        _ = requests.get(f"{server.url}/a.bin", timeout=(1, 0.15)).content
    assert server.wait_idle(3)  # the handler ends once the stall is over and it finds the client gone
    server.faults.add("/a.bin", Fault.STALL, after_bytes=1000, duration=0.3, times=1)
    start = time.monotonic()
    assert requests.get(f"{server.url}/a.bin", timeout=5).content == data
    assert time.monotonic() - start >= 0.3


def test_stall_until_stop_does_not_block_stop(root: Path) -> None:
    server = FileServer(root).start()
    server.faults.add("/a.bin", Fault.STALL, after_bytes=5000)  # duration None: until the server stops
    with socket.create_connection(("127.0.0.1", server.port), timeout=0.3) as sock:
        sock.sendall(b"GET /a.bin HTTP/1.1\r\nHost: x\r\n\r\n")
        received = b""
        with pytest.raises(socket.timeout):
            while chunk := sock.recv(1 << 16):
                received += chunk
        assert len(received.partition(b"\r\n\r\n")[2]) == 5000
        start = time.monotonic()
        server.stop()
        assert time.monotonic() - start < 1.5
        sock.settimeout(2)
        try:
            assert sock.recv(1 << 16) == b""
        except ConnectionResetError:
            pass
    assert server.counters.active_connections == 0


def test_slow_first_byte(server: FileServer) -> None:
    server.faults.add("/d/b.bin", Fault.SLOW_FIRST_BYTE, delay=0.3, times=1)
    with pytest.raises(requests.exceptions.ReadTimeout):
        requests.get(f"{server.url}/d/b.bin", timeout=(1, 0.1))
    start = time.monotonic()
    assert requests.get(f"{server.url}/d/b.bin", timeout=5).status_code == 200
    assert time.monotonic() - start < 0.25


def test_require_auth(server: FileServer) -> None:
    server.faults.add("/d/*", Fault.REQUIRE_AUTH, token="s3cret")
    assert requests.get(f"{server.url}/d/b.bin").status_code == 401
    assert requests.get(f"{server.url}/d/b.bin", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert requests.get(f"{server.url}/d/b.bin", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    assert requests.get(f"{server.url}/a.bin").status_code == 200
    assert server.counters.authorizations(path_prefix="/d/") == [None, "Bearer nope", "Bearer s3cret"]


def test_redirect_same_host(server: FileServer, root: Path) -> None:
    server.faults.add("/old.bin", Fault.REDIRECT, to="/d/b.bin", status=301)
    r = requests.get(f"{server.url}/old.bin")
    assert [h.status_code for h in r.history] == [301] and r.url == f"{server.url}/d/b.bin"
    assert r.content == (root / "d" / "b.bin").read_bytes()


def test_redirect_cross_host_drops_auth_and_records_hosts(server: FileServer, data: bytes) -> None:
    assert server.alt_url != server.url and server.alt_url.endswith(f":{server.port}")
    server.faults.add("/a.bin", Fault.REDIRECT, cross_host=True)  # same path on the other host: no loop
    r = requests.get(f"{server.url}/a.bin", headers={"Authorization": "Bearer tok"})
    assert r.status_code == 200 and r.content == data and r.url == f"{server.alt_url}/a.bin"
    hosts = [(rec.host, rec.authorization, rec.status) for rec in server.counters.log]
    assert hosts == [(server.url[7:], "Bearer tok", 302), (server.alt_url[7:], None, 200)]


def test_fault_validation(server: FileServer) -> None:
    with pytest.raises(TypeError):
        server.faults.add("/a.bin", Fault.STALL, status=500)
    with pytest.raises(ValueError):
        server.faults.add("/a.bin", Fault.REQUIRE_AUTH)
    rule = server.faults.add("/a.bin", Fault.STATUS, status=503)
    server.faults.remove(rule)
    assert server.faults.rules == [] and requests.get(f"{server.url}/a.bin").status_code == 200


# -- Hugging Face endpoint --------------------------------------------------------------------------------

@pytest.fixture
def hub(server: FileServer, root: Path):
    entry = server.add_hf_file("org/wan", "split/model.safetensors", root / "a.bin", token="hf_tok")
    server.add_hf_file("org/wan", "config.json", root / "d" / "b.bin", lfs=False)
    return entry


def test_hf_resolve_headers_and_cdn(server: FileServer, hub, data: bytes) -> None:
    auth = {"Authorization": "Bearer hf_tok"}
    for method in ("HEAD", "GET"):
        r = requests.request(method, f"{server.url}/org/wan/resolve/main/split/model.safetensors", headers=auth,
                             allow_redirects=False)
        assert r.status_code == 302
        assert len(r.headers["X-Repo-Commit"]) == 40 and r.headers["X-Repo-Commit"] == hub.commit
        assert r.headers["X-Linked-Etag"] == f'"{sha256_file(server.root / "a.bin")}"' == r.headers["ETag"]
        assert r.headers["X-Linked-Size"] == str(SIZE)
        assert r.headers["Location"] == f"{server.alt_url}/cdn/{hub.sha256}?commit={hub.commit}"
        assert not [k for k in r.headers if k.lower().startswith("x-xet")] and "Link" not in r.headers
    cdn = requests.get(r.headers["Location"], headers={"Range": "bytes=100-199"})
    assert cdn.status_code == 206 and cdn.content == data[100:200]
    assert requests.get(f"{server.url}{hub.resolve_path}").status_code == 401  # private repo, no token
    commit_url = f"{server.url}/org/wan/resolve/{hub.commit}/config.json"
    r = requests.get(commit_url, headers=auth)
    assert r.status_code == 200 and r.headers["X-Repo-Commit"] == hub.commit and r.content == \
           (server.root / "d" / "b.bin").read_bytes()
    for path, code in (("/org/wan/resolve/main/nope", "EntryNotFound"), ("/org/wan/resolve/v9/config.json",
                       "RevisionNotFound"), ("/org/none/resolve/main/x", None)):
        r = requests.head(f"{server.url}{path}", headers=auth)
        assert r.status_code == 404 and r.headers.get("X-Error-Code") == code, path
    info = requests.get(f"{server.url}/api/models/org/wan/revision/main", headers=auth).json()
    assert info["sha"] == hub.commit and {s["rfilename"] for s in info["siblings"]} == {
        "split/model.safetensors", "config.json"}


@pytest.mark.parametrize("cross_host", [True, False])
def test_hf_hub_download(server: FileServer, hub, tmp_path: Path, cross_host: bool) -> None:
    from huggingface_hub import hf_hub_download

    server.hf_cdn_cross_host = cross_host
    path = hf_hub_download("org/wan", "split/model.safetensors", endpoint=server.url, token="hf_tok",
                           cache_dir=tmp_path / "hf-cache")
    assert sha256_file(Path(path)) == hub.sha256 and Path(path).parent.parent.name == hub.commit
    c = server.counters
    assert c.authorizations(path_prefix="/org/wan/resolve/") and \
           set(c.authorizations(path_prefix="/org/wan/resolve/")) == {"Bearer hf_tok"}
    cdn = [r for r in c.records("/cdn/") if r.method == "GET"]
    assert len(cdn) == 1 and c.bytes_by_path[hub.cdn_path] == SIZE
    if cross_host:  # the token went to the Hub host, never to the CDN host
        assert cdn[0].host == server.alt_url[7:] and c.authorizations(path_prefix="/cdn/") == [None]
    else:
        assert cdn[0].host == server.url[7:]


def test_hf_hub_download_wrong_token(server: FileServer, hub, tmp_path: Path) -> None:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import RepositoryNotFoundError

    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download("org/wan", "split/model.safetensors", endpoint=server.url, token="wrong",
                        cache_dir=tmp_path / "hf-cache")
    assert server.counters.records("/cdn/") == []


def test_hf_snapshot_download(server: FileServer, hub, tmp_path: Path, root: Path) -> None:
    from huggingface_hub import snapshot_download

    folder = Path(snapshot_download("org/wan", endpoint=server.url, token="hf_tok", cache_dir=tmp_path / "hf-cache"))
    assert sha256_file(folder / "split" / "model.safetensors") == hub.sha256
    assert (folder / "config.json").read_bytes() == (root / "d" / "b.bin").read_bytes()
    assert server.counters.authorizations(path_prefix="/cdn/") == [None]


# -- helpers ----------------------------------------------------------------------------------------------

def test_make_file_is_deterministic(tmp_path: Path) -> None:
    one = make_file(tmp_path / "one", 3 << 20, seed=5)
    assert make_file(tmp_path / "two", 3 << 20, seed=5) == one == sha256_file(tmp_path / "one")
    assert make_file(tmp_path / "three", 3 << 20, seed=6) != one
    assert (tmp_path / "one").stat().st_size == 3 << 20
    blob = (tmp_path / "one").read_bytes()
    assert blob[:1 << 20] != blob[1 << 20:2 << 20]  # no repeating blocks: misplaced ranges show
