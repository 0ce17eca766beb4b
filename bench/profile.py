#!/usr/bin/env python3
"""Profiles of ocprobe's hot paths with pyinstrument (``pip install -e '.[bench]'``), each written as a text
call tree (``NAME.txt``) and a flat own-time table (``NAME.flat.txt``) into ``--out`` (default
bench/profiles/, not committed):

    python bench/profile.py                  # every scenario
    python bench/profile.py engine relay     # some

Scenarios:
  engine    ocprobe sequential against an external reference gateway (ws transport, no witness):
            the probe engine and the ws transport per call
  embedded  ocprobe concurrent -c 1 --sessions 1000, embedded (the provider-witness in process, the
            gateway child's output pumped and watched): what a long run costs ocprobe per call
  relay     ocprobe concurrent -c 8 over the relay transport (httpx)
  logwatch  ocprobe sequential with --log on a file another process appends 2,000 lines/s to
  gateway   the reference gateway itself (ocprobe gateway serve) under a closed loop of 8 raw clients
"""

from __future__ import annotations

import argparse
import pstats
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import BENCH_DIR, Gateway, child_env, run_child, set_workdir, workdir  # noqa: E402

SCENARIOS = ("engine", "embedded", "relay", "logwatch", "gateway")


def pyinstrument(out: Path, name: str, module_args: list[str], *, env: dict[str, str], timeout: float = 600) -> None:
    """Run ``python -m MODULE ARGS`` under pyinstrument, writing the tree and a flat table."""
    session = out / f"{name}.pyisession"
    argv = [sys.executable, "-m", "pyinstrument", "-i", "0.0005", "-r", "pyisession", "-o", str(session), "-m", *module_args]
    result = run_child(argv, env=env, timeout=timeout, cwd=workdir())
    if result.returncode not in (0, 1):
        raise SystemExit(f"{name}: exit {result.returncode}: {result.stderr[-500:]}")
    render(session, out, name)


def render(session: Path, out: Path, name: str) -> None:
    subprocess.run([sys.executable, "-m", "pyinstrument", "--load", str(session), "-r", "text", "--no-color",
                    "-p", "processor_options.filter_threshold=0.005", "-o", str(out / f"{name}.txt")], check=True)
    stats_file = out / f"{name}.pstats"
    subprocess.run([sys.executable, "-m", "pyinstrument", "--load", str(session), "-r", "pstats",
                    "-o", str(stats_file)], check=True)
    with (out / f"{name}.flat.txt").open("w") as f:
        stats = pstats.Stats(str(stats_file), stream=f)
        stats.sort_stats("tottime").print_stats(45)
    print(f"  {name}: {out / (name + '.txt')}, {out / (name + '.flat.txt')}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("scenario", nargs="*", help=f"some of: {' '.join(SCENARIOS)} (default: all)")
    p.add_argument("--out", type=Path, default=BENCH_DIR / "profiles")
    p.add_argument("--calls", type=int, default=2000, help="calls of the engine/embedded/logwatch scenarios")
    args = p.parse_args()
    chosen = args.scenario or list(SCENARIOS)
    unknown = sorted(set(chosen) - set(SCENARIOS))
    if unknown:
        p.error(f"unknown scenario(s) {', '.join(unknown)} (choose from {', '.join(SCENARIOS)})")
    args.out.mkdir(parents=True, exist_ok=True)
    set_workdir(Path(tempfile.mkdtemp(prefix="ocprobe-profile-")))
    n = str(args.calls)
    if "embedded" in chosen:
        pyinstrument(args.out, "embedded", ["ocprobe", "concurrent", "-n", n, "-c", "1", "--sessions", "1000",
                                             "--latency-ms", "0", "--quiet"], env=child_env())
    with Gateway(latency_ms=0, name="profile-gateway") as gw:
        env = child_env(gw.token)
        if "engine" in chosen:
            pyinstrument(args.out, "engine", ["ocprobe", "sequential", "-n", n, "--target", gw.url,
                                              "--session-key", "profile-engine", "--quiet"], env=env)
        if "relay" in chosen:
            pyinstrument(args.out, "relay", ["ocprobe", "concurrent", "-n", "100000", "-c", "8", "--sessions", "64",
                                             "--duration", "8", "--target", f"{gw.http_url}/chat.send",
                                             "--transport", "relay", "--session-key", "profile-relay", "--quiet"], env=env)
        if "logwatch" in chosen:
            log_file = workdir() / "flood.log"
            log_file.write_text("")
            writer = subprocess.Popen([sys.executable, "-c", (
                "import sys, time\n"
                "f = open(sys.argv[1], 'a')\n"
                "end = time.monotonic() + 120\n"
                "i = 0\n"
                "while time.monotonic() < end:\n"
                "    f.write('{\"time\": \"2026-05-04T10:00:00.000Z\", \"message\": \"routine line %d\"}\\n' % i)\n"
                "    i += 1\n"
                "    if i % 20 == 0:\n"
                "        f.flush(); time.sleep(0.01)\n"), str(log_file)])
            try:
                time.sleep(0.3)
                pyinstrument(args.out, "logwatch", ["ocprobe", "sequential", "-n", n, "--target", gw.url,
                                                    "--session-key", "profile-logwatch", "--log", str(log_file),
                                                    "--quiet"], env=env)
            finally:
                writer.terminate()  # its own PID
                writer.wait(10)
    if "gateway" in chosen:
        # The gateway under pyinstrument: it stops on SIGTERM (its own PID), which writes the session.
        session = args.out / "gateway.pyisession"
        gw = Gateway(latency_ms=0, name="profiled-gateway")
        gw.argv_prefix = [sys.executable, "-m", "pyinstrument", "-i", "0.0005", "-r", "pyisession", "-o", str(session)]
        with gw:
            result = run_child([sys.executable, str(BENCH_DIR / "rawws.py"), "closed", "--url", gw.url, "--concurrency",
                                "8", "--sessions", "64", "--duration", "8", "--prefix", "profile-gw"],
                               env=child_env(gw.token), timeout=120)
            print(f"  gateway load: {result.stdout.strip()[:120]}")
        for _ in range(100):
            if session.exists():
                break
            time.sleep(0.1)
        render(session, args.out, "gateway")


if __name__ == "__main__":
    main()
