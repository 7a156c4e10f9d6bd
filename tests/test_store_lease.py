"""Stamps, leases (no flock: exclusive create, heartbeat, stale takeover) and the chunk journal."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from model_fetch import Store
from model_fetch import _journal as journal
from model_fetch._extra_model_paths import write_extra_model_paths
from model_fetch._lease import Lease


def test_stamp_trusted_until_file_changes(tmp_path):
    store = Store([tmp_path])
    f = tmp_path / "vae" / "v.safetensors"
    f.parent.mkdir()
    f.write_bytes(b"abc")
    store.write_stamp(f, "0" * 64, expected=True)
    assert store.valid_stamp(f).sha256 == "0" * 64
    time.sleep(0.01)
    f.write_bytes(b"abd")  # same size, new mtime
    assert store.valid_stamp(f) is None


def test_lease_is_exclusive_and_released(tmp_path):
    a, b = Lease(tmp_path / "x.lease", ttl=30), Lease(tmp_path / "x.lease", ttl=30)
    assert a.try_acquire()
    assert not b.try_acquire()
    assert b.holder().pid == os.getpid()
    a.release()
    assert b.try_acquire()
    b.release()
    assert not (tmp_path / "x.lease").exists()


def test_lease_stale_by_heartbeat_is_taken_over_once(tmp_path):
    path = tmp_path / "x.lease"
    path.write_text('{"host": "other-host", "pid": 1, "token": "t", "started": 0}')
    old = time.time() - 100
    os.utime(path, (old, old))
    takers = [Lease(path, ttl=5) for _ in range(4)]
    got = [lease.try_acquire() for lease in takers]
    assert got.count(True) == 1  # exactly one waiter takes over
    for lease in takers:
        lease.release()


def test_fresh_lease_of_another_host_is_respected(tmp_path):
    path = tmp_path / "x.lease"
    path.write_text('{"host": "other-host", "pid": 1, "token": "t", "started": 0}')
    assert not Lease(path, ttl=5).try_acquire()


def test_lease_of_killed_process_on_this_host_is_stale_at_once(tmp_path):
    path = tmp_path / "x.lease"
    code = textwrap.dedent(f"""
        import time
        from model_fetch._lease import Lease
        assert Lease({str(path)!r}, ttl=300).try_acquire()
        print("held", flush=True)
        time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    assert not Lease(path, ttl=300).try_acquire()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    lease = Lease(path, ttl=300)
    assert lease.try_acquire()  # no 300 s wait: the holder's pid is gone
    lease.release()


def test_heartbeat_notices_a_broken_lease(tmp_path):
    lease = Lease(tmp_path / "x.lease", ttl=30, heartbeat=0.05)
    assert lease.try_acquire()
    (tmp_path / "x.lease").write_text('{"host": "h", "pid": 1, "token": "someone-else"}')
    time.sleep(0.3)
    assert lease.lost
    lease.release()
    assert (tmp_path / "x.lease").exists()  # never removes a lease it does not own


def test_journal_resume_and_reset(tmp_path):
    path = tmp_path / "f.part.journal"
    h = journal.Header(size=10, chunk=4, validator="v1")
    j = journal.Journal(path, h)
    assert not j.resumed and h.chunks() == 3 and h.span(2) == (8, 9)
    j.mark(0)
    j.mark(2)
    j.close()
    with open(path, "a") as f:
        f.write("1")  # torn last line from a crash
    again = journal.Journal(path, h)
    assert again.resumed and again.done == {0, 2}
    assert journal.done_bytes(h, again.done) == 6
    again.close()
    other = journal.Journal(path, journal.Header(size=10, chunk=4, validator="v2"))
    assert not other.resumed and other.done == set()
    other.finish()
    assert not path.exists()


def test_extra_model_paths_yaml_maps_every_folder(tmp_path):
    import yaml

    store = Store([tmp_path / "vol", tmp_path / "local"])
    out = write_extra_model_paths(store, tmp_path / "extra_model_paths.yaml")
    doc = yaml.safe_load(out.read_text())
    first = doc["model_fetch_0"]
    assert first["base_path"] == str(tmp_path / "vol") and first["is_default"] is True
    assert set(first["diffusion_models"].split()) == {"diffusion_models", "unet"}
    assert set(first["text_encoders"].split()) == {"text_encoders", "clip"}
    for key in ("unet", "clip", "vae", "loras", "clip_vision"):
        assert key in first
    assert "is_default" not in doc["model_fetch_1"]
    assert (tmp_path / "local" / "unet").is_dir()


@pytest.mark.comfyui
def test_comfyui_reads_our_extra_model_paths(comfyui_dir, tmp_path):
    """ComfyUI's own loader accepts the YAML and maps unet and clip to our roots."""
    store = Store([tmp_path / "vol"])
    out = write_extra_model_paths(store, tmp_path / "extra.yaml")
    (tmp_path / "vol" / "clip" / "t.safetensors").write_bytes(b"")
    code = textwrap.dedent(f"""
        import sys; sys.path.insert(0, {str(comfyui_dir)!r})
        import folder_paths
        from utils.extra_config import load_extra_path_config
        load_extra_path_config({str(out)!r})
        print(folder_paths.get_folder_paths("diffusion_models")[0])
        print(folder_paths.get_filename_list("text_encoders"))
    """)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    first, names = res.stdout.strip().splitlines()[-2:]
    assert first == str(tmp_path / "vol" / "diffusion_models")
    assert "t.safetensors" in names
