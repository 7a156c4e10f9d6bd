"""``model-fetch``: status, plan, pull, verify, doctor, paths, gc, push.

Exit codes: 0 success, 1 failure (one red line on stderr), 2 usage error. ``--json`` prints one
JSON document on stdout (shapes in docs/model-fetch.md, section CLI). Progress goes to stderr: bars on a TTY, plain
lines otherwise.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from . import defaults
from .config import Settings
from ._sizes import human_bytes
from .errors import IntegrityError, ModelFetchError, SettingError, UnknownModelError, UsageError, os_error
from ._manifest import Manifest, ModelEntry, load_manifest

if TYPE_CHECKING:
    from collections.abc import Callable

    from ._comfy_search_paths import ComfyFolders
from ._store import Store


SCOPE_RULE = """Options go before or after VERB, in any order.

Which files a verb without names covers (status, pull, verify, push, doctor): the files of the
manifests you name (--manifest, else MODEL_FETCH_MANIFEST); only when you name none, the built-in
WAN 2.2 manifest. Names (pull NAME, verify NAME, push NAME) and workflows (plan, pull --workflow)
resolve across every loaded manifest: the built-in one (unless --no-default-manifest) and yours."""


VERBS = ("status", "plan", "pull", "verify", "doctor", "paths", "gc", "push")
#: options of one verb (True: takes a value) that may also come before the verb
VERB_OPTIONS = {"--workflow": True, "--remote": False, "--output": True, "--to": True, "--partials": False}
#: options every verb takes that take a value
COMMON_VALUES = ("--manifest", "--models-dir", "--comfyui-dir", "--connections")


class _Parser(argparse.ArgumentParser):
    """argparse that raises ``UsageError`` (code ``usage``, exit 2) instead of printing and exiting."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see `model-fetch --help`)")


def hoist_verb_options(argv: list[str]) -> list[str]:
    """``model-fetch --workflow x.json plan`` as ``model-fetch plan --workflow x.json``: a verb's own options
    given before the verb move after it (the verb's parser then accepts or refuses them)."""
    moved: list[str] = []
    before: list[str] = []
    i = 0
    while i < len(argv):
        token = argv[i]
        name = token.split("=", 1)[0]
        if token in VERBS:
            return before + [token] + moved + argv[i + 1:]
        takes = 1 if "=" not in token and (VERB_OPTIONS.get(name) or name in COMMON_VALUES) else 0
        (moved if name in VERB_OPTIONS else before).extend(argv[i:i + 1 + takes])
        i += 1 + takes
    return argv


def _common(late: bool) -> _Parser:
    """Options every verb takes. ``late``: the copy after VERB, which must not overwrite earlier values."""
    common = _Parser(add_help=False)
    d = (lambda value: argparse.SUPPRESS) if late else (lambda value: value)
    pre = "late_" if late else ""
    common.add_argument("--manifest", action="append", type=Path, default=d([]), metavar="FILE", dest=pre + "manifest",
                        help="your manifest (YAML/JSON), repeatable; named manifests define what a verb without "
                             "names covers")
    common.add_argument("--no-default-manifest", action="store_true", default=d(False), dest=pre + "no_default_manifest",
                        help="do not load the built-in WAN 2.2 manifest at all")
    common.add_argument("--models-dir", action="append", type=Path, default=d([]), metavar="DIR", dest=pre + "models_dir",
                        help="models root (repeatable; the first writable one receives downloads)")
    common.add_argument("--comfyui-dir", type=Path, default=d(None), metavar="DIR", dest=pre + "comfyui_dir",
                        help="a ComfyUI install: files its models/ folder and extra_model_paths.yaml hold count as "
                             "present (default COMFYUI_DIR)")
    common.add_argument("--connections", type=int, default=d(None), metavar="N", dest=pre + "connections",
                        help="parallel connections per file (default 8)")
    common.add_argument("--offline", action="store_true", default=d(False), dest=pre + "offline",
                        help="no network at all (also HF_HUB_OFFLINE=1)")
    common.add_argument("--json", action="store_true", default=d(False), dest=pre + "json",
                        help="machine-readable output on stdout")
    common.add_argument("-v", "--verbose", action="store_true", default=d(False), dest=pre + "verbose")
    return common


def _parser() -> argparse.ArgumentParser:
    late = _common(late=True)
    p = _Parser(prog="model-fetch", description=__doc__.split("\n\n")[0], epilog=SCOPE_RULE,
                                parents=[_common(late=False)], formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="verb", metavar="VERB")
    sub.required = True
    sp = sub.add_parser("status", parents=[late], help="state of every manifest file (no network unless --remote)")
    sp.add_argument("--remote", action="store_true", help="also ask each S3 mirror whether it holds the file")
    sp.set_defaults(func=cmd_status)
    sp = sub.add_parser("plan", parents=[late], help="model files a workflow needs")
    sp.add_argument("--workflow", type=Path, required=True)
    sp.set_defaults(func=cmd_plan)
    sp = sub.add_parser("pull", parents=[late], help="download missing files (your manifests', named, or a workflow's)")
    sp.add_argument("names", nargs="*", metavar="NAME")
    sp.add_argument("--workflow", type=Path)
    sp.set_defaults(func=cmd_pull)
    sp = sub.add_parser("verify", parents=[late], help="rehash present files")
    sp.add_argument("names", nargs="*", metavar="NAME")
    sp.set_defaults(func=cmd_verify)
    sp = sub.add_parser("doctor", parents=[late], help="check environment, roots, space, volume, offline readiness")
    sp.set_defaults(func=cmd_doctor)
    sp = sub.add_parser("paths", parents=[late], help="write ComfyUI's extra_model_paths.yaml")
    sp.add_argument("--output", type=Path, default=Path("extra_model_paths.yaml"))
    sp.set_defaults(func=cmd_paths)
    sp = sub.add_parser("gc", parents=[late], help="remove stale leases and stamps, quarantined and unresumable "
                                                   "files; resumable partial downloads only with --partials")
    sp.add_argument("--partials", action="store_true",
                    help="also remove resumable partial downloads (.part with a journal); their progress is lost")
    sp.set_defaults(func=cmd_gc)
    sp = sub.add_parser("push", parents=[late], help="upload local files to the S3 mirror")
    sp.add_argument("names", nargs="*", metavar="NAME")
    sp.add_argument("--to", required=False, metavar="s3://BUCKET/PREFIX",
                    help="mirror location (default MODEL_FETCH_MIRROR_WRITEBACK)")
    sp.set_defaults(func=cmd_push)
    return p


def _merge_late(args: argparse.Namespace) -> argparse.Namespace:
    """Fold options given after VERB into those given before it (lists add up, later scalars win)."""
    for key, value in list(vars(args).items()):
        if not key.startswith("late_"):
            continue
        name = key[len("late_"):]
        delattr(args, key)
        if isinstance(value, list):
            setattr(args, name, getattr(args, name) + value)
        elif isinstance(value, bool):
            setattr(args, name, getattr(args, name) or value)
        elif value is not None:
            setattr(args, name, value)
    return args


def _settings(args: argparse.Namespace) -> Settings:
    s = Settings.from_env()
    changes: dict[str, Any] = {}
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


def _scope(settings: Settings, args: argparse.Namespace, manifest: Manifest) -> Manifest:
    """The files a verb without names covers: the named manifests' (CLI, else environment), or the built-in one."""
    named = args.manifest or list(settings.manifests)
    return load_manifest(named, include_default=False) if named else manifest


def _select(manifest: Manifest, scope: Manifest, names: list[str]) -> list[ModelEntry]:
    """The named entries (looked up in every loaded manifest), or all of ``scope`` when none is named."""
    if not names:
        return list(scope)
    chosen, unknown = [], []
    for name in names:
        entry = manifest.find(name)
        (chosen.append(entry) if entry else unknown.append(name))
    if unknown:
        raise UnknownName(unknown)
    return chosen


class UnknownName(UnknownModelError):
    """``pull NAME``/``verify NAME``/``push NAME`` with a name no loaded manifest lists."""

    def __init__(self, names: list[str]) -> None:
        ModelFetchError.__init__(self, f"not in any manifest: {', '.join(names)} (see `model-fetch status`, "
                                       "or add it to a manifest with --manifest)")
        self.missing = [(name, "") for name in names]


class Mismatch(IntegrityError):
    """``verify``: files on disk whose sha256 is not the expected one."""

    def __init__(self, names: list[str], files: dict[str, Any]) -> None:
        # with --json the one document holds the files too
        ModelFetchError.__init__(self, f"sha256 mismatch: {', '.join(names)} (run `model-fetch pull` to replace)",
                                 **files)
        self.name, self.expected, self.actual = ", ".join(names), "", ""


def _emit(args: argparse.Namespace, data: object, human: str) -> None:
    print(json.dumps(data, indent=2) if args.json else human)


@dataclass
class Invocation:
    """One run of the command, what every verb works with: settings (environment + options), the loaded manifests, the store, and
    ``scope``, the files a verb without names covers."""

    args: argparse.Namespace
    settings: Settings
    manifest: Manifest
    store: Store
    scope: Manifest

    @classmethod
    def of(cls, args: argparse.Namespace) -> "Invocation":
        settings, manifest, store = defaults(_settings(args))
        return cls(args, settings, manifest, store, _scope(settings, args, manifest))

    def select(self, names: list[str]) -> list[ModelEntry]:
        return _select(self.manifest, self.scope, names)

    def comfyui_search_paths(self) -> ComfyFolders | None:
        """Where a ComfyUI install (``--comfyui-dir``, else ``COMFYUI_DIR``) finds models, or None."""
        from ._comfy_search_paths import ComfyFolders

        directory = self.args.comfyui_dir or self.settings.comfyui_dir
        if directory is None:
            return None
        if not (directory / "main.py").is_file():
            if self.args.comfyui_dir is None:
                raise SettingError(f"COMFYUI_DIR={str(directory)!r}: expected a ComfyUI install (no main.py there)")
            raise UsageError(f"--comfyui-dir {directory}: not a ComfyUI install (no main.py there)")
        return ComfyFolders.of_install(directory)


def cmd_status(inv: Invocation) -> int:
    from ._inventory import status

    files = status(inv.scope, inv.store, inv.settings, remote=inv.args.remote, comfy=inv.comfyui_search_paths())
    lines = [f"{f.state:<11} {f.entry.directory}/{f.entry.name}" + (f"  [{', '.join(f.tiers)}]" if f.tiers else "")
             + (f"  {human_bytes(f.done)} of {human_bytes(f.size)}" if f.state in ("partial", "downloading") else "")
             + (f"  ({human_bytes(f.size)})" if f.state == "present" else "")
             + (f"  (ComfyUI: {f.path})" if f.comfyui else "") for f in files]
    _emit(inv.args, {"files": [f.as_dict() for f in files]}, "\n".join(lines) or "manifest is empty")
    return 0


def cmd_plan(inv: Invocation) -> int:
    from ._planner import plan_workflow

    p = plan_workflow(inv.args.workflow, inv.manifest, inv.store, inv.comfyui_search_paths(), inv.settings)
    lines = [f"{'present' if i.present else 'missing':<8} {i.directory}/{i.name}"
             + ("" if i.present else f"  <- {i.entry.url if i.entry else 'no source'}")
             + (f"  (ComfyUI: {i.path or 'listed'})" if i.outside_store else "") for i in p.items]
    _emit(inv.args, {"workflow": str(inv.args.workflow), "files": p.as_dict()}, "\n".join(lines))
    return 0


def cmd_pull(inv: Invocation) -> int:
    from ._ensure import Fetched, ensure_entries
    from ._planner import plan_workflow
    from ._progress_view import progress_renderer
    from ._s3 import writeback_hook

    comfy = inv.comfyui_search_paths()
    entries = (plan_workflow(inv.args.workflow, inv.manifest, inv.store, comfy, inv.settings).entries() if inv.args.workflow
               else inv.select(inv.args.names))
    in_comfy = [Fetched(e, path, None, "present", "comfyui") for e in entries if comfy is not None
                and inv.store.find(e) is None and (path := comfy.find(e.name, e.directory)) is not None]
    entries = [e for e in entries if e not in {f.entry for f in in_comfy}]
    hook = writeback_hook(inv.settings)
    with progress_renderer() as on_progress:
        report = ensure_entries(entries, inv.store, inv.settings, on_progress, hook)
    report.files[:0] = in_comfy
    if hook is not None and hook.threads:
        print("waiting for mirror write-back to finish…", file=sys.stderr)
        for r in hook.wait():
            print(f"write-back {r['state']}: {r['url']}", file=sys.stderr)
    files = [{"name": f.entry.name, "directory": f.entry.directory, "path": str(f.path), "action": f.action,
              "sha256": f.sha256, "source": f.source, "fetched_bytes": f.fetched_bytes} for f in report.files]
    _emit(inv.args, {"files": files, "downloaded_bytes": report.downloaded_bytes},
          "\n".join(f"{f['action']:<10} {f['path']}" for f in files))
    return 0


def cmd_verify(inv: Invocation) -> int:
    from ._verifier import verify

    results = verify(inv.select(inv.args.names), inv.store)
    data = {"files": [r.as_dict() for r in results]}
    bad = [r for r in results if r.state == "mismatch"]
    if not (bad and inv.args.json):  # with --json a mismatch answers one document: the files and the error
        _emit(inv.args, data, "\n".join(f"{r.state:<9} {r.entry.directory}/{r.entry.name}" for r in results))
    if bad:
        raise Mismatch([r.entry.name for r in bad], data)
    return 0


def cmd_doctor(inv: Invocation) -> int:
    from ._diagnostics import doctor

    report = doctor(inv.settings, inv.scope, inv.store)
    human = [f"write root: {report['write_root']}", f"network volume: {report['network_volume']}",
             f"offline ready: {report['offline']['ready']}"]
    human += [f"root {r['path']}: exists={r['exists']} writable={r['writable']} free={human_bytes(r['free_bytes'])}"
              for r in report["roots"]]
    human += [f"env {k}={v}" for k, v in report["env"].items() if v != "unset"]
    human += [f"problem: {p}" for p in report["problems"]]
    _emit(inv.args, report, "\n".join(human))
    return 0 if report["ok"] else 1


def cmd_paths(inv: Invocation) -> int:
    from ._extra_model_paths import write_extra_model_paths

    path = write_extra_model_paths(inv.store, inv.args.output)
    _emit(inv.args, {"path": str(path), "roots": [str(r) for r in inv.store.roots]}, str(path))
    return 0


def cmd_gc(inv: Invocation) -> int:
    from ._cleanup import gc

    report = gc(inv.store, inv.settings.lease_ttl, partials=inv.args.partials)
    kept = (f"; kept {len(report.kept_partial)} resumable partial download(s) (`gc --partials` removes them)"
            if report.kept_partial else "")
    _emit(inv.args, report.as_dict(),
          f"removed {len(report.removed)} files, freed {human_bytes(report.freed_bytes)}{kept}")
    return 0


def cmd_push(inv: Invocation) -> int:
    from ._s3 import push

    target = inv.args.to or inv.settings.mirror_writeback
    if not target:
        raise UsageError("push needs --to s3://BUCKET/PREFIX or MODEL_FETCH_MIRROR_WRITEBACK")
    results = push(inv.select(inv.args.names), inv.store, inv.settings, target)
    _emit(inv.args, {"files": results}, "\n".join(f"{r['state']:<9} {r['url']}" for r in results))
    return 0


def run(args: argparse.Namespace) -> int:
    """Run the verb ``args`` names (its ``cmd_*`` function)."""
    func: Callable[[Invocation], int] = args.func
    return func(Invocation.of(args))


def _fail(exc: ModelFetchError, as_json: bool) -> int:
    """One line ``error: …`` on stderr (red on a terminal); with ``--json`` one document on stdout. Exit 2 for
    usage errors, else 1."""
    red, reset = ("\033[31m", "\033[0m") if sys.stderr.isatty() else ("", "")
    message = " ".join(str(exc).split())  # one line, whatever the cause's message holds
    print(f"{red}error: {message}{reset}", file=sys.stderr)
    if as_json:
        print(json.dumps(exc.to_answer(), indent=2))
    return 2 if isinstance(exc, UsageError) else 1


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = _merge_late(_parser().parse_args(hoist_verb_options(argv)))
    except UsageError as exc:
        return _fail(exc, "--json" in argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, stream=sys.stderr,
                        format="model-fetch: %(levelname)s: %(message)s")
    try:
        return run(args)
    except ModelFetchError as exc:
        return _fail(exc, args.json)
    except OSError as exc:
        return _fail(os_error(exc), args.json)
    except KeyboardInterrupt:
        print("interrupted; partial downloads resume on the next pull", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - never a traceback for the user; -v logs it
        logging.getLogger("model_fetch").debug("unexpected error", exc_info=True)
        return _fail(ModelFetchError(f"unexpected {type(exc).__name__}: {exc} (run with -v for the traceback)"),
                     args.json)


if __name__ == "__main__":
    sys.exit(main())
