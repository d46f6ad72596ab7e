"""Benchmark `runreport extract` against the plain way, as whole processes.

    python tests/perf/bench_extract.py --runs 120000
    python tests/perf/bench_extract.py --runs-list 30000,120000 --repeat 3 --http --json b.json

A script, not a test (pytest collects test_*.py only). For each store size it:

1. takes a generated store of N runs across ~50 experiments from the cache
   (tests/perf/.cache/, keyed by N and the generator's version; see make_store.py) and
   works on a copy of it;
2. times, alternating `--repeat` times, the plain way (`mlflow.search_runs(
   search_all_experiments=True, run_view_type=ViewType.ALL)` into a DataFrame, in a child
   python) and `runreport extract --tracking-uri sqlite:///... --db ...`;
3. with `--http`, does the same against a real `mlflow server --workers 2` on the copy;
4. adds 1% new runs (started now) and times `runreport extract --incremental`;
5. times `runreport report` on the result ("n/a" while the CLI lacks the command);
6. with `--via sql`, also times a bare copy of the store's tables into DuckDB (the
   physical limit, tests/perf/bare_copy.py), `runreport extract --via sql` (full, on the
   store before the 1% is added) and its incremental after it.

Memory, two ways, for each child:
- peak tree MB: the memory of the child and all its descendants together (runreport's
  extract workers are processes), sampled from /proc 20 times a second: their private
  RSS (RssAnon + RssShmem) summed, plus the largest file-backed RSS (RssFile: libraries
  every process maps, in memory once). The memory targets use it: it is what the job
  needs from the machine.
- peak RSS MB: the largest single process's peak, from GNU time's %M (its wait4 rusage),
  else from a small python wrapper that waits for the child. Never os.wait4 on a child of
  this script: Linux starts a child's ru_maxrss at its parent's peak RSS (exec copies it),
  and this script holds MLflow and DuckDB; nor getrusage(RUSAGE_CHILDREN), which is a
  maximum over every child so far.
The mlflow server's own memory is not counted: only the client's is.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a plain script

from tests.perf.make_store import CACHE_DIR, add_runs, cached_store, sqlite_uri

PLAIN_WAY = """
import json, sys
import mlflow
from mlflow.entities import ViewType
mlflow.set_tracking_uri(sys.argv[1])
df = mlflow.search_runs(search_all_experiments=True, run_view_type=ViewType.ALL)
print(json.dumps({"runs": len(df)}))
"""
GNU_TIME = Path("/usr/bin/time")
# Used when GNU time is missing: its own small peak is the floor of the child's ru_maxrss.
PEAK_WRAPPER = """
import os, subprocess, sys
child = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(child.pid, 0)
open(sys.argv[1], "w").write(str(usage.ru_maxrss))
sys.exit(os.waitstatus_to_exitcode(status))
"""
SAMPLE_SECONDS = 0.05
SQL_TARGETS = {
    "sql_throughput": 10.0,  # --via sql runs/s over the plain way's, at least
    "sql_over_bare": 3.0,  # --via sql time over the bare copy's, at most
    "sql_memory": 1.0,  # --via sql peak over the search_runs extract's, at most
    "sql_incremental": 0.05,  # --via sql incremental time over a full search_runs one, at most
}
PERF_DIR = Path(__file__).resolve().parent
TARGETS = {
    "throughput": 1.5,  # runreport runs/s over the plain way's, at least
    "memory": 3.0,  # the plain way's peak over runreport's, at least
    "incremental": 0.05,  # incremental time over full time, at most
    "report_seconds": 10.0,  # at most
    "flatness": 1.3,  # runreport's peak at the largest size over the smallest, at most
}


@dataclass
class Measurement:
    runs_in_store: int
    transport: str  # sqlite or http
    step: str  # plain, full, incremental, report
    attempt: int
    seconds: float | None = None
    peak_rss_mb: float | None = None  # the largest single process
    peak_tree_mb: float | None = None  # the child and its descendants together
    runs_obtained: int | None = None
    runs_expected: int | None = None
    exit_code: int | None = None
    note: str = ""

    @property
    def succeeded(self) -> bool:
        return self.exit_code == 0

    @property
    def ok_seconds(self) -> float | None:
        """The wall time of a child that succeeded; a failed one has no time worth comparing."""
        return self.seconds if self.succeeded else None

    @property
    def runs_per_second(self) -> float | None:
        if (
            self.step in ("plain", "full", "sql", "bare")
            and self.ok_seconds
            and self.runs_obtained is not None
        ):
            return self.runs_obtained / self.ok_seconds
        return None


@dataclass
class SizeResult:
    runs: int
    generation_seconds: float | None  # None: the store came from the cache
    increment_runs: int
    measurements: list[Measurement] = field(default_factory=list)


@dataclass
class ChildResult:
    exit_code: int
    seconds: float
    peak_rss_mb: float | None
    peak_tree_mb: float
    stdout: str
    stderr: str


def process_tree(root: int) -> list[int]:
    """root and every living descendant, from /proc/<pid>/task/<tid>/children."""
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        for children in Path(f"/proc/{pid}/task").glob("*/children"):
            with contextlib.suppress(OSError):  # the process ended meanwhile
                todo.extend(int(child) for child in children.read_text().split())
    return found


def rss_kb(pid: int) -> tuple[int, int]:
    """(private, file-backed) resident kB of one process; (0, 0) once it has ended."""
    fields: dict[str, int] = {}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            name, _, rest = line.partition(":")
            if name in ("RssAnon", "RssShmem", "RssFile"):
                fields[name] = int(rest.split()[0])
    return fields.get("RssAnon", 0) + fields.get("RssShmem", 0), fields.get("RssFile", 0)


def tree_kb(root: int) -> int:
    """Private memory of the whole tree, plus the shared libraries once."""
    sizes = [rss_kb(pid) for pid in process_tree(root)]
    return sum(private for private, _ in sizes) + max((file for _, file in sizes), default=0)


class TreeSampler(threading.Thread):
    """The peak memory of a process tree (see tree_kb), sampled until stopped."""

    def __init__(self, root: int) -> None:
        super().__init__(daemon=True)
        self.root = root
        self.peak_kb = 0
        self.stopped = threading.Event()

    def run(self) -> None:
        while True:
            self.peak_kb = max(self.peak_kb, tree_kb(self.root))
            if self.stopped.wait(SAMPLE_SECONDS):
                return

    def stop(self) -> float:
        self.stopped.set()
        self.join()
        return self.peak_kb / 1024


def run_child(argv: list[str], cwd: Path) -> ChildResult:
    """Run one child to its end: wall time, largest single-process peak, peak tree RSS."""
    with tempfile.TemporaryDirectory(prefix="runreport-bench-child-") as folder:
        peak_file = Path(folder) / "peak"
        if GNU_TIME.exists():
            wrapped = [str(GNU_TIME), "-f", "%M", "-o", str(peak_file), *argv]
        else:
            wrapped = [sys.executable, "-c", PEAK_WRAPPER, str(peak_file), *argv]
        with (Path(folder) / "stderr").open("w+b") as err:
            began = time.perf_counter()
            process = subprocess.Popen(wrapped, cwd=cwd, stdout=subprocess.PIPE, stderr=err)
            sampler = TreeSampler(process.pid)
            sampler.start()
            out, _ = process.communicate()
            seconds = time.perf_counter() - began
            peak_tree_mb = sampler.stop()
            err.seek(0)
            stderr = err.read().decode(errors="replace")
        # GNU time writes "Command exited with non-zero status N" first when it fails.
        written = peak_file.read_text().split() if peak_file.exists() else []
        peak_rss_mb = int(written[-1]) / 1024 if written and written[-1].isdigit() else None
    return ChildResult(
        process.returncode, seconds, peak_rss_mb, peak_tree_mb, out.decode(errors="replace"),
        stderr,
    )  # fmt: skip


def runreport_argv() -> list[str]:
    """The console script of the venv that runs this benchmark."""
    script = Path(sys.executable).parent / "runreport"
    return [str(script)] if script.exists() else [sys.executable, "-m", "etl"]


def store_run_count(store: Path) -> int:
    con = sqlite3.connect(store)
    try:
        return con.execute("select count(*) from runs").fetchone()[0]
    finally:
        con.close()


def warehouse_run_count(db: Path) -> int | None:
    import duckdb

    if not db.exists():
        return None
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute("select count(*) from runs").fetchone()[0]
    finally:
        con.close()


def failure_note(child: ChildResult) -> str:
    lines = [line for line in child.stderr.strip().splitlines() if line.strip()]
    return f"exit {child.exit_code}: {lines[-1][:160] if lines else 'no stderr'}"


def record_child(m: Measurement, child: ChildResult) -> None:
    m.seconds, m.exit_code = child.seconds, child.exit_code
    m.peak_rss_mb, m.peak_tree_mb = child.peak_rss_mb, child.peak_tree_mb


def measure_plain(uri: str, work: Path, m: Measurement) -> Measurement:
    child = run_child([sys.executable, "-c", PLAIN_WAY, uri], work)
    record_child(m, child)
    if child.exit_code == 0:
        m.runs_obtained = json.loads(child.stdout.strip().splitlines()[-1])["runs"]
    else:
        m.note = failure_note(child)
    return m


def measure_runreport(args: list[str], db: Path | None, work: Path, m: Measurement) -> Measurement:
    """`runreport ARGS...` as a child; `--script FILE ARGS...` runs that python file instead."""
    argv = [sys.executable, *args[1:]] if args[:1] == ["--script"] else [*runreport_argv(), *args]
    child = run_child(argv, work)
    record_child(m, child)
    if child.exit_code != 0:
        m.note = failure_note(child)
    elif db is not None:
        m.runs_obtained = warehouse_run_count(db)
    return m


def cli_has_command(name: str) -> bool:
    done = subprocess.run(
        [*runreport_argv(), name, "--help"], capture_output=True, check=False, timeout=120
    )
    return done.returncode == 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def mlflow_server(store: Path, work: Path) -> Iterator[str]:
    """A real `mlflow server --workers 2` on 127.0.0.1 serving the store; stopped on exit."""
    port = free_port()
    mlflow_bin = Path(sys.executable).parent / "mlflow"
    log_file = (work / "mlflow-server.log").open("wb")
    process = subprocess.Popen(
        [
            str(mlflow_bin), "server", "--backend-store-uri", sqlite_uri(store),
            "--host", "127.0.0.1", "--port", str(port), "--workers", "2",
        ],
        cwd=work,
        stdout=log_file,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: its workers stop with it
    )  # fmt: skip
    uri = f"http://127.0.0.1:{port}"
    try:
        wait_for_health(uri, process)
        warm_up(uri, process.pid)
        yield uri
    finally:
        stop_process_group(process)
        log_file.close()


def wait_for_health(uri: str, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"mlflow server exited with {process.returncode}; see its log")
        try:
            with urllib.request.urlopen(f"{uri}/health", timeout=2) as reply:
                if reply.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"mlflow server did not answer /health within {timeout:.0f} s")


def warm_up(uri: str, server_pid: int) -> None:
    """The server keeps starting things after /health answers (its job schedulers); the
    first client measured would pay for that. Send each worker a request, then wait until
    the server's processes are idle."""
    body = json.dumps({"experiment_ids": ["0"], "max_results": 10, "run_view_type": "ALL"})
    for _ in range(4):
        request = urllib.request.Request(
            f"{uri}/api/2.0/mlflow/runs/search",
            data=body.encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as reply:
            reply.read()
    wait_until_idle(server_pid)


def cpu_ticks(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total


def wait_until_idle(root: int, quiet_seconds: int = 3, timeout: float = 90) -> None:
    """Until the tree used under 5% of a core for `quiet_seconds` seconds in a row."""
    ticks_per_second = os.sysconf("SC_CLK_TCK")
    quiet, deadline = 0, time.monotonic() + timeout
    before = cpu_ticks(process_tree(root))
    while quiet < quiet_seconds and time.monotonic() < deadline:
        time.sleep(1)
        now = cpu_ticks(process_tree(root))
        quiet = quiet + 1 if now - before < 0.05 * ticks_per_second else 0
        before = now


def stop_process_group(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)  # the group this script started, by its id
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def sql_argv(uri: str, db: Path, since_ms: int | None = None) -> list[str]:
    """The arguments after the runreport command of an extract --via sql (full, or with
    since_ms an incremental one)."""
    mode = "--full" if since_ms is None else "--incremental"
    return ["extract", "--via", "sql", mode, "--tracking-uri", uri, "--db", str(db)]


def measure_sql_full(
    result: SizeResult, store: Path, db: Path, expected: int, work: Path, repeat: int
) -> int:
    """bare copy, sql, bare copy, sql...; returns when the last sql extract started (ms)."""
    started_ms = 0
    for attempt in range(1, repeat + 1):
        bare = Measurement(result.runs, "sqlite", "bare", attempt, runs_expected=expected)
        copy = work / "bare.duckdb"
        copy.unlink(missing_ok=True)
        child = run_child(
            [sys.executable, str(PERF_DIR / "bare_copy.py"), str(store), str(copy)], work
        )
        record_child(bare, child)
        bare.runs_obtained = warehouse_run_count(copy) if child.exit_code == 0 else None
        bare.note = "" if child.exit_code == 0 else failure_note(child)
        result.measurements.append(show(bare))
        sql = Measurement(result.runs, "sqlite", "sql", attempt, runs_expected=expected)
        started_ms = int(time.time() * 1000)
        result.measurements.append(
            show(measure_runreport(sql_argv(sqlite_uri(store), db), db, work, sql))
        )
    return started_ms


def bench_size(
    runs: int,
    experiments: int,
    repeat: int,
    http: bool,
    http_workers: int,
    keep: bool,
    report: bool,
    via: str = "search_runs",
) -> SizeResult:
    store_cached, generated_in = cached_store(runs, experiments)
    took = "from the cache" if generated_in is None else f"generated in {generated_in:.1f} s"
    print(f"store of {runs:,} runs: {store_cached} ({took})", flush=True)
    work = Path(tempfile.mkdtemp(prefix=f"runreport-bench-{runs}-"))
    try:
        store = work / "mlflow.db"
        shutil.copyfile(store_cached, store)
        result = SizeResult(runs, generated_in, max(1, runs // 100))
        expected = store_run_count(store)
        db = work / "runs.duckdb"
        uri = sqlite_uri(store)
        alternate(result, "sqlite", uri, db, expected, work, repeat)
        sql_db, sql_started_ms = work / "sql.duckdb", 0
        if via == "sql":
            sql_started_ms = measure_sql_full(result, store, sql_db, expected, work, repeat)
        if http:
            print("starting mlflow server (--workers 2)...", flush=True)
            with mlflow_server(store, work) as http_uri:
                http_db = work / "http.duckdb"
                extra = ["--workers", str(http_workers)]
                alternate(result, "http", http_uri, http_db, expected, work, repeat, extra)
        added = add_runs(store, result.increment_runs, seed=runs)
        print(f"added {result.increment_runs:,} runs in {added.seconds:.1f} s", flush=True)
        step = Measurement(runs, "sqlite", "incremental", 1, runs_expected=expected + added.runs)
        args = ["extract", "--incremental", "--tracking-uri", uri, "--db", str(db)]
        result.measurements.append(show(measure_runreport(args, db, work, step)))
        if via == "sql":
            step = Measurement(
                runs, "sqlite", "sql-incremental", 1, runs_expected=expected + added.runs
            )
            since = sql_started_ms - 3_600_000  # the default overlap of one hour
            result.measurements.append(
                show(measure_runreport(sql_argv(uri, sql_db, since), sql_db, work, step))
            )
        step = Measurement(runs, "sqlite", "report", 1)
        if report:
            out = work / "report"
            args = ["report", "--db", str(db), "--out", str(out)]
            result.measurements.append(show(measure_runreport(args, None, work, step)))
        else:
            step.note = "n/a: the CLI has no report command"
            result.measurements.append(show(step))
        return result
    finally:
        if keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def alternate(
    result: SizeResult,
    transport: str,
    uri: str,
    db: Path,
    expected: int,
    work: Path,
    repeat: int,
    extra: list[str] | None = None,
) -> None:
    """plain, runreport, plain, runreport...: drift on the machine hits both alike."""
    for attempt in range(1, repeat + 1):
        plain = Measurement(result.runs, transport, "plain", attempt, runs_expected=expected)
        result.measurements.append(show(measure_plain(uri, work, plain)))
        full = Measurement(result.runs, transport, "full", attempt, runs_expected=expected)
        args = ["extract", "--full", "--tracking-uri", uri, "--db", str(db), *(extra or [])]
        result.measurements.append(show(measure_runreport(args, db, work, full)))


def show(m: Measurement) -> Measurement:
    print("  " + " | ".join(row_cells(m)), flush=True)
    return m


def fmt(value: float | int | None, pattern: str) -> str:
    return "n/a" if value is None else format(value, pattern)


STEP_LEGEND = (
    "plain: mlflow.search_runs(search_all_experiments=True, run_view_type=ALL) into a DataFrame"
    " | full: runreport extract --full | incremental: runreport extract --incremental after"
    " adding 1% new runs | report: runreport report | bare: the store's tables copied as they"
    " are into DuckDB | sql: extract --via sql | sql-incremental: its incremental after the 1%"
)


def row_cells(m: Measurement) -> list[str]:
    obtained = fmt(m.runs_obtained, ",")
    if m.runs_expected is not None and m.runs_obtained is not None:
        obtained += f" / {m.runs_expected:,}"
    return [
        f"{m.runs_in_store:,}", m.transport, m.step, str(m.attempt), fmt(m.seconds, ".1f"),
        fmt(m.runs_per_second, ",.0f"), fmt(m.peak_tree_mb, ",.0f"), fmt(m.peak_rss_mb, ",.0f"),
        obtained, m.note,
    ]  # fmt: skip


HEADERS = [
    "store", "via", "step", "#", "wall s", "runs/s", "peak tree MB", "peak RSS MB",
    "runs got / in store", "note",
]  # fmt: skip


def median_of(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def ratio(top: float | None, bottom: float | None) -> float | None:
    return top / bottom if top is not None and bottom else None


def summarise(results: list[SizeResult]) -> dict:
    """Medians per size and transport, the ratios, and each target's verdict."""
    summary: dict = {"sizes": {}, "targets": []}
    for result in results:
        ms = result.measurements
        size: dict = {}
        for transport in ("sqlite", "http"):
            plain = [m for m in ms if m.transport == transport and m.step == "plain"]
            full = [m for m in ms if m.transport == transport and m.step == "full"]
            if not plain and not full:
                continue
            size[transport] = {
                "plain_seconds": median_of([m.ok_seconds for m in plain]),
                "full_seconds": median_of([m.ok_seconds for m in full]),
                "plain_runs_per_second": median_of([m.runs_per_second for m in plain]),
                "full_runs_per_second": median_of([m.runs_per_second for m in full]),
                "plain_peak_mb": median_of([m.peak_tree_mb for m in plain]),
                "full_peak_mb": median_of([m.peak_tree_mb for m in full]),
                "plain_largest_process_mb": median_of([m.peak_rss_mb for m in plain]),
                "full_largest_process_mb": median_of([m.peak_rss_mb for m in full]),
                "every_run_extracted": bool(full)
                and all(m.runs_obtained == m.runs_expected for m in full),
            }
            s = size[transport]
            s["throughput_ratio"] = ratio(s["full_runs_per_second"], s["plain_runs_per_second"])
            s["memory_ratio"] = ratio(s["plain_peak_mb"], s["full_peak_mb"])
        incremental = next(m for m in ms if m.step == "incremental")
        report = next(m for m in ms if m.step == "report")
        size["incremental_seconds"] = incremental.ok_seconds
        size["incremental_every_run"] = incremental.runs_obtained == incremental.runs_expected
        size["incremental_ratio"] = ratio(incremental.ok_seconds, size["sqlite"]["full_seconds"])
        size["incremental_failed"] = not incremental.succeeded
        size["report_seconds"] = report.ok_seconds
        size.update(sql_summary(ms, size))
        # a report that ran and failed is a failure; a CLI without the command is n/a
        size["report_failed"] = report.exit_code not in (0, None)
        summary["sizes"][result.runs] = size
    summary["targets"] = verdicts(summary["sizes"])
    return summary


def sql_summary(ms: list[Measurement], size: dict) -> dict:
    """The --via sql numbers of one size, with their ratios to the plain way, the bare copy
    and the search_runs extract; empty without --via sql."""
    sql = [m for m in ms if m.step == "sql"]
    if not sql:
        return {}
    bare = [m for m in ms if m.step == "bare"]
    incremental = next(m for m in ms if m.step == "sql-incremental")
    sqlite = size["sqlite"]
    found = {
        "sql_seconds": median_of([m.ok_seconds for m in sql]),
        "sql_runs_per_second": median_of([m.runs_per_second for m in sql]),
        "sql_peak_mb": median_of([m.peak_tree_mb for m in sql]),
        "bare_seconds": median_of([m.ok_seconds for m in bare]),
        "bare_peak_mb": median_of([m.peak_tree_mb for m in bare]),
        "sql_every_run": all(m.runs_obtained == m.runs_expected for m in sql),
        "sql_incremental_seconds": incremental.ok_seconds,
        "sql_incremental_every_run": incremental.runs_obtained == incremental.runs_expected,
    }
    found["sql_throughput_ratio"] = ratio(
        found["sql_runs_per_second"], sqlite["plain_runs_per_second"]
    )
    found["sql_over_bare"] = ratio(found["sql_seconds"], found["bare_seconds"])
    found["sql_memory_ratio"] = ratio(found["sql_peak_mb"], sqlite["full_peak_mb"])
    found["sql_incremental_over_full_search_runs"] = ratio(
        incremental.ok_seconds, sqlite["full_seconds"]
    )
    found["sql_incremental_over_full_sql"] = ratio(incremental.ok_seconds, found["sql_seconds"])
    return found


def sql_verdicts(runs: int, size: dict) -> list[dict]:
    if "sql_seconds" not in size:
        return []
    at = f"{runs:,} via sql"
    checks = [
        ("every run extracted", size["sql_every_run"] and size["sql_incremental_every_run"],
         None, "all"),
        ("throughput sql/plain", size["sql_throughput_ratio"], ("sql_throughput", True), ">="),
        ("time sql/bare copy", size["sql_over_bare"], ("sql_over_bare", False), "<="),
        ("peak tree memory sql/search_runs", size["sql_memory_ratio"], ("sql_memory", False),
         "<="),
        ("incremental sql / full search_runs", size["sql_incremental_over_full_search_runs"],
         ("sql_incremental", False), "<="),
        ("incremental sql / full sql (reported)", size["sql_incremental_over_full_sql"], None,
         "-"),
    ]  # fmt: skip
    lines = []
    for name, value, target, sign in checks:
        if target is None:
            passed = value if isinstance(value, bool) else None
            bound = sign
        else:
            key, at_least = target
            passed = judge(value, SQL_TARGETS[key], at_least)
            bound = f"{sign} {SQL_TARGETS[key]}"
        lines.append({"target": f"{name}, {at}", "value": value, "bound": bound, "passed": passed})
    return lines


def judge(value: float | None, bound: float, at_least: bool, failed: bool = False) -> bool | None:
    """Pass, fail, or None (n/a) when nothing was measured; a failed child fails."""
    if failed:
        return False
    if value is None:
        return None
    return value >= bound if at_least else value <= bound


def verdicts(sizes: dict) -> list[dict]:
    """One line per target and size: what was measured, the bound, pass/fail/n/a."""
    lines = []

    def add(name: str, value: float | bool | None, passed: bool | None, bound: str) -> None:
        lines.append({"target": name, "value": value, "bound": bound, "passed": passed})

    for runs, size in sizes.items():
        for transport in ("sqlite", "http"):
            if transport not in size:
                continue
            s, at = size[transport], f"{runs:,} via {transport}"
            every = s["every_run_extracted"]
            add(f"every run extracted, {at}", every, every, "all")
            t, bound = s["throughput_ratio"], TARGETS["throughput"]
            add(f"throughput runreport/plain, {at}", t, judge(t, bound, True), f">= {bound}x")
            mem, bound = s["memory_ratio"], TARGETS["memory"]
            add(
                f"peak tree memory plain/runreport, {at}",
                mem,
                judge(mem, bound, True),
                f">= {bound}x",
            )
        every = size["incremental_every_run"]
        add(f"every run after the 1% increment, {runs:,}", every, every, "all")
        inc, bound = size["incremental_ratio"], TARGETS["incremental"]
        passed = judge(inc, bound, False, size["incremental_failed"])
        add(f"incremental/full time, {runs:,}", inc, passed, f"<= {bound:.0%}")
        rep, bound = size["report_seconds"], TARGETS["report_seconds"]
        passed = judge(rep, bound - 1e-9, False, size["report_failed"])
        add(f"report seconds, {runs:,}", rep, passed, f"< {bound:.0f} s")
        lines.extend(sql_verdicts(runs, size))
    if len(sizes) > 1:
        smallest, largest = min(sizes), max(sizes)
        flat = ratio(
            sizes[largest]["sqlite"]["full_peak_mb"], sizes[smallest]["sqlite"]["full_peak_mb"]
        )
        bound = TARGETS["flatness"]
        add(
            f"runreport peak tree memory at {largest:,} / at {smallest:,}",
            flat,
            judge(flat, bound, False),
            f"<= {bound}x",
        )
    return lines


def print_results(results: list[SizeResult], summary: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=max(shutil.get_terminal_size().columns, 150))
    table = Table(title="runreport vs the plain way, each a whole process", caption=STEP_LEGEND)
    for header in HEADERS:
        table.add_column(header, justify="left" if header in ("via", "step", "note") else "right")
    for result in results:
        for m in result.measurements:
            table.add_row(*row_cells(m))
    console.print(table)
    for result in results:
        if result.generation_seconds is not None:
            console.print(f"generated {result.runs:,} runs in {result.generation_seconds:.1f} s")
    targets = Table(title="targets")
    targets.caption = "ratios of the medians of --repeat attempts"
    for header in ("target", "measured", "bound", "verdict"):
        targets.add_column(header)
    for line in summary["targets"]:
        value = line["value"]
        shown = (
            "n/a" if value is None else f"{value:.2f}" if isinstance(value, float) else str(value)
        )
        verdict = {True: "PASS", False: "FAIL", None: "n/a"}[line["passed"]]
        targets.add_row(line["target"], shown, line["bound"], verdict)
    console.print(targets)


def parse_sizes(args: argparse.Namespace) -> list[int]:
    if args.runs_list:
        return sorted({int(part.replace("_", "")) for part in args.runs_list.split(",")})
    return [args.runs]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10_000, help="Runs in the store.")
    parser.add_argument("--runs-list", help="Several store sizes, e.g. 30000,120000.")
    parser.add_argument("--experiments", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=1, help="plain/runreport pairs per size.")
    parser.add_argument("--http", action="store_true", help="Also through a real mlflow server.")
    parser.add_argument(
        "--http-workers",
        type=int,
        default=2,
        help="runreport extract --workers over http, where processes overlap network waits.",
    )
    parser.add_argument(
        "--via",
        choices=["search_runs", "sql"],
        default="search_runs",
        help="sql: also time a bare copy of the tables and extract --via sql (full, incremental).",
    )
    parser.add_argument("--json", type=Path, help="Write the numbers to this file.")
    parser.add_argument("--keep", action="store_true", help="Keep the work folders.")
    args = parser.parse_args()
    print(f"cache: {CACHE_DIR}; runreport: {' '.join(runreport_argv())}", flush=True)
    report = cli_has_command("report")
    results = [
        bench_size(
            runs,
            args.experiments,
            args.repeat,
            args.http,
            args.http_workers,
            args.keep,
            report,
            args.via,
        )
        for runs in parse_sizes(args)
    ]
    summary = summarise(results)
    print_results(results, summary)
    if args.json:
        payload = {
            "results": [
                {**asdict(r), "measurements": [measurement_dict(m) for m in r.measurements]}
                for r in results
            ],
            "summary": summary,
            "targets": {**TARGETS, **SQL_TARGETS},
        }
        args.json.write_text(json.dumps(payload, indent=2, default=str))
        print(f"wrote {args.json}")


def measurement_dict(m: Measurement) -> dict:
    return {**asdict(m), "runs_per_second": m.runs_per_second}


if __name__ == "__main__":
    main()
