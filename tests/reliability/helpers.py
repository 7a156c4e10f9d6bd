"""Shared pieces of the reliability suites: `model-fetch` subprocesses with known secrets in their
environment (every output is audited for them), manifests, hashing, and the docs/reliability.md writer.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.report import replace_section, table, verdict  # noqa: F401 - table, verdict: for the suites

REPO = Path(__file__).resolve().parents[2]
# `make reliability` records into docs/; any other run (`make test`, CI) writes beside the cache, leaving git clean.
DOC = REPO / os.environ.get("RELIABILITY_REPORT", ".cache/reliability.md")
KiB, MiB, GiB = 1024, 1024 ** 2, 1024 ** 3
# Known, distinctive values: set in every subprocess these suites start, searched for in everything it prints.
SECRETS = {
    "HF_TOKEN": "hf_RelyTok3n7b1e9c4d2aXq",
    "AWS_SECRET_ACCESS_KEY": "AwsS3cretRely9f3c2b8dW0p",
    "BUCKET_SECRET_ACCESS_KEY": "BktS3cretRely5e7a1c0fZ8k",
}
# `fcntl.flock`/`lockf` as counting no-ops, then the CLI (argv passes through); the count goes to stderr at exit.
NO_FLOCK = (
    "import atexit, fcntl, sys\n"
    "calls = [0]\n"
    "def noop(*a, **k):\n"
    "    calls[0] += 1\n"
    "fcntl.flock = fcntl.lockf = noop\n"
    "atexit.register(lambda: print(f'no-op flock calls: {calls[0]}', file=sys.stderr))\n"
    "from model_fetch.cli import main\n"
    "raise SystemExit(main())\n"
)
HEADER = """# Reliability and security evidence

Written by `make reliability` (`pytest -m slow tests/reliability`): each suite proves its claim with real
`model-fetch` processes against a loopback HTTP server (`tests/fileserver.py`) and replaces its own section
below with the figures of that run, the machine, the date and the command. A section whose claim failed
says so in its table (the test fails too). `make test` runs the same suites and writes its figures to
`.cache/reliability.md` instead, so a test run leaves the tree clean.
"""


@dataclass
class Audit:
    """Every output of every subprocess started here, searched for the secret values."""

    outputs: int = 0
    lines: int = 0
    leaks: list[str] = field(default_factory=list)  # "<where>: <variable name>" (never the value)

    def check(self, text: str, where: str) -> list[str]:
        self.outputs += 1
        self.lines += len(text.splitlines())
        found = [name for name, value in SECRETS.items() if value in text or value[3:-3] in text]
        self.leaks += [f"{where}: {name}" for name in found]
        return found


AUDIT = Audit()


@dataclass
class Run:
    """A finished CLI process."""

    args: list[str]
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def error_line(self) -> str:
        return next((line for line in self.stderr.splitlines() if line.startswith("error:")), "")

    def json(self) -> dict:
        return json.loads(self.stdout)

    @property
    def clean_failure(self) -> bool:
        """Failed with one `error:` line and no traceback."""
        return self.returncode != 0 and bool(self.error_line) and "Traceback" not in self.stderr


def cli_command(*args: str, no_flock: bool = False) -> list[str]:
    """`model-fetch ARGS` (the console script), or the same through the flock-disabling wrapper."""
    if no_flock:
        return [sys.executable, "-c", NO_FLOCK, *args]
    script = Path(sys.executable).with_name("model-fetch")
    return [str(script), *args] if script.exists() else [sys.executable, "-m", "model_fetch.cli", *args]


def child_env(models: Path, manifest: Path | None = None, **extra: str) -> dict[str, str]:
    """The environment of a CLI process: one models root, only our manifest, the known secrets set."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("MODEL_FETCH_", "HF_", "AWS_", "BUCKET_", "HUGGING_FACE_"))}
    env.update(SECRETS)
    env.update(MODEL_FETCH_MODELS_DIR=str(models), MODEL_FETCH_NO_DEFAULT_MANIFEST="1",
               PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")])), PYTHONUNBUFFERED="1")
    if manifest is not None:
        env["MODEL_FETCH_MANIFEST"] = str(manifest)
    env.update(extra)
    return env


class Proc:
    """A started CLI process whose output goes to files (no pipe can fill up and block it)."""

    def __init__(self, args: list[str], env: dict[str, str], logs: Path) -> None:
        logs.mkdir(parents=True, exist_ok=True)
        self.args = args
        out = tempfile.NamedTemporaryFile(prefix="out-", dir=logs, delete=False)
        err = tempfile.NamedTemporaryFile(prefix="err-", dir=logs, delete=False)
        self.out, self.err = Path(out.name), Path(err.name)
        self.started = time.monotonic()
        with out, err:
            self.popen = subprocess.Popen(args, env=env, cwd=logs, stdout=out, stderr=err, stdin=subprocess.DEVNULL)

    def finish(self, timeout: float | None = 300, where: str = "") -> Run:
        """Wait (killing it past ``timeout``), read its output and audit it for secrets."""
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()
        seconds = time.monotonic() - self.started
        run = Run(self.args, self.popen.returncode, self.out.read_text(errors="replace"),
                  self.err.read_text(errors="replace"), seconds)
        AUDIT.check(run.stdout, f"{where or self.args[1:3]} stdout")
        AUDIT.check(run.stderr, f"{where or self.args[1:3]} stderr")
        return run


def run_cli(*args: str, env: dict[str, str], logs: Path, timeout: float = 300, no_flock: bool = False) -> Run:
    return Proc(cli_command(*args, no_flock=no_flock), env, logs).finish(timeout, where=" ".join(args[:1]))


def write_manifest(path: Path, entries: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(entries, indent=1))
    return path


def sha256_of(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def leftovers(folder: Path, name: str) -> list[str]:
    """Files beside ``name`` that a finished download must not leave (.part, journal, .corrupt-*)."""
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if p.name != name and p.name.startswith(name))


# -- docs/reliability.md ----------------------------------------------------------------------------------------
def write_section(name: str, title: str, body: str) -> None:
    """Replace (or append) the section ``name`` of the reliability report, stamped with machine, date and command."""
    replace_section(DOC, "reliability", name, title, body, "python -m pytest " + " ".join(sys.argv[1:]), HEADER)


def mib(n: float) -> str:
    return f"{n / MiB:.1f} MiB"
