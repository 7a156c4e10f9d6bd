"""Start-up check of the GPU stack: torch's CUDA build, the NVIDIA driver, the GPU and its VRAM.

The worker does not import torch itself; the probe runs ``python -c`` once in the background at
start (it overlaps ComfyUI's boot) and logs one line. Where a GPU is expected
(``WORKER_EXPECT_GPU=1``, the image's default) but CUDA is unusable, every job answers
``gpu_unavailable`` at once instead of a 14B model crawling on CPU.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
from dataclasses import dataclass

from .errors import GpuUnavailable

log = logging.getLogger(__name__)

# Oldest Linux driver per CUDA build (NVIDIA's CUDA toolkit release notes, table 3).
DRIVER_FLOOR = {"12.4": "550", "12.6": "560", "12.8": "570", "12.9": "575", "13.0": "580"}

_PROBE = r"""
import json, re, subprocess, warnings
info = {}
try:
    import torch
    info["torch"] = torch.__version__
    info["cuda_build"] = torch.version.cuda
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        info["cuda_available"] = bool(torch.cuda.is_available())
    if info["cuda_available"]:
        props = torch.cuda.get_device_properties(0)
        info["gpu"] = props.name
        info["vram_gb"] = round(props.total_memory / 2**30, 1)
        info["gpus"] = torch.cuda.device_count()
    else:
        info["reason"] = "; ".join(str(w.message).splitlines()[0] for w in caught) or "torch.cuda.is_available() is False"
except Exception as exc:
    info["cuda_available"] = False
    info["reason"] = f"{type(exc).__name__}: {exc}"
try:
    m = re.search(r"Kernel Module\s+([\d.]+)", open("/proc/driver/nvidia/version").read())
    info["driver"] = m.group(1) if m else None
except OSError:
    info["driver"] = None
print(json.dumps(info))
"""


@dataclass(frozen=True)
class GpuInfo:
    torch: str | None = None
    cuda_build: str | None = None
    cuda_available: bool = False
    driver: str | None = None
    gpu: str | None = None
    vram_gb: float | None = None
    gpus: int = 0
    reason: str | None = None

    def summary(self) -> str:
        build = f"CUDA {self.cuda_build} build" if self.cuda_build else "CPU-only build"
        head = f"torch {self.torch or '?'} ({build}), NVIDIA driver {self.driver or 'not found'}"
        if self.cuda_available:
            return f"{head}, {self.gpus} × {self.gpu} ({self.vram_gb} GiB VRAM)"
        return f"{head}, CUDA unusable: {self.reason}"

    def floor_hint(self) -> str:
        floor = DRIVER_FLOOR.get(self.cuda_build or "")
        return f"torch's CUDA {self.cuda_build} build needs NVIDIA driver >= {floor}" if floor else ""


def probe(python: str = sys.executable, timeout: float = 180.0) -> GpuInfo:
    """Run the probe in a child interpreter; never raises."""
    try:
        res = subprocess.run([python, "-c", _PROBE], capture_output=True, text=True, timeout=timeout)
        raw = json.loads(res.stdout.strip().splitlines()[-1])
    except (subprocess.SubprocessError, OSError, ValueError, IndexError) as exc:
        return GpuInfo(reason=f"probe failed: {type(exc).__name__}")
    fields = GpuInfo.__dataclass_fields__
    return GpuInfo(**{k: v for k, v in raw.items() if k in fields})


class GpuCheck:
    """The probe, run once in a background thread; ``require()`` gates jobs when a GPU is expected."""

    def __init__(self, expect_gpu: bool) -> None:
        self.expect_gpu = expect_gpu
        self.info: GpuInfo | None = None
        self._done = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> "GpuCheck":
        self._thread = threading.Thread(target=self._run, name="gpu-check", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        self.info = probe()
        self._done.set()
        if self.info.cuda_available or not self.expect_gpu:
            log.info("GPU stack: %s", self.info.summary())
        else:
            log.error("GPU stack: %s. A GPU was expected (WORKER_EXPECT_GPU): every job answers gpu_unavailable. %s",
                      self.info.summary(), self.info.floor_hint())

    def result(self, timeout: float = 180.0) -> GpuInfo | None:
        self._done.wait(timeout)
        return self.info

    def require(self) -> None:
        """Raise GpuUnavailable when a GPU is expected and CUDA is unusable."""
        if not self.expect_gpu:
            return
        info = self.result()
        if info is None or not info.cuda_available:
            summary = info.summary() if info else "GPU check did not finish"
            hint = info.floor_hint() if info else ""
            raise GpuUnavailable(f"a GPU was expected but CUDA is unusable: {summary}" + (f" ({hint})" if hint else ""),
                                 driver=info.driver if info else None, cuda_build=info.cuda_build if info else None)
