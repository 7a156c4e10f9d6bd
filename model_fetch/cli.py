"""``model-fetch``: status, plan, pull, verify, doctor, paths, gc, push.

Exit codes: 0 success, 1 failure (one red line on stderr), 2 usage error. ``--json`` prints one
JSON document on stdout (shapes in docs/cli.md). Progress goes to stderr: bars on a TTY, plain
lines otherwise.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import replace
from pathlib import Path

from . import defaults
from .config import Settings
from .errors import ModelFetchError, human_bytes
from .manifest import ModelEntry


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--manifest", action="append", type=Path, default=[], metavar="FILE",
                        help="extra manifest (YAML/JSON), merged after the default one; repeatable")
    common.add_argument("--no-default-manifest", action="store_true", help="do not load the built-in WAN 2.2 manifest")
    common.add_argument("--models-dir", action="append", type=Path, default=[], metavar="DIR",
                        help="models root (repeatable; the first writable one receives downloads)")
    common.add_argument("--connections", type=int, metavar="N", help="parallel connections per file (default 8)")
    common.add_argument("--offline", action="store_true", help="no network at all (also HF_HUB_OFFLINE=1)")
    common.add_argument("--json", action="store_true", help="machine-readable output on stdout")
    common.add_argument("-v", "--verbose", action="store_true")

    p = argparse.ArgumentParser(prog="model-fetch", description=__doc__.split("\n\n")[0], parents=[common])
    sub = p.add_subparsers(dest="verb", metavar="VERB")
    sub.required = True
    sp = sub.add_parser("status", parents=[common], help="state of every manifest file (no network unless --remote)")
    sp.add_argument("--remote", action="store_true", help="also ask each S3 mirror whether it holds the file")
    sp = sub.add_parser("plan", parents=[common], help="model files a workflow needs")
    sp.add_argument("--workflow", type=Path, required=True)
    sp = sub.add_parser("pull", parents=[common], help="download missing files (all, named, or a workflow's)")
    sp.add_argument("names", nargs="*", metavar="NAME")
    sp.add_argument("--workflow", type=Path)
    sp = sub.add_parser("verify", parents=[common], help="rehash present files")
    sp.add_argument("names", nargs="*", metavar="NAME")
    sub.add_parser("doctor", parents=[common], help="check environment, roots, space, volume, offline readiness")
    sp = sub.add_parser("paths", parents=[common], help="write ComfyUI's extra_model_paths.yaml")
    sp.add_argument("--output", type=Path, default=Path("extra_model_paths.yaml"))
    sub.add_parser("gc", parents=[common], help="remove orphaned .part files, stale leases and stamps")
    sp = sub.add_parser("push", parents=[common], help="upload local files to the S3 mirror")
    sp.add_argument("names", nargs="*", metavar="NAME")
    sp.add_argument("--to", required=False, metavar="s3://BUCKET/PREFIX",
                    help="mirror location (default MODEL_FETCH_MIRROR_WRITEBACK)")
    return p


def _settings(args: argparse.Namespace) -> Settings:
    s = Settings.from_env()
    changes: dict = {}
    if args.manifest:
        changes["manifests"] = list(s.manifests) + args.manifest
    if args.no_default_manifest:
        changes["include_default_manifest"] = False
    if args.models_dir:
        changes["models_dirs"] = args.models_dir
    if args.connections:
        changes["connections"] = max(1, args.connections)
    if args.offline:
        changes["offline"] = True
    return replace(s, **changes) if changes else s


def _select(manifest, names: list[str]) -> list[ModelEntry]:
    if not names:
        return list(manifest)
    chosen, unknown = [], []
    for name in names:
        entry = manifest.find(name)
        (chosen.append(entry) if entry else unknown.append(name))
    if unknown:
        raise ModelFetchError(f"not in any manifest: {', '.join(unknown)} (see `model-fetch status`)")
    return chosen


def _emit(args, data, human: str) -> None:
    print(json.dumps(data, indent=2) if args.json else human)


def run(args: argparse.Namespace) -> int:
    settings = _settings(args)
    settings, manifest, store = defaults(settings)
    verb = args.verb
    if verb == "status":
        from .inventory import status

        files = status(manifest, store, settings, remote=args.remote)
        lines = [f"{f.state:<11} {f.entry.directory}/{f.entry.name}" + (f"  [{', '.join(f.tiers)}]" if f.tiers else "")
                 + (f"  {human_bytes(f.done)} of {human_bytes(f.size)}" if f.state in ("partial", "downloading") else "")
                 + (f"  ({human_bytes(f.size)})" if f.state == "present" else "") for f in files]
        _emit(args, {"files": [f.as_dict() for f in files]}, "\n".join(lines) or "manifest is empty")
        return 0
    if verb == "plan":
        from .planner import plan_workflow

        p = plan_workflow(args.workflow, manifest, store)
        lines = [f"{'present' if i.present else 'missing':<8} {i.directory}/{i.name}" + ("" if i.present else f"  <- {i.entry.url}")
                 for i in p.items]
        _emit(args, {"workflow": str(args.workflow), "files": p.as_dict()}, "\n".join(lines))
        return 0
    if verb == "pull":
        from .fetch import ensure_entries
        from .planner import plan_workflow
        from .progress_view import progress_renderer
        from .writeback import writeback_hook

        entries = plan_workflow(args.workflow, manifest, store).entries() if args.workflow else _select(manifest, args.names)
        hook = writeback_hook(settings)
        with progress_renderer() as on_progress:
            report = ensure_entries(entries, store, settings, on_progress, hook)
        if hook is not None and hook.threads:
            print("waiting for mirror write-back to finish…", file=sys.stderr)
            for r in hook.wait():
                print(f"write-back {r['state']}: {r['url']}", file=sys.stderr)
        files = [{"name": f.entry.name, "directory": f.entry.directory, "path": str(f.path), "action": f.action,
                  "sha256": f.sha256, "source": f.source, "fetched_bytes": f.fetched_bytes} for f in report.files]
        _emit(args, {"files": files, "downloaded_bytes": report.downloaded_bytes},
              "\n".join(f"{f['action']:<10} {f['path']}" for f in files))
        return 0
    if verb == "verify":
        from .verifier import verify

        results = verify(_select(manifest, args.names), store)
        _emit(args, {"files": [r.as_dict() for r in results]},
              "\n".join(f"{r.state:<9} {r.entry.directory}/{r.entry.name}" for r in results))
        bad = [r for r in results if r.state == "mismatch"]
        if bad:
            raise ModelFetchError(f"sha256 mismatch: {', '.join(r.entry.name for r in bad)} (run `model-fetch pull` to replace)")
        return 0
    if verb == "doctor":
        from .diagnostics import doctor

        report = doctor(settings, manifest, store)
        human = [f"write root: {report['write_root']}", f"network volume: {report['network_volume']}",
                 f"offline ready: {report['offline']['ready']}"]
        human += [f"root {r['path']}: exists={r['exists']} writable={r['writable']} free={human_bytes(r['free_bytes'])}"
                  for r in report["roots"]]
        human += [f"env {k}={v}" for k, v in report["env"].items() if v != "unset"]
        human += [f"problem: {p}" for p in report["problems"]]
        _emit(args, report, "\n".join(human))
        return 0 if report["ok"] else 1
    if verb == "paths":
        from .comfy_paths import write_extra_model_paths

        path = write_extra_model_paths(store, args.output)
        _emit(args, {"path": str(path), "roots": [str(r) for r in store.roots]}, str(path))
        return 0
    if verb == "gc":
        from .cleanup import gc

        report = gc(store, settings.lease_ttl)
        _emit(args, report.as_dict(), f"removed {len(report.removed)} files, freed {human_bytes(report.freed_bytes)}")
        return 0
    if verb == "push":
        from .s3 import push

        target = args.to or settings.mirror_writeback
        if not target:
            raise ModelFetchError("push needs --to s3://BUCKET/PREFIX or MODEL_FETCH_MIRROR_WRITEBACK")
        results = push(_select(manifest, args.names), store, settings, target)
        _emit(args, {"files": results}, "\n".join(f"{r['state']:<9} {r['url']}" for r in results))
        return 0
    raise AssertionError(verb)


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, stream=sys.stderr,
                        format="model-fetch: %(levelname)s: %(message)s")
    try:
        return run(args)
    except ModelFetchError as exc:
        red, reset = ("\033[31m", "\033[0m") if sys.stderr.isatty() else ("", "")
        print(f"{red}error: {exc}{reset}", file=sys.stderr)
        if args.json:
            print(json.dumps({"error": str(exc), "code": exc.code}))
        return 1
    except KeyboardInterrupt:
        print("interrupted; partial downloads resume on the next pull", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
