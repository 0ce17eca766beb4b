"""Shared machinery of the benchmarks: the reference gateway as a child process, child processes timed
with their CPU usage, RSS sampling, and the statistics every figure is reported with.

Every server started here listens on 127.0.0.1 and is stopped by its own PID; every wait is bounded.
The gateway token lives in a 0600 file in the bench's temporary directory and reaches child processes
through ``$OPENCLAW_GATEWAY_TOKEN`` only; nothing here prints it.
"""

from __future__ import annotations

import importlib.util
import json
import os
import platform
import secrets
import selectors
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
TOKEN_ENV = "OPENCLAW_GATEWAY_TOKEN"
# The message every client sends: ocprobe's default template, so the provider does the same work for all.
MESSAGE = "Reply with exactly this token and nothing else: {nonce}"
GATEWAY_READY_TIMEOUT = 30.0


# -- statistics -------------------------------------------------------------------------------------
def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile, q in 0..100."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("no values")
    if len(ordered) == 1:
        return ordered[0]
    pos = (len(ordered) - 1) * q / 100.0
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


@dataclass
class Figure:
    """One measured quantity over several repetitions: reported as median and spread (min-max)."""

    name: str
    unit: str
    reps: list[float] = field(default_factory=list)
    note: str = ""

    @property
    def median(self) -> float:
        return statistics.median(self.reps)

    def to_json(self) -> dict[str, Any]:
        return {"unit": self.unit, "median": _round(self.median), "min": _round(min(self.reps)),
                "max": _round(max(self.reps)), "reps": [_round(v) for v in self.reps],
                **({"note": self.note} if self.note else {})}

    def describe(self) -> str:
        if not self.reps:
            return f"{self.name}: no data"
        spread = f"{_fmt(min(self.reps))}-{_fmt(max(self.reps))}" if len(self.reps) > 1 else "1 rep"
        return f"{self.name:<44} {_fmt(self.median):>10} {self.unit:<9} (spread {spread}, n={len(self.reps)})"


def _round(value: float) -> float:
    return round(value, 4) if abs(value) < 10 else round(value, 2)


def _fmt(value: float) -> str:
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}" if abs(value) >= 0.01 else f"{value:.2g}"


@dataclass
class Target:
    """A target of the issue: ``figure op limit``; ``met`` is None when the figure is missing."""

    description: str
    figure: str
    op: str  # "<=", ">=", "<"
    limit: float
    value: float | None = None

    @property
    def met(self) -> bool | None:
        if self.value is None:
            return None
        return {"<=": self.value <= self.limit, ">=": self.value >= self.limit, "<": self.value < self.limit}[self.op]

    def to_json(self) -> dict[str, Any]:
        return {"description": self.description, "figure": self.figure, "op": self.op, "limit": self.limit,
                "value": None if self.value is None else _round(self.value), "met": self.met}

    def describe(self) -> str:
        state = {True: "MET   ", False: "MISSED", None: "n/a   "}[self.met]
        value = "-" if self.value is None else _fmt(self.value)
        return f"  {state} {self.description} (median {value})"


# -- child processes --------------------------------------------------------------------------------
@dataclass
class ChildResult:
    returncode: int
    wall_s: float
    cpu_s: float  # user + system of the child and the descendants it reaped
    stdout: str
    stderr: str
    maxrss_kb: int


def run_child(argv: Sequence[str], *, env: Mapping[str, str] | None = None, timeout: float,
              cwd: Path | None = None) -> ChildResult:
    """Run ``argv`` to its end (killed, by its PID, past ``timeout``), timed from spawn to exit."""
    out = _tempfile("stdout")
    err = _tempfile("stderr")
    with out.open("wb") as fo, err.open("wb") as fe:
        start = time.perf_counter()
        proc = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=fo, stderr=fe,
                                env=dict(env) if env is not None else None, cwd=cwd, start_new_session=True,
                                preexec_fn=interactive_signals)
        done = threading.Event()
        timer = threading.Timer(timeout, _terminate_then_kill, args=(proc.pid, done))
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:  # Ctrl-C: stop the child as a timeout would, then go on
            _terminate_then_kill(proc.pid, done, grace=5.0, reap=True)
            raise
        finally:
            done.set()
            timer.cancel()
        wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here: keep Popen from waiting again
    result = ChildResult(
        returncode=proc.returncode, wall_s=wall, cpu_s=usage.ru_utime + usage.ru_stime,
        stdout=out.read_text(errors="replace"), stderr=err.read_text(errors="replace"),
        maxrss_kb=usage.ru_maxrss,
    )
    out.unlink(missing_ok=True)
    err.unlink(missing_ok=True)
    if result.returncode < 0 or wall >= timeout:
        raise BenchError(f"{Path(argv[0]).name} {' '.join(argv[1:4])}... did not finish within {timeout:g}s")
    return result


def interactive_signals() -> None:
    """In the child, before exec: SIGINT as in a terminal. A bench started in the background (``&``) has it
    ignored, and its children would inherit that; but Python, and asyncio.run() with it, behave differently
    when SIGINT is ignored (asyncio then installs no handler of its own), so a child measures what a user's
    interactive run does only with SIGINT at its default."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _terminate_then_kill(pid: int, done: threading.Event, grace: float = 5.0, reap: bool = False) -> None:
    """SIGTERM first (ocprobe then stops the gateway it started, by its PID), SIGKILL after ``grace``."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    if reap:  # the caller is not waiting for the child: wait here, bounded
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            if os.waitpid(pid, os.WNOHANG)[0]:
                return
            time.sleep(0.05)
    elif done.wait(grace):
        return
    _kill_group(pid)
    if reap:
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)  # its own session: the group is the child and what it started
    except ProcessLookupError:
        pass


_WORKDIR: Path | None = None


def set_workdir(path: Path) -> None:
    global _WORKDIR
    _WORKDIR = path


def workdir() -> Path:
    assert _WORKDIR is not None, "set_workdir first"
    return _WORKDIR


def _tempfile(kind: str) -> Path:
    return workdir() / f"child-{os.getpid()}-{time.monotonic_ns()}.{kind}"


class BenchError(Exception):
    pass


def child_env(token: str | None = None, **extra: str) -> dict[str, str]:
    """The environment of every child: ocprobe's cache in the bench's temporary directory, no proxies."""
    env = {k: v for k, v in os.environ.items() if k.lower() not in ("http_proxy", "https_proxy", "all_proxy")}
    env["OCPROBE_CACHE"] = str(workdir() / "cache")
    env["PYTHONUNBUFFERED"] = "1"
    env.pop(TOKEN_ENV, None)
    if token is not None:
        env[TOKEN_ENV] = token
    env.update(extra)
    return env


def ocprobe_argv(*args: str) -> list[str]:
    """The installed console script when there is one next to this interpreter, else ``-m ocprobe``."""
    script = Path(sys.executable).parent / "ocprobe"
    if script.exists():
        return [str(script), *args]
    return [sys.executable, "-m", "ocprobe", *args]


def json_lines(text: str) -> list[dict[str, Any]]:
    records = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                records.append(json.loads(line))
            except ValueError:
                continue
    return records


# -- the reference gateway ----------------------------------------------------------------------------
class Gateway:
    """``ocprobe gateway serve`` with its own reference provider, on a free loopback port."""

    def __init__(self, *, latency_ms: float = 0.0, name: str = "gateway", timed: bool = False) -> None:
        self.latency_ms = latency_ms
        self.name = name
        self.timed = timed  # bench/timed_gateway.py: the same gateway, timing each chat.send server-side
        self.timing_file: Path | None = None
        self.argv_prefix: list[str] | None = None  # e.g. a profiler: PREFIX -m ocprobe gateway serve ...
        self.token = secrets.token_hex(24)
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.http_url = ""

    def __enter__(self) -> Gateway:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        wd = workdir() / self.name
        wd.mkdir(parents=True, exist_ok=True)
        token_file = wd / "gateway.token"
        fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(self.token + "\n")
        if self.timed:
            self.timing_file = wd / "timings.jsonl"
            argv = [sys.executable, str(BENCH_DIR / "timed_gateway.py"), "--latency-ms", f"{self.latency_ms:g}",
                    "--token-file", str(token_file), "--timing-file", str(self.timing_file),
                    "--log-file", str(wd / "gateway-error.log")]
        elif self.argv_prefix:
            argv = [*self.argv_prefix, "-m", "ocprobe", "gateway", "serve", "--json", "--port", "0", "--latency-ms",
                    f"{self.latency_ms:g}", "--token-file", str(token_file), "--log-file", str(wd / "gateway-error.log")]
        else:
            argv = ocprobe_argv("gateway", "serve", "--json", "--port", "0", "--latency-ms", f"{self.latency_ms:g}",
                                "--token-file", str(token_file), "--log-file", str(wd / "gateway-error.log"))
        self._stderr = (wd / "stderr.log").open("wb")
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self._stderr,
                                     env=child_env(), start_new_session=True, preexec_fn=interactive_signals)
        ready = self._ready_line()
        self.url = str(ready["url"])
        self.http_url = str(ready["http_url"])
        if not self.url.startswith("ws://127.0.0.1:"):
            self.stop()
            raise BenchError(f"the gateway does not listen on loopback: {self.url}")

    def _ready_line(self) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdout is not None
        deadline = time.monotonic() + GATEWAY_READY_TIMEOUT
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        buf = b""
        try:
            while time.monotonic() < deadline:
                if not sel.select(timeout=0.2):
                    if self.proc.poll() is not None:
                        break
                    continue
                chunk = os.read(self.proc.stdout.fileno(), 65536)
                if not chunk:
                    break
                buf += chunk
                for line in buf.decode(errors="replace").splitlines():
                    try:
                        data = json.loads(line)
                    except ValueError:
                        continue
                    if isinstance(data, dict) and data.get("event") == "ready":
                        return data
        finally:
            sel.close()
        self.stop()
        raise BenchError(f"the reference gateway did not report ready within {GATEWAY_READY_TIMEOUT:g}s")

    def server_ms(self) -> dict[str, float]:
        """Timed gateway: the server-side time of every chat.send so far, by run id."""
        if self.timing_file is None or not self.timing_file.exists():
            return {}
        return {r["run_id"]: r["server_ms"] for r in json_lines(self.timing_file.read_text())}

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # its own PID; it stops its provider itself
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        if proc.stdout is not None:
            proc.stdout.close()
        self._stderr.close()


# -- memory -----------------------------------------------------------------------------------------
def proc_status_kb(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) of a live process, in kB (Linux /proc; psutil elsewhere)."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        if sys.platform.startswith("linux"):
            return {}
        return _psutil_status(pid)
    except OSError:
        return {}
    values = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0])
    return values


def _psutil_status(pid: int) -> dict[str, int]:
    try:
        import psutil  # only off Linux
    except ImportError:
        return {}
    try:
        info = psutil.Process(pid).memory_info()
    except psutil.Error:
        return {}
    return {"VmRSS": info.rss // 1024, "VmHWM": getattr(info, "peak_wset", info.rss) // 1024}


def memory_supported() -> bool:
    if Path(f"/proc/{os.getpid()}/status").exists():
        return True
    return importlib.util.find_spec("psutil") is not None


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gb = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    try:
        load = os.getloadavg()
    except OSError:
        load = None
    return {
        "cpu": cpu, "cpus": os.cpu_count(), "mem_gb": mem_gb, "os": platform.platform(),
        "python": platform.python_version(), "loadavg_at_start": [round(x, 2) for x in load] if load else None,
    }
