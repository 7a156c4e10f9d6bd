"""Secrets (fetcher part): with HF_TOKEN, AWS_SECRET_ACCESS_KEY and BUCKET_SECRET_ACCESS_KEY set to known values
in every `model-fetch` process (the token really used against a private repo on a fake Hub), no output —
stdout, stderr, debug log lines, errors, files written — contains them; `doctor` shows them as "set (hidden)".
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fileserver import Fault, FileServer, make_file
from tests.reliability.helpers import (AUDIT, Audit, MiB, SECRETS, child_env, run_cli, sha256_of, table, verdict,
                                       write_manifest, write_section)

pytestmark = pytest.mark.slow
SIZE = 16 * MiB + 99
TOKEN = SECRETS["HF_TOKEN"]


def files_containing_secrets(root: Path) -> list[str]:
    """Files under ``root`` (up to 1 MiB each: stamps, leases, journals, manifests) holding a secret value."""
    found = []
    for path in root.rglob("*"):
        if path.is_file() and path.stat().st_size <= MiB:
            data = path.read_bytes()
            found += [f"{path.relative_to(root)}: {name}" for name, v in SECRETS.items() if v.encode() in data]
    return found


def test_no_output_contains_a_secret(scratch: Path) -> None:
    served = scratch / "served"
    sha = make_file(served / "model.bin", SIZE, seed=3)
    leaks_before = len(AUDIT.leaks)
    outputs_before, lines_before = AUDIT.outputs, AUDIT.lines
    rows, failures = [], []
    logs = scratch / "logs"
    with FileServer(served) as server:
        server.add_hf_file("org/private", "model.bin", served / "model.bin", token=TOKEN)
        server.faults.add("/org/private/*", Fault.REQUIRE_AUTH, token=TOKEN)  # 401 unless our token comes along
        server.add_hf_file("org/others", "model.bin", served / "model.bin", token="a-token-we-do-not-have")
        hub = f"{server.url}/org/%s/resolve/main/model.bin"
        manifest = write_manifest(scratch / "manifest.json", [
            {"name": "model.bin", "directory": "loras", "url": hub % "private"},
            {"name": "other.bin", "directory": "loras", "url": hub % "others"},
            {"name": "broken.bin", "directory": "vae", "url": f"{server.url}/org/private/resolve/main/model.bin",
             "hash": "0" * 64},
        ])
        # debug logging everywhere: ours (-v), huggingface_hub's request dumps, urllib3/botocore at DEBUG
        env = child_env(scratch / "models", manifest, HF_ENDPOINT=server.url, HF_DEBUG="1",
                        BUCKET_ENDPOINT_URL=server.url, BUCKET_ACCESS_KEY_ID="AKIARELIABILITYTEST",
                        MODEL_FETCH_MIRROR_WRITEBACK="s3://mirror/models", MODEL_FETCH_MAX_ATTEMPTS="2")

        def step(label: str, *args: str, expect_ok: bool, check=lambda run: True) -> None:
            before = len(AUDIT.leaks)
            run = run_cli(*args, env=env, logs=logs, timeout=120)
            leaked = AUDIT.leaks[before:]
            # (debug logs may hold library tracebacks, e.g. huggingface_hub's own, so no "no traceback" check here)
            failed_clearly = run.returncode == 1 and bool(run.error_line)
            ok = (run.returncode == 0 if expect_ok else failed_clearly) and check(run) and not leaked
            if not ok:
                failures.append(f"{label}: exit {run.returncode}, leaked {leaked}\n{run.stderr[-1500:]}")
            rows.append([label, f"`model-fetch {' '.join(args)}`", run.returncode,
                         len(run.stdout.splitlines()) + len(run.stderr.splitlines()), len(leaked), verdict(ok)])

        step("private Hub repo, our token (S3 mirror tried first)", "pull", "model.bin", "-v", "--json",
             expect_ok=True, check=lambda run: sha256_of(scratch / "models" / "loras" / "model.bin") == sha)
        auth = server.counters.authorizations(path_prefix="/org/private/")
        signed = server.counters.authorizations(path_prefix="/mirror/")  # the S3 tier, signed with BUCKET_* keys
        s3_signed = bool(signed) and all((a or "").startswith("AWS4-HMAC-SHA256 Credential=AKIARELIABILITYTEST/")
                                         for a in signed)
        token_used = bool(auth) and set(auth) == {f"Bearer {TOKEN}"}
        cdn_clean = set(server.counters.authorizations(path_prefix="/cdn/")) == {None}
        step("private Hub repo that refuses our token", "pull", "other.bin", "-v", expect_ok=False)
        step("sha256 mismatch (error names source URL)", "pull", "broken.bin", "-v", "--json", expect_ok=False)
        server.faults.add("/cdn/*", Fault.STATUS, status=503, retry_after=0)
        (scratch / "models" / "loras" / "model.bin").unlink()
        step("CDN answering 503 (retries, then error)", "pull", "model.bin", "-v", expect_ok=False)
        doctor: dict = {}

        def doctor_hides(run) -> bool:
            doctor.update(run.json())
            return all(doctor["env"].get(name) == "set (hidden)" for name in SECRETS)

        step("doctor --json", "doctor", "--json", expect_ok=True, check=doctor_hides)
        step("doctor (text)", "doctor", "-v", expect_ok=True, check=lambda run: "set (hidden)" in run.stdout)
        for verb in ("status", "verify", "gc"):
            step(f"{verb} --json", verb, "--json", "-v", expect_ok=True)
    on_disk = files_containing_secrets(scratch)
    session = f"{AUDIT.outputs - outputs_before} outputs ({AUDIT.lines - lines_before} lines) here"
    if outputs_before:
        session += f"; {outputs_before} outputs ({lines_before} lines) of the suites run before it in this session"
    claims = {
        "the search finds a planted value (canary)": Audit().check(f"x{TOKEN[:8]}{TOKEN[8:]}y", "canary") == ["HF_TOKEN"],
        "the token was sent to the Hub (every private-repo request)": token_used,
        "the CDN (other host) never received it": cdn_clean,
        "the S3 mirror tier was tried with requests signed by the bucket keys": s3_signed,
        "doctor --json: the three are \"set (hidden)\"": all(doctor.get("env", {}).get(n) == "set (hidden)"
                                                               for n in SECRETS),
        "no file written under the models root or logs holds one": not on_disk,
        "no output of any suite in this session holds one": not AUDIT.leaks,
    }
    failures += [f"{claim}: {AUDIT.leaks[:5]} {on_disk[:5]} {auth[:3] if not token_used else ''}"
                 for claim, good in claims.items() if not good]
    write_section("secrets", "Secrets (fetcher)", f"""
Every `model-fetch` process of every suite here runs with `HF_TOKEN`, `AWS_SECRET_ACCESS_KEY` and
`BUCKET_SECRET_ACCESS_KEY` set to known values; its stdout and stderr are searched for each value (and for
its middle part). This suite adds runs with all debug logging on (`-v`, `HF_DEBUG=1`): a private repo on
the fake Hub (`add_hf_file(..., token=...)` plus a `REQUIRE_AUTH` rule), an S3 mirror tier
(`MODEL_FETCH_MIRROR_WRITEBACK`, `BUCKET_*` against a server that is not S3: fallback and failed write-back),
and errors. Searched: {session}; leaks found: {len(AUDIT.leaks)} (in this suite: {len(AUDIT.leaks) - leaks_before}).

{table(["run", "command", "exit", "output lines", "secrets found", "claim"], rows)}

{table(["claim", ""], [[claim, verdict(good)] for claim, good in claims.items()])}
""")
    assert not failures, "\n\n".join(failures)
