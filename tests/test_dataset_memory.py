"""The streaming validator keeps memory bounded on a large file.

A 1,000,000-line chat file (~155 MB) is validated with ``workers=1`` in a fresh interpreter
that reports its peak RSS (``ru_maxrss``) after importing the package and loading the
o200k_base encoding (the baseline) and after ``validate`` (the peak).

Measured on the development machine (Linux, Python 3.11, 2 cores):
file 155,674,925 bytes; baseline ~109 MiB; peak ~187 MiB; growth ~78 MiB (~80 bytes per
example: the per-example arrays, plus the transient sorted keys of duplicate detection
and of the token distribution); validate() ~15 s. The threshold below leaves ~2x margin
while still failing if, say, a per-example Python object (~100+ bytes) were kept.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

N_LINES = 1_000_000
MAX_GROWTH_MIB = 150

# On Linux the child of a fork/vfork+exec inherits its parent's RSS high-water mark
# (signal->maxrss), so a child started from a big pytest process would report pytest's
# peak as its own. The child therefore forks once more, *before* importing anything, and
# measures in the grandchild, whose ru_maxrss starts from the small launcher.
_CHILD = r"""
import os, sys

pid = os.fork()
if pid:
    _, status = os.waitpid(pid, 0)
    sys.exit(os.waitstatus_to_exitcode(status))

import json, resource, time, traceback
try:
    from finetune_sdk.data.validate import validate
    from finetune_sdk.data.tokens import counter_for, load_encoding

    load_encoding("o200k_base")
    counter_for(None)  # the counter validate() builds: warm it up before the baseline
    scale = 1 if sys.platform != "darwin" else 1024  # ru_maxrss: KiB on Linux, bytes on macOS
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale
    started = time.perf_counter()
    report = validate(sys.argv[1], workers=1)
    elapsed = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale
    print(json.dumps({"baseline_kib": baseline, "peak_kib": peak, "seconds": elapsed,
                      "examples": report.examples, "lines": report.lines, "errors": report.error_counts,
                      "warnings": report.warning_counts, "listed_warnings": len(report.warnings)}), flush=True)
    code = 0
except BaseException:
    traceback.print_exc()
    sys.stderr.flush()
    code = 1
os._exit(code)
"""


def _generate(path: Path, n: int, *, duplicates: bool = False) -> int:
    """n small valid chat lines (varied unless ``duplicates``), written in chunks; returns the size."""
    template = ('{"messages": [{"role": "system", "content": "Be brief."}, '
                '{"role": "user", "content": "What is %d + %d?"}, {"role": "assistant", "content": "%d"}]}\n')
    with path.open("w") as f:
        for start in range(0, n, 50_000):
            f.write("".join(template % (k, k % 97, k + k % 97)
                            for k in ((0 if duplicates else i) for i in range(start, min(n, start + 50_000)))))
    return path.stat().st_size


def _measure(path: Path) -> dict:
    proc = subprocess.run([sys.executable, "-c", _CHILD, str(path)],
                          capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["growth_mib"] = (result["peak_kib"] - result["baseline_kib"]) / 1024
    return result


def test_one_million_lines_with_bounded_memory(tmp_path: Path) -> None:
    path = tmp_path / "million.jsonl"
    try:
        size = _generate(path, N_LINES)
        m = _measure(path)
    finally:
        path.unlink(missing_ok=True)
    summary = (f"file {size:,} bytes; baseline {m['baseline_kib'] / 1024:.0f} MiB; peak {m['peak_kib'] / 1024:.0f} "
               f"MiB; growth {m['growth_mib']:.0f} MiB; validate {m['seconds']:.1f}s")
    print(summary)
    assert m["examples"] == N_LINES and m["lines"] == N_LINES
    assert m["errors"] == {} and m["warnings"] == {}
    assert m["growth_mib"] < MAX_GROWTH_MIB, summary


def test_one_million_duplicate_lines_with_bounded_memory(tmp_path: Path) -> None:
    path = tmp_path / "million-dups.jsonl"
    try:
        size = _generate(path, N_LINES, duplicates=True)
        m = _measure(path)
    finally:
        path.unlink(missing_ok=True)
    summary = (f"file {size:,} bytes; baseline {m['baseline_kib'] / 1024:.0f} MiB; peak {m['peak_kib'] / 1024:.0f} "
               f"MiB; growth {m['growth_mib']:.0f} MiB; validate {m['seconds']:.1f}s")
    print(summary)
    assert m["examples"] == N_LINES
    assert m["warnings"] == {"duplicate_example": N_LINES - 1}
    assert m["listed_warnings"] == 1000  # the default max_issues
    # Only max_issues warnings are listed, so duplicates should cost no more memory than distinct lines.
    assert m["growth_mib"] < MAX_GROWTH_MIB, summary
