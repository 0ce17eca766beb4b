"""``ocprobe run`` and ``ocprobe scenarios list`` end to end: every shipped scenario against the reference gateway."""

from __future__ import annotations

import json
from pathlib import Path

from tests.cli.test_sequential import calls, ocprobe, records, summary


def test_list_shows_the_shipped_scenarios(tmp_path: Path) -> None:
    result = ocprobe("scenarios", "list", "--json", tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    listed = {r["name"]: r for r in map(json.loads, result.stdout.splitlines())}
    assert {"issue-77485", "race-window-sweep", "same-session-contention", "many-sessions"} <= set(listed)
    assert all(r["description"] for r in listed.values())


def test_check_validates_without_running(tmp_path: Path) -> None:
    ok = ocprobe("run", "--check", "issue-77485", tmp_path=tmp_path)
    assert ok.returncode == 0 and "ok (steps, target embedded)" in ok.stdout
    bad = tmp_path / "bad.toml"
    bad.write_text('target = "embedded"\n\n[probe]\ncalls = -1\n')
    refused = ocprobe("run", "--check", str(bad), tmp_path=tmp_path)
    assert refused.returncode == 2
    assert refused.stderr.strip() == f"error: {bad}:4: probe.calls must be between 1 and 100000, got -1"
    assert not (tmp_path / "cache" / "runs").exists()  # refused before anything ran


def test_issue_77485_through_the_relay_alternates(tmp_path: Path) -> None:
    out = tmp_path / "seed.jsonl"
    result = ocprobe("run", "issue-77485", "--set", "iterations=4", "--json", str(out), tmp_path=tmp_path)
    assert result.returncode == 1, result.stderr
    assert [c["class"] for c in calls(out)] == ["real", "fast_fail", "real", "fast_fail"]
    assert all(c["step"] == 1 and c["expect"] == ["real"] for c in calls(out))
    final = summary(out)
    assert final["target"]["transport"] == "relay"
    assert final["expectations"] == {"met": 2, "judged": 4}
    assert "expectations 2/4 met" in result.stdout


def test_issue_77485_passes_when_the_pause_outlasts_the_teardown(tmp_path: Path) -> None:
    result = ocprobe("run", "issue-77485", "--set", "iterations=3", "--set", "gateway.teardown_ms=50", "-q",
                     tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("PASS: 3/3 real")


def test_same_session_contention_shows_queued_empty_calls(tmp_path: Path) -> None:
    out = tmp_path / "c.jsonl"
    result = ocprobe("run", "same-session-contention", "--set", "probe.calls=30", "--json", str(out), tmp_path=tmp_path)
    assert result.returncode == 1, result.stderr
    classes = [c["class"] for c in calls(out)]
    assert len(classes) == 30 and classes.count("fast_fail") > 0 and classes.count("real") > 0
    assert summary(out)["gate_status"] == "fail"


def test_many_sessions_all_real(tmp_path: Path) -> None:
    out = tmp_path / "m.jsonl"
    result = ocprobe("run", "many-sessions", "--set", "probe.calls=40", "--json", str(out), tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    assert [c["class"] for c in calls(out)] == ["real"] * 40
    assert len(summary(out)["concurrency"]["sessions"]) == 20


def test_race_window_sweep_finds_the_teardown(tmp_path: Path) -> None:
    out = tmp_path / "s.jsonl"
    result = ocprobe("run", "race-window-sweep", "--set", "sweep.gaps=[0, 0.3]", "--set", "repeat=1",
                     "--set", "probe.calls=4", "--json", str(out), tmp_path=tmp_path)
    assert result.returncode == 1, result.stderr
    points = [r for r in records(out) if r["record"] == "point"]
    assert [(p["value"], p["failures"] > 0) for p in points] == [(0.0, True), (0.3, False)]


def test_a_scripted_background_pair_on_one_session(tmp_path: Path) -> None:
    """Two sends at once to one session: one runs, the other is queued (reply-run-race) and ends empty."""
    scenario = tmp_path / "pair.toml"
    scenario.write_text(
        'description = "pair"\ntarget = "embedded"\n'
        '[gateway]\nprofile = "reply-run-race"\n'
        '[[steps]]\nsend = "a {nonce}"\nbackground = true\ncount = 2\nexpect = "any"\n'
        '[[steps]]\nwait = "background"\n'
        '[[steps]]\nsleep = 1.5\n'
        '[[steps]]\nsend = "b {nonce}"\n'
    )
    out = tmp_path / "pair.jsonl"
    result = ocprobe("run", str(scenario), "--json", str(out), tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr  # "any" judges nothing; the last send is real
    by_index = {c["index"]: c for c in calls(out)}
    assert sorted(c["class"] for c in (by_index[1], by_index[2])) == ["fast_fail", "real"]
    assert by_index[3]["class"] == "real" and by_index[3]["step"] == 4
