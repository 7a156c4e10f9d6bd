"""The worker's long-lived state: model_fetch configuration and the supervised ComfyUI process.

ComfyUI is started as soon as the worker starts (``start()``), so a cold start overlaps its boot
with the first job's model fetching; ``ready()`` waits for it under a bounded deadline and restarts
it when it has died since the last job.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Callable
from typing import Any

import model_fetch

from . import comfyui_home
from .comfy_client import ComfyClient
from .config import WorkerSettings
from .errors import ComfyNotFound
from .gpu import GpuCheck
from .preload import Preloader, graph_order
from .supervisor import ComfyProcess, ComfySettings
from .warmup import Warmup

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    settings: WorkerSettings
    fetch_settings: model_fetch.Settings = field(default_factory=model_fetch.Settings.from_env)
    process: ComfyProcess | None = None
    _object_info: dict[str, Any] | None = None
    gpu: GpuCheck | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    preloader: Preloader | None = None  # WORKER_PRELOAD=cache|warmup (worker.preload)
    warmup: Warmup | None = None  # WORKER_PRELOAD=warmup (worker.warmup)

    @classmethod
    def from_env(cls) -> "Runtime":
        return cls(WorkerSettings.from_env(), model_fetch.Settings.from_env())

    def store(self) -> model_fetch.Store:
        return model_fetch.Store.from_settings(self.fetch_settings)

    def user_model_paths(self) -> list[Path]:
        """The operator's own ``extra_model_paths.yaml`` (``WORKER_EXTRA_MODEL_PATHS``), when there is one.
        model_fetch's roots reach ComfyUI through the pack, not through a file (docs/design.md)."""
        path = self.settings.extra_model_paths
        return [path] if path is not None and path.is_file() else []

    def comfy_env(self) -> dict[str, str]:
        """What ComfyUI's process gets besides the worker's environment: the worker's models roots, so the
        pack registers exactly the roots the worker plans and fetches into (store_roots.register_roots)."""
        return {"MODEL_FETCH_MODELS_DIR": os.pathsep.join(str(root) for root in self.store().roots)}

    def comfyui_dir(self) -> Path:
        """The ComfyUI install (``COMFYUI_DIR``, else the first found); ``ComfyNotFound`` when there is none."""
        configured = self.settings.comfyui_dir
        if configured is not None:
            if not comfyui_home.is_comfyui(configured):
                raise ComfyNotFound(f"COMFYUI_DIR={configured} is not a ComfyUI install (no main.py, comfy/, nodes.py)")
            return configured
        return comfyui_home.ensure(clone=False)

    def comfy_folders(self) -> model_fetch.ComfyFolders:
        """Where ComfyUI itself finds models: its install's and base directory's models/, its YAML files."""
        return model_fetch.ComfyFolders.of_install(self.comfyui_dir(), self.settings.base_dir, self.user_model_paths())

    def install_models_file(self, comfyui: Path) -> list[Path]:
        """A YAML mapping the install's own ``models/`` folders into ComfyUI, which ``--base-directory`` hides."""
        models = comfyui / "models"
        if not models.is_dir() or models.resolve() == (self.settings.base_dir / "models").resolve():
            return []
        section = model_fetch.ModelPathsSection(
            "comfyui_install", models, {d.name: (d.name,) for d in sorted(models.iterdir()) if d.is_dir()})
        path = model_fetch.write_model_paths_yaml(self.settings.base_dir / "comfyui_install_models.yaml", [section],
                                                  "written by the worker: the ComfyUI install's own models/ folders")
        return [path]

    def _make_process(self) -> ComfyProcess:
        comfyui = self.comfyui_dir()
        return ComfyProcess(ComfySettings(comfyui_dir=Path(comfyui), base_dir=self.settings.base_dir,
                                          extra_model_paths=[*self.user_model_paths(), *self.install_models_file(comfyui)],
                                          env=self.comfy_env(),
                                          host=self.settings.host,
                                          port=self.settings.port, cpu=self.settings.cpu,
                                          extra_args=([] if self.settings.output.metadata else ["--disable-metadata"])
                                          + list(self.settings.comfy_args),
                                          log_rate=self.settings.comfy_log_rate))

    def check_gpu(self) -> GpuCheck:
        """Start the GPU stack probe once (at worker start; it logs torch's build, driver, GPU, VRAM)."""
        if self.gpu is None:
            self.gpu = GpuCheck(self.settings.expect_gpu and not self.settings.cpu).start()
        return self.gpu

    def require_gpu(self) -> None:
        """Raise GpuUnavailable when a GPU is expected and CUDA is unusable (a no-op otherwise)."""
        if self.settings.expect_gpu and not self.settings.cpu:
            self.check_gpu().require()

    def start(self) -> None:
        """Launch ComfyUI without waiting for it."""
        with self._lock:
            if self.process is None:
                self.process = self._make_process()
            if not self.process.alive():
                self._object_info = None
                self.process.start()

    def start_preload(self) -> None:
        """``WORKER_PRELOAD`` cache or warmup: read the default workflow's models that are on disk into the page
        cache while ComfyUI boots (in the background; never raises); warmup: then run it tiny."""
        if self.settings.preload == "off" or self.preloader is not None:
            return
        self.preloader = Preloader(self.settings.preload_reserve, self.settings.preload_max)
        threading.Thread(target=self._plan_preload, name="preload-plan", daemon=True).start()
        if self.settings.preload == "warmup":
            self.warmup = Warmup(self).start()

    def _plan_preload(self) -> None:
        from .workflows import load_workflow

        try:
            graph = load_workflow(self.settings.default_workflow, workflows_dir=self.settings.workflows_dir).graph
            plan = model_fetch.plan(graph, settings=self.fetch_settings, store=self.store(), comfy=self.comfy_folders())
        except Exception as exc:  # noqa: BLE001 - unknown models, no ComfyUI: the first job reports it
            log.info("preload skipped: %s", str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
            return
        files = graph_order(graph, plan)
        if self.preloader is not None and files:
            self.preloader.read(files, graph)

    def watch_stages(self, graph: dict[str, Any], plan: model_fetch.Plan) -> Callable[[str], None] | None:
        """For a job about to run ``graph``: a callback for each node ComfyUI starts, which reads later stages'
        files while a sampler runs (None when preloading is off)."""
        if self.settings.preload == "off":
            return None
        if self.preloader is None:
            self.preloader = Preloader(self.settings.preload_reserve, self.settings.preload_max)
        self.preloader.watch(graph, graph_order(graph, plan))
        return self.preloader.sampler_started

    def ready(self) -> ComfyClient:
        """A client for a running, answering ComfyUI (started or restarted as needed)."""
        self.start()
        assert self.process is not None
        self.process.wait_ready(self.settings.start_timeout)
        return ComfyClient(self.process.url)

    def alive(self) -> bool:
        return self.process is not None and self.process.alive()

    def object_info(self, client: ComfyClient) -> dict[str, Any]:
        if self._object_info is None:
            self._object_info = client.object_info()
        return self._object_info

    def io_dirs(self) -> tuple[Path, Path]:
        return self.settings.base_dir / "input", self.settings.base_dir / "output"

    def stop(self) -> None:
        if self.preloader is not None:
            self.preloader.stop()
        if self.process is not None:
            self.process.stop()
