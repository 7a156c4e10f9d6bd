"""`make bench`: run the benchmarks (all, or those named) and write docs/benchmarks.md.

Each benchmark is a module ``bench/<name>.py`` with ``run() -> None`` that calls
``bench.report.write_section``. Name them on the command line to run a subset.
"""

from __future__ import annotations

import importlib
import sys
import time

BENCHMARKS = ["fetch", "s3", "dequant", "worker"]
#: Run only when named: `realsize` needs ~55 GB of disk and an hour of CPU, `gpu` a CUDA device,
#: `coldstart` root (a loop device, a cgroup), ~30 GB of disk and half an hour of CPU.
OPT_IN = ["realsize", "gpu", "coldstart"]


def main(argv: list[str]) -> int:
    names = argv or BENCHMARKS
    failed = []
    for name in names:
        if name not in BENCHMARKS + OPT_IN:
            print(f"unknown benchmark {name!r}; known: {', '.join(BENCHMARKS + OPT_IN)}", file=sys.stderr)
            return 2
        t0 = time.monotonic()
        print(f"== bench {name}", flush=True)
        try:
            importlib.import_module(f"bench.{name}").run()
        except ModuleNotFoundError as exc:
            if exc.name == f"bench.{name}":
                print(f"   (no bench/{name}.py yet)")
                continue
            raise
        except Exception as exc:  # keep going: one broken benchmark must not hide the others
            failed.append(name)
            print(f"   FAILED: {type(exc).__name__}: {exc}", file=sys.stderr)
        print(f"   {time.monotonic() - t0:.1f}s", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
