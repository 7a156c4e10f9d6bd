"""Write benchmark sections into docs/benchmarks.md, each stamped with machine, date and command."""

from __future__ import annotations

import datetime as dt
import os
import platform
import re
import sys
from pathlib import Path

DOC = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
HEADER = """# Benchmarks

Written by `make bench` (`python -m bench [NAME ...]`); each section carries the machine, the date and
the command that produced it. Goals are checked here, never as timed assertions in tests. Comparisons
are run side by side in one run and reported as ratios.
"""


def machine() -> str:
    """One line: CPU model, cores, memory, Python, OS."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))
        mem = f", {kb / 1024 / 1024:.0f} GiB RAM"
    except (OSError, AttributeError):
        pass
    return f"{cpu}, {os.cpu_count()} cores{mem}, Python {platform.python_version()}, {platform.system()} {platform.release()}"


def stamp(command: str) -> str:
    return f"*Machine:* {machine()}  \n*Date:* {dt.datetime.now().strftime('%Y-%m-%d %H:%M')}  \n*Command:* `{command.strip()}`\n"


def replace_section(doc: Path, kind: str, name: str, title: str, body: str, command: str, header: str) -> None:
    """Replace (or append) the section marked ``<!-- kind:name -->`` in ``doc``, stamped with machine, date and
    command; a missing doc starts from ``header``."""
    text = doc.read_text() if doc.is_file() else header
    block = f"<!-- {kind}:{name} -->\n## {title}\n\n{stamp(command)}\n{body.strip()}\n<!-- /{kind}:{name} -->"
    pattern = re.compile(rf"<!-- {kind}:{re.escape(name)} -->.*?<!-- /{kind}:{re.escape(name)} -->", re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(text)


def write_section(name: str, title: str, body: str, command: str | None = None) -> None:
    """Replace (or append) the section ``name`` in docs/benchmarks.md."""
    replace_section(DOC, "bench", name, title, body, command or "python -m bench " + " ".join(sys.argv[1:]), HEADER)


def table(headers: list[str], rows: list[list[object]]) -> str:
    out = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    out += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]
    return "\n".join(out)


def verdict(ok: bool) -> str:
    return "met" if ok else "**not met**"
