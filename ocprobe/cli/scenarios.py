"""``ocprobe run FILE`` and ``ocprobe scenarios list``: probes kept as TOML scenario files."""

from __future__ import annotations

from typing import Optional

import typer

from ocprobe.cli import options as o
from ocprobe.cli.common import execute, make_output, report_writer
from ocprobe.errors import UsageError

app = typer.Typer(help="Scenario files shipped with ocprobe and in ./scenarios.", no_args_is_help=True)


def run(
    scenario: str = typer.Argument(..., help="A scenario file, or the name of one in ./scenarios or ocprobe's own (see 'ocprobe scenarios list')."),
    set_: list[str] = typer.Option([], "--set", help="Override a key, e.g. --set probe.calls=20, --set target=ws://127.0.0.1:18789, --set gateway.teardown_ms=50 (repeatable)."),
    check: bool = typer.Option(False, "--check", help="Only check the file (and overrides): exit 0 if it would run, 2 with the first error."),
    token_env: Optional[str] = typer.Option(None, "--token-env", help="Environment variable holding the gateway token (a scenario file cannot name one)."),
    token_file: o.TokenFile = None,
    allow_insecure: o.AllowInsecure = False,
    allow_remote: bool = typer.Option(False, "--allow-remote", help="Accept a target the file names that is not on this machine (the gateway token goes there)."),
    report: o.Report = None,
    json_path: o.JsonOut = None,
    quiet: o.Quiet = False,
    run_dir: o.RunDir = None,
) -> None:
    """Run a scenario file. Exit codes: those of its mode (sequential, concurrent, steps: as for sequential,
    where a scripted call passes when its class is one its step expects; sweep: as for sweep)."""
    output = make_output(json_path, quiet)

    def work() -> int:
        import asyncio

        from ocprobe.scenario import find_scenario, load_scenario, run_scenario

        # What only the user may say (where the token comes from, clear text) joins the overrides.
        mine = [*set_, *([f"transport.token_env={token_env}"] if token_env else []),
                *([f"transport.token_file={token_file}"] if token_file else []),
                *(["transport.allow_insecure=true"] if allow_insecure else [])]
        loaded = load_scenario(find_scenario(scenario), mine, allow_remote=allow_remote)
        if report is not None and loaded.mode == "sweep":
            raise UsageError("--report bundles a probe; a sweep writes its points with --json")
        if check:
            output.data({"record": "check", "scenario": str(loaded.path), "mode": loaded.mode, "ok": True},
                        f"{loaded.path}: ok ({loaded.mode}, target {loaded.spec.target})")
            return 0
        output.info(f"scenario {loaded.name}: {loaded.description}")
        return asyncio.run(run_scenario(loaded, run_dir=run_dir, observer=output)).exit_code

    raise typer.Exit(execute(output, work, finish=None if check else report_writer(output, report)))


@app.command("list")
def list_(json_out: bool = typer.Option(False, "--json", help="One JSON record per scenario.")) -> None:
    """The scenarios in ./scenarios and those shipped with ocprobe, with their descriptions."""
    from ocprobe.scenario import list_scenarios

    output = make_output("-" if json_out else None, False)
    found = list_scenarios()
    width = max((len(p.stem) for p, _ in found), default=0)
    for path, description in found:
        output.data({"record": "scenario", "name": path.stem, "path": str(path), "description": description},
                    f"{path.stem:<{width}}  {description}")
    if not found:
        output.info("no scenarios found (looked in ./scenarios and ocprobe's own)")
