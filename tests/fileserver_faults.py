"""The state :mod:`tests.fileserver` consults: fault rules, thread-safe counters, the fake Hub's files.

A rule says *what* goes wrong (:class:`Fault`), *where* (a path or ``fnmatch`` pattern, ``None`` for
every path), *for which requests* (methods, a predicate) and *how often* (``times``; ``None`` means
until removed). Rules are consumed atomically, so parallel connections never share a ``times=1``.
"""

from __future__ import annotations

import enum
import fnmatch
import hashlib
import re
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote


class Fault(enum.Enum):
    """Failure modes; their parameters and defaults are in :data:`PARAMS`."""

    RESET_MID_BODY = "reset_mid_body"  # RST (SO_LINGER 0) once the body reaches a position
    TRUNCATE = "truncate"  # clean close (FIN) before Content-Length is reached
    WRONG_BYTES = "wrong_bytes"  # flip `length` bytes (XOR 0xFF), length unchanged
    STALL = "stall"  # stop sending for `duration` s (None: until the server stops), then go on
    IGNORE_RANGE = "ignore_range"  # answer a Range request with 200 and the whole file
    STATUS = "status"  # answer `status` (e.g. 429/503/500/408) with an optional Retry-After
    SLOW_FIRST_BYTE = "slow_first_byte"  # wait `delay` s before the status line
    REQUIRE_AUTH = "require_auth"  # 401 unless `Authorization: Bearer <token>`
    REDIRECT = "redirect"  # `status` (302) to `to` (a path or URL; default: same path), maybe on the alt host


# Body positions: `offset` is an absolute file offset; without it `after_bytes` counts from the first body byte.
_POSITION = {"after_bytes": 0, "offset": None}
PARAMS: dict[Fault, dict[str, Any]] = {
    Fault.RESET_MID_BODY: dict(_POSITION),
    Fault.TRUNCATE: dict(_POSITION),
    Fault.WRONG_BYTES: {**_POSITION, "length": 1},
    Fault.STALL: {**_POSITION, "duration": None},
    Fault.IGNORE_RANGE: {},
    Fault.STATUS: {"status": 503, "retry_after": None},
    Fault.SLOW_FIRST_BYTE: {"delay": 1.0},
    Fault.REQUIRE_AUTH: {"token": None},
    Fault.REDIRECT: {"to": None, "cross_host": False, "status": 302},
}
BODY_FAULTS = frozenset({Fault.RESET_MID_BODY, Fault.TRUNCATE, Fault.WRONG_BYTES, Fault.STALL})
HEADER_FAULTS = frozenset({Fault.SLOW_FIRST_BYTE, Fault.REQUIRE_AUTH, Fault.STATUS, Fault.REDIRECT})


@dataclass(frozen=True)
class RequestInfo:
    """What a predicate sees about a request."""

    method: str
    path: str  # percent-decoded, without the query
    query: str
    host: str  # the Host header
    headers: Mapping[str, str]

    @property
    def authorization(self) -> str | None:
        return self.headers.get("Authorization")

    @property
    def range(self) -> str | None:
        return self.headers.get("Range")


@dataclass
class FaultRule:
    """One active fault; ``fired`` counts the requests it has hit."""

    mode: Fault
    path: str | None
    params: dict[str, Any]
    times: int | None = None
    predicate: Callable[[RequestInfo], bool] | None = None
    methods: frozenset[str] | None = None
    fired: int = 0

    def __getattr__(self, name: str) -> Any:
        try:
            return self.__dict__["params"][name]
        except KeyError:
            raise AttributeError(name) from None

    @property
    def exhausted(self) -> bool:
        return self.times is not None and self.fired >= self.times

    def matches(self, req: RequestInfo) -> bool:
        if self.exhausted or (self.methods is not None and req.method not in self.methods):
            return False
        if self.path not in (None, "*") and not fnmatch.fnmatchcase(req.path, self.path):
            return False
        return self.predicate is None or bool(self.predicate(req))

    def position(self, start: int) -> int:
        """Where, relative to a body starting at file offset ``start``, this body fault acts."""
        offset = self.params.get("offset")
        return offset - start if offset is not None else self.params.get("after_bytes", 0)


@dataclass
class HeaderPlan:
    """Effects decided before the status line: a delay and at most one short-circuit reply."""

    delay: float = 0.0
    reply: FaultRule | None = None
    fired: list[FaultRule] = field(default_factory=list)


@dataclass
class BodyPlan:
    """Effects on one body of ``length`` bytes, positions relative to its first byte."""

    cut: tuple[int, Fault] | None = None  # (position, RESET_MID_BODY | TRUNCATE)
    stall: tuple[int, float | None] | None = None  # (position, duration)
    corrupt: list[tuple[int, int]] = field(default_factory=list)  # [start, end) regions
    fired: list[FaultRule] = field(default_factory=list)

    def boundaries(self, length: int) -> list[int]:
        points = {0, length}
        points.update(p for p in (self.cut and self.cut[0], self.stall and self.stall[0]) if p is not None)
        for a, b in self.corrupt:
            points.update((a, b))
        return sorted(p for p in points if 0 <= p <= length)

    def corrupted(self, pos: int) -> bool:
        return any(a <= pos < b for a, b in self.corrupt)


class FaultSet:
    """Thread-safe list of :class:`FaultRule` objects, consulted by the server on every request."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: list[FaultRule] = []

    def add(self, path: str | None, mode: Fault, *, times: int | None = None,
            predicate: Callable[[RequestInfo], bool] | None = None, methods: Iterable[str] | None = None,
            **params: Any) -> FaultRule:
        """Add a rule for ``path`` (exact or ``fnmatch`` pattern; ``None``/``"*"``: all paths).

        ``times``: the next N matching requests (``None``: every match until removed). ``predicate``
        narrows matching further; ``methods`` limits to e.g. ``{"GET"}``. Body faults only count
        requests whose body reaches their position; IGNORE_RANGE only counts Range requests.
        """
        unknown = set(params) - set(PARAMS[mode])
        if unknown:
            raise TypeError(f"{mode.name} takes no parameter(s) {sorted(unknown)}; allowed: {sorted(PARAMS[mode])}")
        if mode is Fault.REQUIRE_AUTH and not params.get("token"):
            raise ValueError("REQUIRE_AUTH needs token=...")
        rule = FaultRule(mode, path, {**PARAMS[mode], **params}, times, predicate,
                         frozenset(m.upper() for m in methods) if methods is not None else None)
        with self._lock:
            self._rules.append(rule)
        return rule

    def remove(self, rule: FaultRule) -> None:
        with self._lock:
            self._rules = [r for r in self._rules if r is not rule]

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    @property
    def rules(self) -> list[FaultRule]:
        with self._lock:
            return list(self._rules)

    def _take(self, req: RequestInfo, modes: frozenset[Fault], accept: Callable[[FaultRule], bool]) -> list[FaultRule]:
        taken = []
        with self._lock:
            for rule in self._rules:
                if rule.mode in modes and rule.matches(req) and accept(rule):
                    rule.fired += 1
                    taken.append(rule)
        return taken

    def header_plan(self, req: RequestInfo, current_url: str,
                    redirect_target: Callable[[FaultRule], str]) -> HeaderPlan:
        """Delays accumulate; the first STATUS/REDIRECT/failed REQUIRE_AUTH becomes the reply."""
        plan = HeaderPlan()

        def accept(rule: FaultRule) -> bool:
            if rule.mode is Fault.SLOW_FIRST_BYTE:
                plan.delay += float(rule.delay)
                return True
            if plan.reply is not None:
                return False
            if rule.mode is Fault.REDIRECT and redirect_target(rule) == current_url:
                return False  # never redirect a request to itself
            if rule.mode is not Fault.REQUIRE_AUTH or req.authorization != f"Bearer {rule.token}":
                plan.reply = rule
            return True

        plan.fired = self._take(req, HEADER_FAULTS, accept)
        return plan

    def take_ignore_range(self, req: RequestInfo) -> list[FaultRule]:
        return self._take(req, frozenset({Fault.IGNORE_RANGE}), lambda rule: True)

    def body_plan(self, req: RequestInfo, start: int, length: int) -> BodyPlan:
        """Body faults for bytes ``[start, start + length)`` of the file."""
        plan = BodyPlan()

        def accept(rule: FaultRule) -> bool:
            pos = rule.position(start)
            if rule.mode is Fault.WRONG_BYTES:
                a, b = max(pos, 0), min(pos + int(rule.length), length)
                if a >= b:
                    return False
                plan.corrupt.append((a, b))
                return True
            if not 0 <= pos < length:
                return False
            if rule.mode is Fault.STALL:
                if plan.stall is not None:
                    return False
                plan.stall = (pos, rule.duration)
            elif plan.cut is None or pos < plan.cut[0]:
                plan.cut = (pos, rule.mode)
            return True

        plan.fired = self._take(req, BODY_FAULTS, accept)
        return plan


@dataclass
class RequestRecord:
    """One request as the server saw it; ``status`` is filled in when the reply starts."""

    method: str
    path: str
    host: str
    authorization: str | None
    range: str | None
    status: int | None = None
    faults: list[str] = field(default_factory=list)


class Counters:
    """Thread-safe traffic counters.

    Body bytes count file bodies only (not error or redirect bodies); a chunk is counted just before it is
    written, so a client never holds bytes the counters do not show yet. ``in_flight`` counts requests
    being answered; :meth:`wait_idle` waits for it to reach 0 (e.g. for a handler to notice a closed client).
    """

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self.active_connections = 0
        self.in_flight = 0
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self.bytes_sent = 0
            self.bytes_by_path: Counter[str] = Counter()
            self.requests: Counter[tuple[str, str]] = Counter()  # (method, path) -> count
            self.ranges: list[tuple[str, int, int]] = []  # (path, first, last) as requested, inclusive
            self.log: list[RequestRecord] = []
            self.connections = 0
            self.peak_connections = self.active_connections

    def begin(self, record: RequestRecord) -> RequestRecord:
        with self._lock:
            self.requests[(record.method, record.path)] += 1
            self.log.append(record)
            self.in_flight += 1
        return record

    def end(self) -> None:
        with self._lock:
            self.in_flight -= 1
            self._lock.notify_all()

    def wait_idle(self, timeout: float = 5.0) -> bool:
        with self._lock:
            return self._lock.wait_for(lambda: self.in_flight == 0, timeout)

    def add_range(self, path: str, first: int, last: int) -> None:
        with self._lock:
            self.ranges.append((path, first, last))

    def add_bytes(self, path: str, n: int) -> None:
        with self._lock:
            self.bytes_sent += n
            self.bytes_by_path[path] += n

    def opened(self) -> None:
        with self._lock:
            self.connections += 1
            self.active_connections += 1
            self.peak_connections = max(self.peak_connections, self.active_connections)

    def closed(self) -> None:
        with self._lock:
            self.active_connections -= 1

    def request_count(self, method: str | None = None, path: str | None = None) -> int:
        with self._lock:
            return sum(n for (m, p), n in self.requests.items()
                       if (method is None or m == method) and (path is None or p == path))

    def authorizations(self, host: str | None = None, path_prefix: str = "") -> list[str | None]:
        """The Authorization header (or None) of each logged request, optionally filtered by Host and path."""
        with self._lock:
            return [r.authorization for r in self.log
                    if (host is None or r.host == host) and r.path.startswith(path_prefix)]

    def records(self, path_prefix: str = "") -> list[RequestRecord]:
        with self._lock:
            return [r for r in self.log if r.path.startswith(path_prefix)]


def parse_range(header: str | None, size: int) -> tuple[int, int] | str | None:
    """``(first, last)`` for one satisfiable range, ``"unsatisfiable"``, or None (absent/invalid/multiple: ignore)."""
    m = re.fullmatch(r"\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*", header or "")
    if not m or m.group(1) == m.group(2) == "":
        return None
    if m.group(1) == "":  # suffix: the last n bytes
        n = int(m.group(2))
        return (max(size - n, 0), size - 1) if n and size else "unsatisfiable"
    first = int(m.group(1))
    if m.group(2) and int(m.group(2)) < first:
        return None
    return (first, min(int(m.group(2) or size - 1), size - 1)) if first < size else "unsatisfiable"


@dataclass(frozen=True)
class HfFile:
    """A file registered on the fake Hub."""

    repo_id: str
    repo_type: str
    revision: str
    filename: str
    local_path: Path
    sha256: str
    size: int
    commit: str
    lfs: bool

    @property
    def cdn_path(self) -> str:
        return f"/cdn/{self.sha256}"

    @property
    def resolve_path(self) -> str:
        prefix = "" if self.repo_type == "model" else f"{self.repo_type}s/"
        return f"/{prefix}{self.repo_id}/resolve/{quote(self.revision, safe='')}/{quote(self.filename)}"

    @property
    def blob_id(self) -> str:
        """Git blob id: of the LFS pointer for LFS files, of the content otherwise."""
        if self.lfs:
            data = f"version https://git-lfs.github.com/spec/v1\noid sha256:{self.sha256}\nsize {self.size}\n".encode()
            return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
        return hashlib.sha1(b"blob %d\0" % self.size + self.local_path.read_bytes()).hexdigest()


Reply = tuple[int, bytes, list[tuple[str, str]]]
_HEX40 = re.compile(r"[0-9a-f]{40}")


class HubRegistry:
    """What the fake Hub publishes: files by repo and revision (or commit), repo tokens, blobs by sha256."""

    def __init__(self) -> None:
        self.repos: dict[tuple[str, str], dict[str, dict[str, HfFile]]] = {}  # (type, id) -> revision -> name
        self.tokens: dict[tuple[str, str], str] = {}
        self.blobs: dict[str, Path] = {}

    def add(self, repo_id: str, filename: str, local_path: Path, revision: str, repo_type: str, lfs: bool,
            token: str | None, sha256: str) -> HfFile:
        commit = revision if _HEX40.fullmatch(revision) else hashlib.sha1(
            f"{repo_type}/{repo_id}@{revision}".encode()).hexdigest()
        entry = HfFile(repo_id, repo_type, revision, filename, local_path, sha256, local_path.stat().st_size,
                       commit, lfs)
        repo = self.repos.setdefault((repo_type, repo_id), {})
        for rev in {revision, commit}:
            repo.setdefault(rev, {})[filename] = entry
        if token is not None:
            self.tokens[(repo_type, repo_id)] = token
        self.blobs[sha256] = local_path
        return entry

    def parse_resolve(self, segments: list[str]) -> tuple[str, str, str, str] | None:
        """``[datasets|spaces/]{repo_id}/resolve/{revision}/{filename}`` -> (type, repo_id, revision, filename)."""
        repo_type = "model"
        if segments and segments[0] in ("datasets", "spaces"):
            repo_type, segments = segments[0][:-1], segments[1:]
        for i in (1, 2):
            if len(segments) > i + 2 and segments[i] == "resolve" and (repo_type, "/".join(segments[:i])) in self.repos:
                return repo_type, "/".join(segments[:i]), segments[i + 1], "/".join(segments[i + 2:])
        return None

    def check(self, authorization: str | None, repo_type: str, repo_id: str, revision: str) -> Reply | None:
        """The Hub's error reply for an unknown repo or revision, or a private repo without its token."""
        repo, token = self.repos.get((repo_type, repo_id)), self.tokens.get((repo_type, repo_id))
        if repo is None or (token is not None and authorization != f"Bearer {token}"):
            return (404 if repo is None else 401), b"Repository not found\n", [
                ("X-Error-Code", "RepoNotFound"), ("X-Error-Message", "Repository not found")]
        if revision not in repo:
            return 404, b"Revision not found\n", [("X-Error-Code", "RevisionNotFound")]
        return None

    def api_info(self, repo_type: str, repo_id: str, revision: str) -> dict[str, Any]:
        """Minimal ``/api/models/{repo_id}/revision/{revision}`` JSON (siblings with sizes and LFS data)."""
        files = list(self.repos[(repo_type, repo_id)][revision].values())
        return {"id": repo_id, "modelId": repo_id, "sha": files[0].commit,
                "private": (repo_type, repo_id) in self.tokens,
                "siblings": [{"rfilename": e.filename, "size": e.size, "blobId": e.blob_id,
                              **({"lfs": {"sha256": e.sha256, "size": e.size, "pointerSize": 134}} if e.lfs else {})}
                             for e in files]}

    def tree(self, repo_type: str, repo_id: str, revision: str, folder: str = "") -> list[dict[str, Any]]:
        """Minimal recursive ``/api/models/{repo_id}/tree/{revision}`` listing (files only, one page)."""
        prefix = folder.strip("/") + "/" if folder.strip("/") else ""
        return [{"type": "file", "path": e.filename, "oid": e.blob_id, "size": e.size,
                 **({"lfs": {"oid": e.sha256, "size": e.size, "pointerSize": 134}} if e.lfs else {})}
                for e in self.repos[(repo_type, repo_id)][revision].values() if e.filename.startswith(prefix)]
