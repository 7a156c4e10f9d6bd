"""The engine through file:// mirrors: placement, stamps, resume, integrity, disk preflight, offline, gc, CLI."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import model_fetch
from model_fetch import IntegrityError, ModelEntry, NotEnoughSpace, OfflineError, Settings, Store
from model_fetch import _journal as journal
from model_fetch._store import journal_path, part_path

KiB = 1024


def blob(path: Path, size: int, seed: int = 0) -> str:
    data = hashlib.shake_256(f"{seed}".encode()).digest(size)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def env(tmp_path):
    src = tmp_path / "mirror" / "model.bin"
    sha = blob(src, 3 * 1024 * KiB + 123)
    settings = Settings(models_dirs=[tmp_path / "models"], include_default_manifest=False, chunk_size=256 * KiB,
                        connections=4, min_free_bytes=0)
    entry = ModelEntry(name="model.bin", directory="loras", url=src.as_uri(), sha256=sha)
    return settings, Store(settings.models_dirs), entry, src, sha


def test_pull_places_verified_file_with_stamp(env):
    settings, store, entry, src, sha = env
    events = []
    report = model_fetch.ensure([entry], settings=settings, store=store, on_progress=events.append)
    (f,) = report.files
    assert f.action == "downloaded" and f.path == settings.models_dirs[0] / "loras" / "model.bin"
    assert f.path.read_bytes() == src.read_bytes() and f.sha256 == sha
    assert not part_path(f.path).exists() and not journal_path(f.path).exists()
    assert store.valid_stamp(f.path).expected
    assert events[-1].phase == "done" and events[-1].done == src.stat().st_size
    again = model_fetch.ensure([entry], settings=settings, store=store)
    assert again.files[0].action == "present" and again.downloaded_bytes == 0
    (st,) = model_fetch.status(settings=settings, manifest=_manifest(entry), store=store)
    assert st.state == "present" and st.sha256 == sha


def _manifest(*entries):
    m = model_fetch.Manifest()
    for e in entries:
        m.add(e)
    return m


def interrupted_download(env):
    """The final path (its folder made), the source bytes and the journal header a killed pull would have left."""
    settings, store, entry, src, sha = env
    final = store.target(entry)
    final.parent.mkdir(parents=True)
    data = src.read_bytes()
    return final, data, journal.Header(size=len(data), chunk=settings.chunk_size, validator=f"sha256:{sha}|{len(data)}")


def test_resume_fetches_only_missing_chunks(env):
    settings, store, entry, src, sha = env
    final, data, header = interrupted_download(env)
    # a previous process wrote and journaled chunks 0, 1 and 5, then died
    with open(part_path(final), "wb") as f:
        f.truncate(len(data))
        for i in (0, 1, 5):
            a, b = header.span(i)
            f.seek(a)
            f.write(data[a:b + 1])
    j = journal.Journal(journal_path(final), header)
    for i in (0, 1, 5):
        j.mark(i)
    j.close()
    report = model_fetch.ensure([entry], settings=settings, store=store)
    assert report.files[0].path.read_bytes() == data
    assert report.downloaded_bytes == len(data) - journal.done_bytes(header, {0, 1, 5})


def test_journal_of_other_bytes_is_discarded(env):
    settings, store, entry, src, sha = env
    final = store.target(entry)
    final.parent.mkdir(parents=True)
    part_path(final).write_bytes(b"\0" * 100)
    j = journal.Journal(journal_path(final), journal.Header(size=100, chunk=settings.chunk_size, validator="other"))
    j.mark(0)
    j.close()
    report = model_fetch.ensure([entry], settings=settings, store=store)
    assert report.files[0].path.read_bytes() == src.read_bytes()


def test_wrong_hash_is_never_placed(env):
    settings, store, entry, src, sha = env
    bad = ModelEntry(name=entry.name, directory=entry.directory, url=entry.url, sha256="f" * 64)
    with pytest.raises(IntegrityError, match=f"expected sha256 {'f' * 64}, got {sha}"):
        model_fetch.ensure([bad], settings=settings, store=store)
    folder = settings.models_dirs[0] / "loras"
    assert not (folder / "model.bin").exists() and not part_path(folder / "model.bin").exists()


def test_disk_preflight_names_need_and_free(env):
    settings, store, entry, src, sha = env
    with pytest.raises(NotEnoughSpace) as err:
        model_fetch.ensure([entry], settings=settings.with_(min_free_bytes=1 << 60), store=store)
    msg = str(err.value)
    assert "model.bin" in msg and str(settings.models_dirs[0] / "loras") in msg and "free" in msg
    assert not part_path(store.target(entry)).exists()


def test_offline_lists_missing_and_makes_no_request(env):
    settings, store, entry, src, sha = env
    remote = ModelEntry(name="remote.bin", directory="vae", url="https://example.invalid/remote.bin")
    with pytest.raises(OfflineError) as err:
        model_fetch.ensure([remote, entry], settings=settings.with_(offline=True), store=store)
    assert err.value.missing == ["vae/remote.bin"]
    # file:// mirrors make no network call, so offline mode may still use them
    assert model_fetch.ensure([entry], settings=settings.with_(offline=True), store=store).files[0].action == "downloaded"


def test_corrupt_unstamped_file_is_moved_aside_and_fetched_again(env):
    settings, store, entry, src, sha = env
    final = store.target(entry)
    final.parent.mkdir(parents=True)
    final.write_bytes(b"garbage")
    report = model_fetch.ensure([entry], settings=settings, store=store)
    assert report.files[0].path.read_bytes() == src.read_bytes()
    assert [p.name for p in final.parent.iterdir() if ".corrupt-" in p.name]
    gc = model_fetch.gc(settings=settings, store=store)
    assert any(".corrupt-" in p for p in gc.removed)


def test_gc_removes_orphans_but_not_active_downloads(env):
    settings, store, entry, src, sha = env
    folder = settings.models_dirs[0] / "loras"
    folder.mkdir(parents=True)
    (folder / "dead.bin.part").write_bytes(b"x" * 10)
    journal_path(folder / "dead.bin").write_text("{}\n")
    (folder / "live.bin.part").write_bytes(b"y")
    from model_fetch._lease import Lease

    lease = Lease(store.lease_path(folder / "live.bin"))
    assert lease.try_acquire()
    try:
        report = model_fetch.gc(settings=settings, store=store)
    finally:
        lease.release()
    assert str(folder / "dead.bin.part") in report.removed and str(journal_path(folder / "dead.bin")) in report.removed
    assert (folder / "live.bin.part").exists() and str(folder / "live.bin.part") in report.kept_active


def test_verify_detects_tampering_and_drops_the_stamp(env):
    settings, store, entry, src, sha = env
    path = model_fetch.ensure([entry], settings=settings, store=store).files[0].path
    with open(path, "r+b") as f:
        f.write(b"X")
    (res,) = model_fetch.verify(settings=settings, manifest=_manifest(entry), store=store)
    assert res.state == "mismatch" and store.read_stamp(path) is None


def cli(*args, env_extra=None):
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "model_fetch.cli", *args], capture_output=True, text=True, env=env)


def test_cli_pull_status_json_and_exit_codes(env, tmp_path):
    settings, store, entry, src, sha = env
    manifest = tmp_path / "m.json"
    manifest.write_text(json.dumps([{"name": "model.bin", "directory": "loras", "url": src.as_uri(), "hash": sha}]))
    common = ["--no-default-manifest", "--manifest", str(manifest), "--models-dir", str(tmp_path / "cli-models")]
    pulled = cli("pull", "--json", *common)
    assert pulled.returncode == 0, pulled.stderr
    assert json.loads(pulled.stdout)["files"][0]["sha256"] == sha
    assert "done" in pulled.stderr  # plain progress lines when not on a TTY
    status = cli("status", "--json", *common)
    assert json.loads(status.stdout)["files"][0]["state"] == "present"
    missing = cli("pull", "nope.bin", *common)
    assert missing.returncode == 1 and missing.stderr.startswith("error: not in any manifest: nope.bin")
    assert cli("pull", "--bogus").returncode == 2
    bad = tmp_path / "bad.yaml"
    bad.write_text("- {name: x}\n")
    broken = cli("status", "--no-default-manifest", "--manifest", str(bad))
    assert broken.returncode == 1 and str(bad) in broken.stderr and "entry #1" in broken.stderr


def test_resume_continues_inside_a_chunk_in_flight(env):
    settings, store, entry, src, sha = env
    final, data, header = interrupted_download(env)
    a, b = header.span(3)
    middle = a + (b - a) // 2
    with open(part_path(final), "wb") as f:  # chunk 0 complete, chunk 3 written up to `middle`, then a kill
        f.truncate(len(data))
        f.write(data[: settings.chunk_size])
        f.seek(a)
        f.write(data[a:middle])
    j = journal.Journal(journal_path(final), header)
    j.mark(0)
    j.mark_partial(3, middle)
    j.close()
    assert journal.done_bytes(*journal.read_progress(journal_path(final))) == settings.chunk_size + (middle - a)
    report = model_fetch.ensure([entry], settings=settings, store=store)
    assert report.files[0].path.read_bytes() == data
    assert report.downloaded_bytes == len(data) - settings.chunk_size - (middle - a)
