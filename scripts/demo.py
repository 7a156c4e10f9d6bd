"""`make demo`: the whole job path on the embedded default — tiny weights, a local model mirror, CPU.

1. builds tiny WAN 2.2 weights with ComfyUI's own classes and puts them in a local mirror under the
   production file names (.demo/mirror), with a manifest pointing at it (sha256 included);
2. empties the models folder (.demo/models): the first request must fetch everything;
3. runs `python -m worker --test-input .demo/job.json` — the real worker: it starts ComfyUI on CPU,
   plans the saved workflow's models, fetches them from the mirror, runs the two-stage graph;
4. writes the returned video to .demo/output/ and prints its path.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests import tiny_weights  # noqa: E402
from tests.graphs import input_png  # noqa: E402
from worker import comfyui_home  # noqa: E402
from worker.errors import ComfyNotFound  # noqa: E402
from worker.supervisor import free_port  # noqa: E402

DEMO = ROOT / ".demo"


def main() -> int:
    try:
        comfyui = comfyui_home.ensure()
    except ComfyNotFound as exc:
        print(f"!!! {exc}", file=sys.stderr)
        return 1
    tiny = DEMO / "tiny-weights"
    tiny_weights.generate(tiny, comfyui)
    entries = tiny_weights.stand_in_mirror(tiny, DEMO / "mirror")
    manifest = DEMO / "manifest.json"
    manifest.write_text(json.dumps({"models": entries}, indent=2))
    shutil.rmtree(DEMO / "models", ignore_errors=True)
    job = DEMO / "job.json"
    job.write_text(json.dumps({"input": {"workflow": "wan22_i2v_gguf", "params": {
        "image": base64.b64encode(input_png(64, 48)).decode(), "prompt": "a cat walks slowly across the street",
        "width": 64, "height": 48, "length": 9, "steps": 4, "fps": 8, "seed": 42}}}))
    env = {**os.environ, "COMFYUI_DIR": str(comfyui), "WORKER_COMFY_CPU": "1",
           "WORKER_COMFY_BASE_DIR": str(DEMO / "comfy"), "WORKER_COMFY_PORT": str(free_port()),
           "MODEL_FETCH_MODELS_DIR": str(DEMO / "models"), "MODEL_FETCH_MANIFEST": str(manifest),
           "MODEL_FETCH_NO_DEFAULT_MANIFEST": "1"}
    print("running the worker on .demo/job.json (empty model folders, local mirror, CPU)…", file=sys.stderr)
    t0 = time.monotonic()
    res = subprocess.run([sys.executable, "-m", "worker", "--test-input", str(job)], env=env, cwd=ROOT,
                         stdout=subprocess.PIPE, text=True)
    answer = json.loads(res.stdout) if res.stdout.strip().startswith("{") else {"error": "no answer"}
    if res.returncode != 0 or "error" in answer:
        print(f"!!! the job failed: {answer.get('error')} ({answer.get('code')})", file=sys.stderr)
        return 1
    out_dir = DEMO / "output"
    out_dir.mkdir(exist_ok=True)
    written = []
    for item in answer["images"]:
        path = out_dir / item["filename"]
        path.write_bytes(base64.b64decode(item["data"]))
        written.append(path)
    print(f"fetched {len(answer['models']['fetched'])} model files; job took {time.monotonic() - t0:.1f}s "
          f"(timings: {answer['timings']})", file=sys.stderr)
    for warning in answer.get("warnings", []):  # e.g. the LoRA keys WAN 2.2 has no target for
        print(f"warning: {warning}", file=sys.stderr)
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
