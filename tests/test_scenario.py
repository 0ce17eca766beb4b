"""Scenario files: every mistake is refused before anything runs, naming the file, line and key."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from ocprobe.engine import ConcurrentConfig, ScriptConfig, SendStep, SequentialConfig, SleepStep, WaitStep
from ocprobe.scenario import ScenarioError, find_scenario, list_scenarios, load_scenario

REPO_SCENARIOS = Path(__file__).resolve().parent.parent / "ocprobe" / "scenarios"

GOOD = """\
description = "two sends and a sleep"
target = "embedded"
iterations = 2
gates = ["fast_fail.count == 0"]

[gateway]
profile = "reply-run-race"
teardown_ms = 80

[probe]
timeout = 5

[[steps]]
send = "first {i} {nonce}"
expect = ["real", "fast_fail"]

[[steps]]
sleep = 0.1

[[steps]]
send = "second {nonce}"
session = "agent:test:other"
background = true
count = 2

[[steps]]
wait = "background"
"""


def write(tmp_path: Path, text: str, name: str = "s.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_a_good_scenario_becomes_a_script(tmp_path: Path) -> None:
    scenario = load_scenario(write(tmp_path, GOOD))
    assert scenario.mode == "steps" and scenario.description == "two sends and a sleep"
    cfg = scenario.probe
    assert isinstance(cfg, ScriptConfig)
    assert cfg.iterations == 2 and cfg.calls == 2 * 3 and cfg.timeout == 5
    first, sleep, second, wait = cfg.steps
    assert first == SendStep(message="first {i} {nonce}", expect=("real", "fast_fail"))
    assert sleep == SleepStep(0.1) and wait == WaitStep()
    assert second.session_key == "agent:test:other" and second.background and second.count == 2
    assert scenario.spec.embedded.profile == "reply-run-race" and scenario.spec.embedded.teardown_ms == 80
    assert scenario.gates == ["fast_fail.count == 0"]


def test_mode_is_inferred_and_probe_keys_follow_it(tmp_path: Path) -> None:
    seq = load_scenario(write(tmp_path, 'target = "embedded"\n[probe]\ncalls = 4\ngap = 0.2\n'))
    assert seq.mode == "sequential" and isinstance(seq.probe, SequentialConfig) and seq.probe.gap == 0.2
    conc = load_scenario(write(tmp_path, 'target = "embedded"\nmode = "concurrent"\n[probe]\ncalls = 8\nsessions = 3\n'))
    assert isinstance(conc.probe, ConcurrentConfig) and conc.probe.sessions == 3
    sweep = load_scenario(write(tmp_path, 'target = "embedded"\n[sweep]\nteardowns_ms = [50, 0, 50]\n'))
    assert sweep.mode == "sweep" and sweep.sweep is not None
    assert sweep.sweep.parameter == "teardown_ms" and sweep.sweep.values == [0.0, 50.0] and sweep.repeat == 3


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('target = "embedded"\n[probe]\ncals = 3\n', ":3: probe.cals: unknown key"),
        ('target = "embedded"\n[probe]\ncalls = "ten"\n', ":3: probe.calls: expected an integer, got a string 'ten'"),
        ('target = "embedded"\n[probe]\ncalls = 0\n', ":3: probe.calls must be between 1 and 100000, got 0"),
        ('description = "no target"\n', "s.toml: missing key 'target'"),
        ('target = "ftp://x"\n', ":1: target: unsupported target 'ftp://x'"),
        ('target = "embedded"\n[logs]\npatterns = ["ok", "(unclosed"]\n', ":3: logs.patterns[1]: bad regex '(unclosed'"),
        ('target = "embedded"\n[probe]\nmessage = "no nonce"\n', ":3: probe.message: bad template: it must contain {nonce}"),
        ('target = "embedded"\n[[steps]]\nsend = "{x} {nonce}"\n', ":3: steps[0].send: bad template: unknown field '{x}'"),
        ('target = "embedded"\n[[steps]]\nsend = "{nonce}"\nexpect = "great"\n', ":4: steps[0].expect: unknown class 'great'"),
        ('target = "embedded"\n[[steps]]\nsend = "{nonce}"\n[[steps]]\nsleep = 1\nexpect = "real"\n',
         ":6: steps[1].expect: belongs to a send step, not a sleep step"),
        ('target = "embedded"\n[[steps]]\nsend = "{nonce}"\nsleep = 1\n', ":2: steps[0]: a step has exactly one of send, sleep, wait"),
        ('target = "embedded"\ngates = ["real.count >> 3"]\n', ":2: gates[0]:"),
        ('target = "embedded"\ngates = ["nosuch.metric == 0"]\n', ":2: gates: unknown metric"),
        ('target = "embedded"\n[gateway]\nprofile = "flaky"\n', ":3: gateway.profile: unknown profile 'flaky'"),
        ('target = "embedded"\nmode = "concurrent"\n[probe]\ngap = 1\n', ":4: probe.gap: does not apply to mode 'concurrent'"),
        ('target = "embedded"\n[transport]\nname = "carrier-pigeon"\n', ":3: transport.name: unknown transport"),
        ('target = "embedded"\n[sweep]\ngaps = [0.1]\nlatencies_ms = [1]\n', ":2: sweep: give exactly one of"),
        ('target = "embedded"\n[probe\n', "s.toml: not valid TOML"),
    ],
)
def test_bad_scenarios_name_file_line_and_key(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ScenarioError) as info:
        load_scenario(write(tmp_path, text))
    message = str(info.value)
    assert str(tmp_path / "s.toml") in message and expected in message
    assert "\n" not in message


def test_overrides_apply_and_are_named_in_errors(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    scenario = load_scenario(path, ["iterations=5", "gateway.teardown_ms=10", "target=ws://127.0.0.1:9"])
    assert scenario.probe.calls == 15 and scenario.spec.embedded.teardown_ms == 10
    assert scenario.spec.target == "ws://127.0.0.1:9"  # a bare string is taken as it is
    with pytest.raises(ScenarioError, match=r"s\.toml: --set iterations must be between 1 and 100000, got 0"):
        load_scenario(path, ["iterations=0"])
    with pytest.raises(ScenarioError, match=r"--set probe\.calls: does not apply to mode 'steps'"):
        load_scenario(path, ["probe.calls=3"])
    with pytest.raises(ScenarioError, match="expected KEY=VALUE"):
        load_scenario(path, ["iterations"])


def test_unreadable_and_missing_files(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="no such scenario file"):
        load_scenario(tmp_path / "nope.toml")
    binary = tmp_path / "bin.toml"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ScenarioError, match="cannot read"):
        load_scenario(binary)
    with pytest.raises(ScenarioError, match="no scenario file or name 'nope'.*issue-77485"):
        find_scenario("nope")


def test_shipped_scenarios_are_found_by_name_and_all_check(tmp_path: Path) -> None:
    names = {path.stem: description for path, description in list_scenarios()}
    for name in ("issue-77485", "race-window-sweep", "same-session-contention", "many-sessions"):
        assert names[name], f"{name} has no description"
        assert find_scenario(name) == REPO_SCENARIOS / f"{name}.toml"
        load_scenario(find_scenario(name))


@pytest.mark.parametrize(("values", "message"), [
    ("[nan]", "sweep.gaps: value nan must be a finite number from 0 to 3600"),
    ("[1e12]", "sweep.gaps: value 1000000000000.0 must be a finite number from 0 to 3600"),
    ("[" + ", ".join(str(i / 1000) for i in range(500)) + "]", "sweep.gaps has 500 values; at most 100"),
])
def test_check_refuses_the_sweep_values_the_run_would(tmp_path: Path, values: str, message: str) -> None:
    """Before: --check accepted them, then the run refused them naming --gap, an option never given."""
    path = tmp_path / "sweep.toml"
    path.write_text(f'target = "embedded"\n[sweep]\ngaps = {values}\n')
    with pytest.raises(ScenarioError) as raised:
        load_scenario(path)
    assert str(raised.value) == f"{path}:3: {message}"


def test_a_teardown_sweep_takes_an_embedded_profile_as_sweep_does(tmp_path: Path) -> None:
    path = tmp_path / "sweep.toml"
    path.write_text('target = "embedded:reply-run-race"\n[sweep]\nteardowns_ms = [0, 25]\n')
    assert load_scenario(path).sweep is not None


def test_a_scenario_of_many_steps_is_checked_in_one_pass(tmp_path: Path) -> None:
    """Before: every step's line was looked up while checking it (8,000 steps: 162 s); now only on an error."""
    path = tmp_path / "many.toml"
    path.write_text('target = "embedded"\n' + '[[steps]]\nsend = "hello {i}: reply with {nonce}"\n' * 8000)
    assert len(load_scenario(path).probe.steps) == 8000  # type: ignore[attr-defined]
