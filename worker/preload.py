"""Read a workflow's model files into the page cache ahead of ComfyUI's loaders (``WORKER_PRELOAD``).

At worker start, while ComfyUI boots, the default workflow's files that are on disk are read in the order
the graph uses them; when a sampler starts, the files later stages need and the start could not hold are
read while it samples (the low-noise UNET during the high-noise stage). The loaders then read from memory
instead of the volume. Which files and where they are comes from ``model_fetch.plan``; this module only
orders them and reads them.

Internal logic:
- A file's *stage* is the index (in execution order) of the first sampler whose inputs reach its loader;
  files no sampler needs come last. Within a stage, conditioning (text encoders, CLIP vision, VAE) comes
  before the model chain (UNET, LoRA), as ComfyUI runs them; then graph order.
- Each pass reads at most its budget: the memory available (``MemAvailable``, and the cgroup's limit minus
  its non-cache usage where one is set) minus ``reserve``, capped by ``max_bytes``. A file that does not fit
  whole is left for a later pass; the next files are still tried. A pass started by a sampler also keeps
  out the bytes of the files that sampler reads from, so the read never evicts them.
- Reading is best effort: one daemon thread, plain sequential reads; an error skips the file. Nothing here
  raises into a job or waits for one.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import model_fetch

log = logging.getLogger(__name__)
__all__ = ["PreloadFile", "Preloader", "Record", "graph_order", "memory_budget"]

SAMPLERS = ("KSampler", "KSamplerAdvanced", "SamplerCustom", "SamplerCustomAdvanced")
CONDITIONING_FOLDERS = ("text_encoders", "clip", "clip_vision", "vae")
CHUNK = 8 * 1024 * 1024


@dataclass(frozen=True)
class PreloadFile:
    name: str
    directory: str
    path: Path
    size: int
    stage: int  # index of the first sampler that needs it (len(samplers) when none does)
    nodes: tuple[str, ...] = ()


@dataclass
class Record:
    """What one read did (tests and the benchmark read these)."""

    path: Path
    stage: int
    trigger: str  # "start", or "sampler <node id>"
    started: float  # time.monotonic()
    ended: float = 0.0
    bytes_read: int = 0
    error: str | None = None


def _links(node: dict[str, Any], keys: tuple[str, ...] | None = None) -> list[str]:
    inputs = node.get("inputs") or {}
    return [str(v[0]) for k, v in inputs.items() if (keys is None or k in keys)
            and isinstance(v, list) and len(v) == 2 and isinstance(v[1], int)]


def _ancestors(graph: dict[str, Any], starts: list[str]) -> set[str]:
    seen: set[str] = set()
    todo = list(starts)
    while todo:
        node_id = todo.pop()
        if node_id in seen or not isinstance(graph.get(node_id), dict):
            continue
        seen.add(node_id)
        todo += _links(graph[node_id])
    return seen


def samplers(graph: dict[str, Any]) -> list[str]:
    """The graph's sampler nodes in execution order (a sampler fed by another runs after it)."""
    ids = [k for k, v in graph.items() if isinstance(v, dict) and v.get("class_type") in SAMPLERS]
    before = {s: len(_ancestors(graph, _links(graph[s])) & set(ids)) for s in ids}
    return sorted(ids, key=lambda s: (before[s], list(graph).index(s)))


def model_nodes(graph: dict[str, Any], sampler: str) -> set[str]:
    """The nodes a sampler's model comes from (its UNET and LoRA loaders: what it reads while it samples)."""
    return _ancestors(graph, _links(graph[sampler], ("model", "guider")))


def graph_order(graph: dict[str, Any], plan: model_fetch.Plan) -> list[PreloadFile]:
    """The plan's files that are on disk, in the order the graph's loaders will read them (module doc)."""
    order = samplers(graph)
    reach = [_ancestors(graph, [s]) for s in order]
    position = {node_id: i for i, node_id in enumerate(graph)}
    files = []
    for item in plan.items:
        path = Path(item.path) if item.path else None
        if path is None or not path.is_file():
            continue  # absent (or only listed by ComfyUI): nothing to read
        nodes = [str(n) for n in item.nodes]
        stage = min((i for i, r in enumerate(reach) if r & set(nodes)), default=len(order))
        files.append(PreloadFile(item.name, item.directory, path, path.stat().st_size, stage, tuple(nodes)))
    return sorted(files, key=lambda f: (f.stage, f.directory not in CONDITIONING_FOLDERS,
                                        min((position.get(n, len(position)) for n in f.nodes), default=len(position))))


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _cgroup_available() -> int | None:
    """The cgroup's memory limit minus its non-cache usage (v2, else v1); None without a limit."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        hier, _, rest = line.partition(":")
        controllers, _, rel = rest.partition(":")
        if hier == "0" and controllers == "":
            base, files = Path("/sys/fs/cgroup") / rel.lstrip("/"), ("memory.max", "memory.current", "file")
        elif "memory" in controllers.split(","):
            base = Path("/sys/fs/cgroup/memory") / rel.lstrip("/")
            if not base.is_dir():
                base = Path("/sys/fs/cgroup/memory")
            files = ("memory.limit_in_bytes", "memory.usage_in_bytes", "total_cache")
        else:
            continue
        limit, usage = _read_int(base / files[0]), _read_int(base / files[1])
        if limit is None or usage is None or limit >= 2**60:
            continue
        cache = 0
        try:
            for stat in (base / "memory.stat").read_text().splitlines():
                key, _, value = stat.partition(" ")
                if key == files[2]:
                    cache = int(value)
        except (OSError, ValueError):
            pass
        return max(0, limit - (usage - cache))
    return None


def memory_budget(reserve: int, max_bytes: int = 0) -> int:
    """Bytes a pass may read: available memory (host and cgroup) minus ``reserve``, capped by ``max_bytes``."""
    available = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                available = int(line.split()[1]) * 1024
    except OSError:
        pass
    if available is None:
        return 0  # not Linux: no preloading without knowing the memory
    group = _cgroup_available()
    budget = max(0, min(available, group if group is not None else available) - reserve)
    return min(budget, max_bytes) if max_bytes > 0 else budget


@dataclass
class Preloader:
    """Reads files in one background thread: ``read(files, graph)`` at worker start, ``watch(graph, files)``
    for each job, ``sampler_started(node)`` as each sampler begins. ``records`` tells what was read, in order."""

    reserve: int
    max_bytes: int = 0
    budget: Callable[[int, int], int] | None = None  # (reserve, max_bytes) -> bytes; memory_budget by default
    records: list[Record] = field(default_factory=list)
    graph: dict[str, Any] = field(default_factory=dict)
    files: list[PreloadFile] = field(default_factory=list)
    _queue: "queue.Queue[tuple[str, list[PreloadFile]] | None]" = field(default_factory=queue.Queue)
    _done: set[Path] = field(default_factory=set)
    _triggered: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _thread: threading.Thread | None = None
    _stop: threading.Event = field(default_factory=threading.Event)

    def _budget(self) -> int:
        fn = self.budget or memory_budget
        return int(fn(self.reserve, self.max_bytes))

    def read(self, files: list[PreloadFile], graph: dict[str, Any] | None = None) -> "Preloader":
        """Read ``files`` (graph order) now, in the background, within the budget (the start pass)."""
        if graph is not None:
            self.watch(graph, files)
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="preload", daemon=True)
            self._thread.start()
        self._queue.put(("start", files))
        return self

    def watch(self, graph: dict[str, Any], files: list[PreloadFile]) -> None:
        """The graph ComfyUI runs next and its files on disk: what ``sampler_started`` reads from."""
        with self._lock:
            self.graph, self.files, self._triggered = graph, files, set()

    def sampler_started(self, node_id: str | None) -> None:
        """ComfyUI began executing ``node_id``: when it is one of the watched graph's samplers, queue the
        files later stages need that are not read yet (never blocks, never raises)."""
        with self._lock:
            graph, files = self.graph, self.files
            order = samplers(graph) if graph else []
            node_id = str(node_id)
            if node_id not in order or node_id in self._triggered:
                return
            self._triggered.add(node_id)
        stage = order.index(node_id)
        later = [f for f in files if f.stage > stage]
        if later:
            if self._thread is None:
                self.read([])  # starts the thread (an empty start pass)
            self._queue.put((f"sampler {node_id}", later))

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until every queued read has finished (tests, the benchmark); True when idle."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._queue.unfinished_tasks:
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(0.05)
        return True

    def stop(self) -> None:
        self._stop.set()
        self._queue.put(None)

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            try:
                if job is None:
                    return
                self._pass(*job)
            except Exception:  # noqa: BLE001 - preloading is best effort; a job never sees it
                log.exception("preload pass failed")
            finally:
                self._queue.task_done()

    def _pass(self, trigger: str, files: list[PreloadFile]) -> None:
        budget = self._budget()
        if trigger != "start":
            running = model_nodes(self.graph, trigger.split(" ", 1)[1])
            budget -= sum(f.size for f in self.files if running & set(f.nodes))  # in memory either way
        todo = [f for f in files if f.path not in self._done]
        if not todo:
            return
        log.info("preload (%s): %d file(s), %.2f GB, budget %.2f GB", trigger, len(todo),
                 sum(f.size for f in todo) / 1e9, max(budget, 0) / 1e9)
        for f in todo:
            if self._stop.is_set():
                return
            if f.size > budget:
                log.info("preload: %s/%s (%.2f GB) left for later: over the budget", f.directory, f.name, f.size / 1e9)
                continue
            record = self._read(f, trigger)
            if record.error is None:
                budget -= f.size
                self._done.add(f.path)

    def _read(self, f: PreloadFile, trigger: str) -> Record:
        record = Record(f.path, f.stage, trigger, time.monotonic())
        with self._lock:
            self.records.append(record)
        buf = bytearray(CHUNK)
        view = memoryview(buf)
        try:
            fd = os.open(f.path, os.O_RDONLY)
            try:
                if hasattr(os, "posix_fadvise"):
                    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
                while not self._stop.is_set():
                    n = os.readv(fd, [view])
                    if n <= 0:
                        break
                    record.bytes_read += n
            finally:
                os.close(fd)
        except OSError as exc:
            record.error = exc.strerror or type(exc).__name__
            log.info("preload: %s/%s skipped: %s", f.directory, f.name, record.error)
        record.ended = time.monotonic()
        seconds = record.ended - record.started
        if record.error is None:
            log.info("preload: %s/%s %.2f GB in %.1fs (%.0f MB/s)", f.directory, f.name, record.bytes_read / 1e9,
                     seconds, record.bytes_read / 1e6 / max(seconds, 1e-9))
        return record
