"""``ocprobe bisect``: the published OpenClaw version where a probe's verdict changes, decided with
statistics, installs prefetched, resumable after an interrupt."""

from __future__ import annotations

import copy
import shlex
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import typer
from rich.text import Text

from ocprobe.bisect.state import DONE, INTERRUPTED, LOG_NAME, REPORT_NAME, BisectState, VersionRecord, load
from ocprobe.cli import options as o
from ocprobe.cli.common import execute, make_output
from ocprobe.defaults import DEFAULT_MESSAGE, DEFAULT_SESSION_KEY, DEFAULT_TOKEN_ENV, OPENCLAW_PREFIX
from ocprobe.errors import UsageError

if TYPE_CHECKING:
    from ocprobe.bisect.report import BisectResult
    from ocprobe.bisect.run import Installer, VersionProbe
    from ocprobe.bisect.search import Batch
    from ocprobe.models import CallRecord
    from ocprobe.output.sink import Output

# The sequential probe's options: what --scenario and --cmd replace.
SEQUENTIAL_OPTIONS = ("calls", "gap", "session_key", "message", "wait", "timeout", "latency_ms", "openclaw_config",
                      "floor_ms", "settle", "log", "log_pattern", "gate")
# What defines the probe: kept in the bisect log, so that --resume probes the rest the same way.
PROBE_OPTIONS = (*SEQUENTIAL_OPTIONS, "skip_when", "scenario", "cmd", "cmd_timeout")
# What may be given with --resume: how to run, not what to measure (and --cmd, to confirm the saved one).
RESUME_OPTIONS = ("resume", "prefetch", "json_out", "quiet", "cmd")


def bisect(
    ctx: typer.Context,
    good: Optional[str] = typer.Option(None, "--good", help="A version where the probe passes (or a dist-tag)."),
    bad: Optional[str] = typer.Option(None, "--bad", help="A version where it fails. Older than --good: the bisect looks for a fix."),
    no_prerelease: bool = typer.Option(False, "--no-prerelease", help="Leave out the prereleases (betas) between the endpoints."),
    versions: Optional[str] = typer.Option(None, "--versions", help="Bisect over these versions (comma-separated) instead of those published on npm."),
    risk: float = typer.Option(0.01, "--risk", help="Accepted chance of a wrong verdict per version, split over the batches it may get (one-sided Fisher tests against the versions already decided)."),
    max_calls: int = typer.Option(50, "--max-calls", help="Calls after which a version still undecided is UNKNOWN (skipped); also the most an endpoint gets."),
    calls: int = typer.Option(10, "-n", "--calls", help="Calls per batch; a verdict is looked for after each batch."),
    gap: float = typer.Option(0.0, "--gap", help="Seconds to wait after each reply before the next call."),
    session_key: o.SessionKey = DEFAULT_SESSION_KEY,
    message: o.Message = DEFAULT_MESSAGE,
    wait: o.Wait = o.WaitMode.final,
    timeout: o.Timeout = 30.0,
    latency_ms: o.LatencyMs = None,
    openclaw_config: o.OpenClawConfig = None,
    floor_ms: o.FloorMs = None,
    settle: o.Settle = None,
    log: o.Log = [],
    log_pattern: o.LogPattern = [],
    gate: o.Gate = [],
    skip_when: list[str] = typer.Option([], "--skip-when", help="Skip a version (as git bisect skip) when this gate holds on one of its batches, e.g. 'real.count == 0': no call got through, so the version cannot be judged here (repeatable)."),
    scenario: Optional[str] = typer.Option(None, "--scenario", help="Probe each version with this scenario file (or name) instead of the probe options; its target becomes openclaw@VERSION."),
    cmd: Optional[str] = typer.Option(None, "--cmd", help="Judge each version by this command's exit code, as git bisect run: 0 good, 125 skip, 1-127 bad, other stops. {version} is replaced; no shell (write sh -c '...' for one)."),
    cmd_timeout: float = typer.Option(1800.0, "--cmd-timeout", help="Seconds a --cmd run may take; after that it is stopped and the version skipped."),
    prefetch: bool = typer.Option(True, "--prefetch/--no-prefetch", help="Install the versions likely probed next in the background while a probe runs."),
    resume: Optional[Path] = typer.Option(None, "--resume", help="Continue the bisect in this run dir (after an interrupt) with its own settings; decided versions are not probed again."),
    run_dir: Optional[Path] = typer.Option(None, "--run-dir", help=f"Where the bisect log ({LOG_NAME}), {REPORT_NAME} and each version's gateway output go (default: a new dir in the ocprobe cache)."),
    json_out: bool = typer.Option(False, "--json", help="JSON lines on stdout (one per batch, verdict and the result) instead of text."),
    quiet: o.Quiet = False,
) -> None:
    """Exit codes: 0 first bad (or first good) version found, 1 the endpoints do not verify (or the command
    stopped the bisect), 2 usage or connection error, 3 found up to skipped or undecided versions, 130 interrupted."""
    output = make_output("-" if json_out else None, quiet)
    params = locals()
    given = _given(ctx)

    def work() -> int:
        import asyncio

        from ocprobe.bisect.run import Bisector
        from ocprobe.openclaw.installs import InstallManager

        if resume is not None:
            extra = [flag for name, flag in given if name not in RESUME_OPTIONS]
            if extra:
                raise UsageError(f"--resume continues with the settings kept in {resume / LOG_NAME}: leave out {', '.join(extra)}")
            state, directory = load(resume), resume
            if state.status == DONE:
                raise UsageError(f"the bisect in {resume} is finished: see {resume / REPORT_NAME}")
            _check_resumed_settings(state, cmd, resume)
            try:
                probe, installer = _probe(state, output)
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                raise UsageError(f"--resume {resume}: {LOG_NAME} is damaged (settings: {type(exc).__name__}: {exc})") from None
        else:
            state = _new_state(params, given)
            probe, installer = _probe(state, output)  # every probe setting is checked before the registry is asked
            directory = _plan(state, params)
        manager = InstallManager()
        bisector = Bisector(state, directory, probe, BisectView(output), installer=installer,
                            package_dir=lambda v: (i.package_dir if (i := manager.get(v)) else None), prefetch=prefetch)
        result = asyncio.run(bisector.run())
        return 3 if result.undecided else 0

    raise typer.Exit(execute(output, work))


def _check_resumed_settings(state: BisectState, cmd: str | None, resume: Path) -> None:
    """The log's settings are data; a command in them is not run on the log's word alone: the user gives
    the same --cmd again, having seen it."""
    settings = state.settings
    missing = [name for name in PROBE_OPTIONS if name not in settings]
    if missing:
        raise UsageError(f"--resume {resume}: {LOG_NAME} is damaged (settings lack {', '.join(missing)})")
    saved = settings["cmd"]
    if saved is not None and not isinstance(saved, str):
        raise UsageError(f"--resume {resume}: {LOG_NAME} is damaged (cmd is not text)")
    if saved and cmd != saved:
        raise UsageError(f"this bisect judges versions by running {saved!r}; to run it again, give the same command: "
                         f"--resume {resume} --cmd {shlex.quote(saved)} (ocprobe runs no command only because a "
                         f"log file names it)")
    if cmd and not saved:
        raise UsageError(f"--cmd: the bisect in {resume} does not run a command")


def _given(ctx: typer.Context) -> list[tuple[str, str]]:
    """(name, flag) of each option given on the command line."""
    # By the enum member's name: typer ships its own copy of click, whose ParameterSource is another class.
    return [(p.name, max(p.opts, key=len)) for p in ctx.command.params
            if p.name and getattr(ctx.get_parameter_source(p.name), "name", None) == "COMMANDLINE"]


def _new_state(params: dict[str, Any], given: Sequence[tuple[str, str]]) -> BisectState:
    if not params["good"] or not params["bad"]:
        raise UsageError("give --good VERSION and --bad VERSION (or --resume DIR)")
    if params["cmd"] and params["scenario"]:
        raise UsageError("give --cmd or --scenario, not both")
    if params["cmd"] or params["scenario"]:
        replaced = (*SEQUENTIAL_OPTIONS, "skip_when") if params["cmd"] else SEQUENTIAL_OPTIONS
        unused = [flag for name, flag in given if name in replaced]
        if unused:
            probe = "--cmd" if params["cmd"] else "--scenario"
            raise UsageError(f"{', '.join(unused)}: not with {probe}, which is the probe")
    elif "cmd_timeout" in dict(given):
        raise UsageError("--cmd-timeout applies to --cmd only")
    if not 0 < params["risk"] < 0.5:
        raise UsageError(f"--risk must be between 0 and 0.5, got {params['risk']:g}")
    if not params["calls"] <= params["max_calls"] <= 100_000:
        raise UsageError(f"--max-calls must be between -n ({params['calls']}) and 100000, got {params['max_calls']}")
    settings = {name: params[name] for name in PROBE_OPTIONS}
    settings.update(wait=params["wait"].value, openclaw_config=str(params["openclaw_config"]) if params["openclaw_config"] else None)
    return BisectState(good=params["good"], bad=params["bad"], versions=[], risk=params["risk"],
                       max_calls=params["max_calls"], exact=bool(params["cmd"]),
                       command=shlex.join(["ocprobe", *sys.argv[1:]]), settings=settings)


def _plan(state: BisectState, params: dict[str, Any]) -> Path:
    """The range to bisect, from --versions or the npm registry; the run dir."""
    from ocprobe.bisect.search import version_range
    from ocprobe.openclaw.installs import InstallManager
    from ocprobe.openclaw.semver import is_version
    from ocprobe.targets import run_dir_for

    if params["versions"] is not None:
        published = [v.strip() for v in params["versions"].split(",") if v.strip()]
        wrong = [v for v in published if not is_version(v)]
        if wrong or not published:
            raise UsageError(f"--versions takes versions like 2026.5.3, comma-separated; got {', '.join(wrong) or 'none'}")
        tags: dict[str, str] = {}
    else:
        published, tags = InstallManager().available()
    state.good, state.bad, state.versions = version_range(published, tags, state.good, state.bad,
                                                          prerelease=not params["no_prerelease"])
    return run_dir_for(params["run_dir"], f"bisect-{state.good}-{state.bad}")


def _probe(state: BisectState, output: Output) -> tuple[VersionProbe, Installer | None]:
    """The per-version probe the settings describe (checked here), and the installer it needs."""
    from ocprobe.bisect.probes import CommandProbe, GatewayProbe
    from ocprobe.engine import SequentialConfig
    from ocprobe.openclaw.installs import InstallManager, Stage
    from ocprobe.runner import log_patterns

    s = state.settings
    if s["cmd"]:
        return CommandProbe(s["cmd"], s["cmd_timeout"]), None

    def target_for(version: str) -> str:
        return f"{OPENCLAW_PREFIX}{version}"

    def on_call(record: CallRecord) -> None:
        output.call_progress(record, indent="    ")

    def redact(secrets: Sequence[str]) -> None:
        for secret in secrets:
            output.redact.add(secret)

    if s["scenario"]:
        from ocprobe.scenario import find_scenario, load_scenario

        loaded = load_scenario(find_scenario(s["scenario"]))
        if loaded.sweep is not None:
            raise UsageError(f"{loaded.path}: a sweep scenario judges points, not versions (use another mode)")
        base = copy.deepcopy(loaded.spec)
        base.target = target_for(state.good)
        probe = GatewayProbe(base, loaded.probe, target_for, patterns=loaded.patterns, gates=loaded.gates,
                             skip_when=s["skip_when"], log_paths=loaded.log_paths, on_info=output.info,
                             on_call=on_call, on_secrets=redact)
    else:
        cfg = SequentialConfig(calls=s["calls"], session_key=s["session_key"], message=s["message"], gap=s["gap"],
                               wait=s["wait"], timeout=s["timeout"], floor_ms=s["floor_ms"], settle=s["settle"])
        base = o.target_spec({"target": target_for(state.good), "token_env": DEFAULT_TOKEN_ENV, "token_file": None,
                              "allow_insecure": False, "latency_ms": s["latency_ms"],
                              "openclaw_config": Path(s["openclaw_config"]) if s["openclaw_config"] else None})
        probe = GatewayProbe(base, cfg, target_for, patterns=log_patterns(s["log_pattern"]), gates=s["gate"],
                             skip_when=s["skip_when"], log_paths=s["log"], on_info=output.info, on_call=on_call,
                             on_secrets=redact)
    manager = InstallManager()

    def install(version: str, info: Callable[[str], None]) -> object:
        def progress(v: str, stage: Stage, detail: str) -> None:
            if stage is not Stage.CACHED:  # the launch says so again; only real work is news
                info(f"prefetch {v}: {stage.value}{f' ({detail})' if detail else ''}")

        return manager.install(version, progress)

    return probe, install


class BisectView:
    """The bisect's progress and result, through the output sink: text on stderr (progress) and stdout
    (verdicts, result), or JSON lines on stdout."""

    def __init__(self, output: Output) -> None:
        self.output = output

    def info(self, message: str) -> None:
        self.output.info(message)

    def bisect_started(self, state: BisectState) -> None:
        decided = [r for r in state.records if r.verdict]
        self.output.data(
            {"record": "bisect", "good": state.good, "bad": state.bad, "versions": state.versions, "risk": state.risk,
             "max_calls": state.max_calls, "exact": state.exact, "resumed_with": len(decided)},
            f"bisect {state.good} (good) .. {state.bad} (bad): {len(state.versions)} versions in release order: "
            f"{', '.join(state.versions)}" + (f" (resumed: {len(decided)} decided)" if decided else ""))

    def version_started(self, record: VersionRecord, bounds: tuple[str, str], untested: Sequence[str]) -> None:
        from ocprobe.bisect.search import steps_left

        what = f"verifying --{record.role}" if record.role != "candidate" else "probing"
        self.output.info(f"step {record.step}: {what} {record.version}; open range {bounds[0]} .. {bounds[1]}: "
                         f"{len(untested)} untested, ~{steps_left(len(untested))} step(s) left")

    def batch_finished(self, record: VersionRecord, batch: Batch, progress: str) -> None:
        n = len(record.batches)
        self.output.data(
            {"record": "batch", "version": record.version, "batch": n, "failed": batch.failed, "trials": batch.trials,
             "calls": batch.calls, "note": batch.note, "skip": batch.skip},
            f"  {record.version} batch {n}: {batch.failed}/{batch.trials} failed  {batch.note}"
            + (f"  [{progress}]" if progress else ""))

    def version_decided(self, record: VersionRecord) -> None:
        self.output.data(
            {"record": "verdict", "version": record.version, "role": record.role, "verdict": record.verdict,
             "failed": record.counts.failed, "trials": record.counts.trials, "calls": record.calls,
             "seconds": round(record.seconds, 1), "evidence": record.evidence},
            f"{record.version}: {str(record.verdict).upper()} ({record.calls} calls, {record.seconds:.0f} s): {record.evidence}")

    def bisect_finished(self, state: BisectState, result: BisectResult | None, run_dir: Path) -> None:
        from ocprobe.bisect.report import result_line
        from ocprobe.output.sink import Mode

        resume = f"ocprobe bisect --resume {shlex.quote(str(run_dir))}"
        if result is None:
            self.output.data({"record": "bisect-end", "status": state.status, "message": state.message,
                              "run_dir": str(run_dir), "resume": resume if state.status == INTERRUPTED else None},
                             f"report: {run_dir / REPORT_NAME}")
            if state.status == INTERRUPTED:  # by Ctrl-C, or by an error (a lost target): resumable either way
                how = "interrupted" if state.message == "interrupted" else "stopped"
                self.output.warn(f"{how} after {state.calls} calls; continue with: {resume}")
            return
        summary = f"RESULT: {result_line(result)} ({state.calls} calls, {len(state.records)} versions, {state.elapsed_s:.0f} s)"
        if self.output.mode is Mode.QUIET:  # the summary line only
            self.output.console.print(Text(self.output.redact(summary)))
            return
        self.output.data(
            {"record": "bisect-result", **result.to_json(), "calls": state.calls, "elapsed_s": round(state.elapsed_s, 1),
             "run_dir": str(run_dir)},
            "\n".join([
                summary,
                *(f"changelog {v}: {len(body.splitlines())} line(s)" for v, body in result.changelog),
                *(f"  $ {line}" for line in result.git),
                f"report: {run_dir / REPORT_NAME}",
            ]))
