"""Stamps, leases (no flock: exclusive create, heartbeat, stale takeover) and the chunk journal."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time


from model_fetch import Store
from model_fetch import _journal as journal
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
