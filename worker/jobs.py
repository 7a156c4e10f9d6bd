"""One job, end to end, each step once: parse → prepare (load the workflow, apply and validate params,
check outputs and input files) → plan models → fetch (input images, missing models with progress) → run
(upload, queue, follow) → deliver (collect outputs, answer) → clean up. Storage actions answer from
model_fetch.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import model_fetch

from . import lora_reports
from . import outputs as out
from .comfy_client import ComfyClient, Progress, output_files
from .errors import ComfyNotFound, InvalidInput, ModelsUnavailable, WorkerError
from .graph_inputs import check_input_files
from .images import load_image, safe_name, unique_name
from .job_parse import Job, parse_job
from .runtime import Runtime
from .workflows import apply_params, load_workflow, set_param

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

log = logging.getLogger(__name__)
Report = Callable[[dict[str, Any]], None]
REFERENCE_WORK = 832 * 480 * 81 * 4  # pixels × frames × steps of the default job


@dataclass
class JobContext:
    """One job's surroundings: the runtime, its progress channel, and what it leaves to clean up."""

    runtime: Runtime
    report: Report
    job_id: str = "local"
    uploaded: list[Path] = field(default_factory=list)
    produced: list[Path] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)
    client: ComfyClient | None = None  # once the job talked to ComfyUI
    prompt_id: str | None = None  # once the graph is queued


@dataclass
class Prepared:
    """A job that passed every check needing no download: its graph with params applied, and where its
    outputs go."""

    graph: dict[str, Any]
    param_map: dict[str, Any] | None
    params: dict[str, Any]
    target: OutputTarget


def deadline_for(job: Job, params: dict[str, Any], runtime: Runtime) -> float:
    """Seconds allowed for ComfyUI's part: base + per_unit × work relative to the default job, capped."""
    s = runtime.settings
    if job.timeout:
        return min(float(job.timeout), s.timeout_max)
    work = 1.0
    for key in ("width", "height", "length", "steps"):
        value = params.get(key)
        if isinstance(value, (int, float)) and value > 0:
            work *= value
    units = work / REFERENCE_WORK if work > 1 else 1.0
    return min(s.timeout_base + s.timeout_per_unit * units, s.timeout_max)


def comfy_execution_seconds(entry: dict[str, Any]) -> float | None:
    """ComfyUI's own run time, from the execution_start/-success timestamps in the history entry."""
    stamps = {name: (data or {}).get("timestamp") for name, data in (entry.get("status") or {}).get("messages") or []}
    start, end = stamps.get("execution_start"), stamps.get("execution_success")
    return round((end - start) / 1000, 3) if start is not None and end is not None else None


def plan_models(graph: dict[str, Any], ctx: JobContext) -> "model_fetch.Plan":
    """Which model files the graph needs and where each comes from; fails (``model_unknown``) before any
    download. Files ComfyUI itself finds count as present: its folders on disk first, then, for a file
    still unknown, what the running ComfyUI lists under ``GET /models/{folder}``."""
    rt = ctx.runtime
    comfy = rt.comfy_folders()
    kwargs: dict[str, Any] = dict(settings=rt.fetch_settings, store=rt.store(), comfy=comfy)
    try:
        try:
            return model_fetch.plan(graph, **kwargs)
        except model_fetch.UnknownModelError as exc:
            client = rt.ready()
            for folder in dict.fromkeys(folder for _, folder in exc.missing):
                comfy.add_listing(folder, client.list_models(folder))
            return model_fetch.plan(graph, **kwargs)
    except model_fetch.ModelFetchError as exc:
        raise ModelsUnavailable(str(exc), fetch_code=exc.code) from None


def fetch_models(plan: "model_fetch.Plan", ctx: JobContext) -> dict[str, Any]:
    """Fetch the plan's missing files, reporting bytes as they arrive."""
    rt = ctx.runtime
    t0 = time.monotonic()
    missing = [i for i in plan.missing() if i.entry is not None]
    try:
        if missing:
            ctx.report({"stage": "models", "message": f"fetching {len(missing)} model file(s)",
                        "files": [f"{i.directory}/{i.name}" for i in missing]})

            def on_progress(p: model_fetch.FileProgress) -> None:
                if p.phase in ("download", "wait", "verify", "done"):
                    ctx.report({"stage": "models", "file": f"{p.directory}/{p.name}", "phase": p.phase,
                                "done": p.done, "total": p.total})

            model_fetch.ensure([i.entry for i in missing if i.entry is not None], settings=rt.fetch_settings, store=rt.store(),
                               on_progress=on_progress)
    except model_fetch.ModelFetchError as exc:
        raise ModelsUnavailable(str(exc), fetch_code=exc.code) from None
    ctx.timings["models_s"] = round(time.monotonic() - t0, 3)
    return {"needed": len(plan.items), "fetched": [f"{i.directory}/{i.name}" for i in missing]}


@dataclass
class InputFiles:
    """The job's images, read (decoded or downloaded) and checked, not yet uploaded."""

    start: bytes | None = None  # params.image
    named: list[tuple[str, bytes]] = field(default_factory=list)  # images[]


def read_inputs(job: Job, ctx: JobContext) -> InputFiles:
    s = ctx.runtime.settings
    files = InputFiles()
    for i, item in enumerate(job.images):
        files.named.append((safe_name(item.name, f"images.{i}.name"), load_image(item.image, f"images.{i}.image", s)))
    if "image" in job.params:
        files.start = load_image(job.params["image"], "params.image", s)
    return files


def _upload_inputs(files: InputFiles, client: ComfyClient, ctx: JobContext) -> tuple[str | None, dict[str, str]]:
    """Upload ``params.image`` and ``images[]`` under job-unique names; return (image name, rename map)."""
    input_dir, _ = ctx.runtime.io_dirs()
    renames: dict[str, str] = {}
    for name, data in files.named:
        stored = client.upload_image(unique_name(name), data)
        renames[name] = stored
        ctx.uploaded.append(input_dir / stored)
    image_name = None
    if files.start is not None:
        image_name = client.upload_image(unique_name("start.png"), files.start)
        ctx.uploaded.append(input_dir / image_name)
    return image_name, renames


def _rename_inputs(graph: dict[str, Any], renames: dict[str, str]) -> dict[str, Any]:
    """Point LoadImage-style inputs at the uploaded (job-unique) names."""
    if not renames:
        return graph
    graph = {k: {**v, "inputs": dict(v.get("inputs") or {})} for k, v in graph.items()}
    for node in graph.values():
        for key, value in node["inputs"].items():
            if isinstance(value, str) and value in renames:
                node["inputs"][key] = renames[value]
    return graph


def _collect(entry: dict[str, Any], ctx: JobContext) -> list[out.OutputFile]:
    base = ctx.runtime.settings.base_dir
    files = []
    for item in output_files(entry):
        path = base / item["type"] / item["subfolder"] / item["filename"]
        if item["type"] != "output" or not path.is_file():
            continue  # previews and temp files are not job outputs
        files.append(out.OutputFile(item["node_id"], item["kind"], item["filename"], item["subfolder"], path))
        ctx.produced.append(path)
    return files


@dataclass
class OutputTarget:
    """Where a job's outputs go: ``base64`` in the answer, or ``s3`` under ``s3://bucket/prefix`` with one client."""

    mode: str
    bucket: str | None = None
    prefix: str = ""
    client: S3Client | None = None


def output_target(job: Job, ctx: JobContext) -> OutputTarget:
    """The job's output target, checked before anything runs. Without ``output.mode``, ``BUCKET_ENDPOINT_URL``
    switches S3 on, as in worker-comfyui. S3 output: credentials there, bucket reachable and writable
    (worker.output_check)."""
    s, spec = ctx.runtime.settings.output, job.output
    mode = spec.mode or s.mode
    if mode != "s3":
        return OutputTarget(mode)
    bucket = spec.bucket or s.bucket or model_fetch.s3_endpoint_bucket(ctx.runtime.fetch_settings)
    if not bucket:
        raise InvalidInput("output.bucket", "required for s3 output (or set WORKER_OUTPUT_BUCKET, or name the bucket "
                                            "in BUCKET_ENDPOINT_URL: https://BUCKET.s3.REGION.amazonaws.com or "
                                            "https://HOST/BUCKET)")
    from .output_check import check_s3_target

    client, prefix = model_fetch.s3_client(ctx.runtime.fetch_settings), out.join_key(spec.prefix or s.prefix, ctx.job_id)
    check_s3_target(client, bucket, prefix)
    return OutputTarget(mode, bucket, prefix, client)


def _deliver(job: Job, target: OutputTarget, files: list[out.OutputFile], ctx: JobContext) -> list[dict[str, Any]]:
    s = ctx.runtime.settings.output
    if target.client is not None and target.bucket:
        return out.to_s3(files, target.client, target.bucket, target.prefix, int(job.output.expires_in or s.url_expires))
    return out.as_base64(files, s.max_base64_bytes)


def _cleanup(ctx: JobContext) -> None:
    for path in ctx.uploaded + ctx.produced:
        try:
            path.unlink()
        except OSError:
            pass
    if ctx.client is not None and ctx.prompt_id:
        try:
            ctx.client.delete_history(ctx.prompt_id)
        except WorkerError:
            pass


def prepare(job: Job, ctx: JobContext) -> Prepared:
    """Load the workflow, apply and validate params, check the output target and the input files: every
    check that needs no download, before anything is downloaded or uploaded."""
    rt = ctx.runtime
    if isinstance(job.workflow, dict) and isinstance(job.workflow.get("nodes"), list):
        ctx.client = rt.ready()  # a UI-format graph is converted with ComfyUI's /object_info
    object_info = rt.object_info(ctx.client) if ctx.client else None
    loaded = load_workflow(job.workflow or rt.settings.default_workflow, object_info=object_info,
                           workflows_dir=rt.settings.workflows_dir)
    if loaded.param_map is None and job.params:
        raise InvalidInput("params", "this workflow has no parameter map; set values in the graph itself")
    # an inline graph without params runs as sent (worker-comfyui style), even when it is a saved workflow
    param_map = loaded.param_map if isinstance(job.workflow, str) or job.params else None
    params = dict(job.params)
    if "image" in params:
        params["image"] = "start.png"  # the uploaded name replaces it once the image is in ComfyUI
    graph = apply_params(loaded.graph, param_map, params) if param_map is not None else loaded.graph
    target = output_target(job, ctx)
    input_dir, output_dir = rt.io_dirs()
    coming = {item.name for item in job.images} | ({"start.png"} if "image" in params else set())
    check_input_files(graph, object_info, {"input": input_dir, "output": output_dir,
                                           "temp": rt.settings.base_dir / "temp"}, coming)
    return Prepared(graph, param_map, params, target)


def run(job: Job, prepared: Prepared, inputs: InputFiles, plan: model_fetch.Plan, ctx: JobContext) -> dict[str, Any]:
    """Upload the inputs, queue the graph and follow it to the end; ComfyUI's history entry."""
    rt = ctx.runtime
    client = ctx.client = ctx.client or rt.ready()
    ctx.timings["comfyui_ready_s"] = round(time.monotonic() - ctx.started, 3)
    graph, params = prepared.graph, prepared.params
    image_name, renames = _upload_inputs(inputs, client, ctx)
    if image_name is not None and prepared.param_map is not None:  # the placeholder becomes the uploaded name
        params["image"] = image_name
        set_param(graph, prepared.param_map["params"]["image"], "image", image_name)
    graph = _rename_inputs(graph, renames)
    if rt.warmup is not None:
        rt.warmup.yield_to_job(client)  # the job goes first; the warm-up never fails it
    on_node = rt.watch_stages(graph, plan)  # reads the next stage's models while a sampler runs
    t1 = time.monotonic()
    ctx.prompt_id = client.queue_prompt(graph, api_key=job.comfy_org_api_key or rt.settings.comfy_org_api_key)
    ctx.report({"stage": "queued", "prompt_id": ctx.prompt_id})

    def on_progress(p: Progress) -> None:
        ctx.report({"stage": "sampling", "node": p.node, "value": p.value, "max": p.max})

    entry = client.follow(ctx.prompt_id, deadline=time.monotonic() + deadline_for(job, params, rt),
                          on_progress=on_progress, is_alive=rt.alive, on_node=on_node)
    ctx.timings["execution_s"] = round(time.monotonic() - t1, 3)
    comfy_s = comfy_execution_seconds(entry)
    if comfy_s is not None:
        ctx.timings["comfy_execution_s"] = comfy_s
    return entry


def deliver(job: Job, prepared: Prepared, entry: dict[str, Any], models: dict[str, Any],
            ctx: JobContext) -> dict[str, Any]:
    """Collect the outputs, send them where the job asked (base64 or S3) and build the answer."""
    loras = lora_reports.reports(entry)
    warnings = lora_reports.check(loras)  # a LoRA that applied to nothing fails the job here
    images, described = out.answer_outputs(_deliver(job, prepared.target, _collect(entry, ctx), ctx))
    ctx.timings["total_s"] = round(time.monotonic() - ctx.started, 3)
    answer: dict[str, Any] = {"status": "success", "prompt_id": ctx.prompt_id, "images": images,
                              "outputs": described, "models": models, "timings": ctx.timings}
    answer |= ({"loras": loras} if loras else {}) | ({"warnings": warnings} if warnings else {})
    out.check_answer_size(answer, ctx.runtime.settings.output.max_base64_bytes)
    return answer


def run_workflow(job: Job, ctx: JobContext) -> dict[str, Any]:
    """prepare → plan → fetch → run → deliver, each once. Nothing is downloaded or uploaded before every
    check that needs no download has passed."""
    rt = ctx.runtime
    rt.require_gpu()
    try:
        rt.start()  # boots in the background while inputs are checked and models fetched
    except ComfyNotFound:
        pass  # reported when the job first needs ComfyUI (planning asks where its models are)
    try:
        prepared = prepare(job, ctx)
        plan = plan_models(prepared.graph, ctx)
        inputs = read_inputs(job, ctx)
        models = fetch_models(plan, ctx)
        entry = run(job, prepared, inputs, plan, ctx)
        return deliver(job, prepared, entry, models, ctx)
    finally:
        _cleanup(ctx)


def run_action(job: Job, ctx: JobContext) -> dict[str, Any]:
    """``status`` / ``prefetch`` / ``verify`` / ``doctor``: the storage checks, from model_fetch."""
    rt = ctx.runtime
    fs, store = rt.fetch_settings, rt.store()
    try:
        if job.action == "status":
            answer: dict[str, Any] = {"status": "success",
                                      "files": [f.as_dict() for f in model_fetch.status(settings=fs, store=store)]}
            if rt.gpu is not None and rt.gpu.info is not None:
                answer["gpu"] = asdict(rt.gpu.info)
            return answer
        if job.action == "verify":
            results = model_fetch.verify(settings=fs, store=store)
            return {"status": "success", "files": [r.as_dict() for r in results],
                    "ok": all(r.state != "mismatch" for r in results)}
        if job.action == "doctor":
            return {"status": "success", "doctor": model_fetch.doctor(settings=fs, store=store)}
        if job.action == "prefetch":
            loaded = load_workflow(job.workflow or rt.settings.default_workflow, object_info=None,
                                   workflows_dir=rt.settings.workflows_dir)
            return {"status": "success", "models": fetch_models(plan_models(loaded.graph, ctx), ctx)}
    except model_fetch.ModelFetchError as exc:
        raise ModelsUnavailable(str(exc), fetch_code=exc.code) from None
    raise InvalidInput("action", f"unknown action {job.action!r}")


def handle(raw: Any, runtime: Runtime, report: Report | None = None, job_id: str = "local") -> dict[str, Any]:
    """Answer one job: a result dict, or ``{"error", "code", ...}``. Never raises, never hangs."""
    ctx = JobContext(runtime, report or (lambda _: None), job_id)
    try:
        job = parse_job(raw, runtime.settings)
        return run_workflow(job, ctx) if job.action == "run" else run_action(job, ctx)
    except WorkerError as exc:
        answer = exc.to_answer()
        log.warning("job %s failed: %s (%s)", job_id, answer["error"], exc.code)
        return answer
    except Exception as exc:  # noqa: BLE001 - the last line of defence: a structured answer, never a traceback
        log.exception("job %s: unexpected error", job_id)
        return WorkerError(f"internal error: {type(exc).__name__}").to_answer()
