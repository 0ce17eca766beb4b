"""The reference gateway's profiles per real generation (reference/defaults.py): what each was calibrated
to show on the real release, shown through ``ocprobe`` as a user runs it, and protocol 4's frames."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from websockets.asyncio.client import connect

from ocprobe.reference.defaults import PROFILES
from tests.cli.test_sequential import calls, ocprobe, summary
from tests.transports.test_ws import TOKEN, reference


def test_every_profile_that_models_a_release_says_how_it_was_calibrated() -> None:
    for profile in PROFILES.values():
        if profile.name.startswith("openclaw-"):
            assert profile.calibration.startswith("ocprobe ") and profile.name.split("-")[1] in profile.calibration


def test_the_5_3_profile_speaks_v3_and_alternates_at_gap_0(tmp_path: Path) -> None:
    out = tmp_path / "run.jsonl"
    proc = ocprobe("sequential", "-n", "6", "--profile", "openclaw-5.3", "--json", str(out), tmp_path=tmp_path)
    assert proc.returncode == 1, proc.stderr
    assert [c["class"] for c in calls(out)] == ["real", "fast_fail"] * 3
    s = summary(out)
    assert s["target"]["protocol"] == 3 and s["log_counts"]["ReplyRunAlreadyActiveError"] > 0
    assert "protocol 3" in proc.stdout


def test_the_5_3_profile_window_is_short(tmp_path: Path) -> None:
    """Real 5.3 here: 10 ms after the final, 0/12 calls failed; the profile's window ends by 10 ms."""
    out = tmp_path / "run.jsonl"
    proc = ocprobe("sequential", "-n", "6", "--gap", "0.02", "--profile", "openclaw-5.3", "--json", str(out),
                   tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert summary(out)["counts"]["real"] == 6


def test_the_9_6_profile_is_clean_at_gap_0_and_queues_same_session_sends(tmp_path: Path) -> None:
    seq, conc = tmp_path / "seq.jsonl", tmp_path / "conc.jsonl"
    proc = ocprobe("sequential", "-n", "6", "--profile", "openclaw-9.6", "--json", str(seq), tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert summary(seq)["target"]["protocol"] == 4
    proc = ocprobe("concurrent", "-n", "6", "-c", "3", "--sessions", "1", "--profile", "openclaw-9.6",
                   "--json", str(conc), tmp_path=tmp_path)
    assert proc.returncode == 1, proc.stderr
    s = summary(conc)
    # As real 9.6: the first send runs, the others get an empty final at once and run late; nothing is logged.
    assert s["counts"]["real"] >= 1 and s["counts"]["real"] + s["counts"]["fast_fail"] == 6
    assert s["fates"]["ran_late"] == s["counts"]["fast_fail"] > 0
    assert sum(s["log_counts"].values()) == 0
    queued = [c["latency_ms"] for c in calls(conc) if c["class"] == "fast_fail"]
    assert all(100 <= ms < 1000 for ms in queued)


@pytest.mark.parametrize("protocol", [3, 4])
def test_protocol_4_adds_status_events_and_delta_text(tmp_path: Path, protocol: int) -> None:
    async def main() -> list[dict]:
        async with reference(tmp_path, protocol=protocol) as gateway:
            async with connect(gateway.url) as ws:
                await ws.recv()
                await ws.send(json.dumps({"type": "req", "id": "c", "method": "connect", "params": {
                    "minProtocol": 3, "maxProtocol": 4, "auth": {"token": TOKEN},
                    "client": {"id": "gateway-client", "version": "t", "platform": "linux", "mode": "backend"}}}))
                await ws.recv()
                await ws.send(json.dumps({"type": "req", "id": "s", "method": "chat.send", "params": {
                    "sessionKey": "main", "message": "ok-1-z", "idempotencyKey": "k"}}))
                events: list[dict] = []
                while True:
                    frame = json.loads(await asyncio.wait_for(ws.recv(), 5))
                    if frame.get("event") == "chat":
                        events.append(frame["payload"])
                        if frame["payload"]["state"] == "final":
                            return events

    events = asyncio.run(main())
    states = [e["state"] for e in events]
    deltas = [e for e in events if e["state"] == "delta"]
    if protocol == 4:
        assert states[:3] == ["status"] * 3 and all(e.get("phase") for e in events[:3])
        assert "".join(e["deltaText"] for e in deltas) == "ok-1-z"
    else:
        assert "status" not in states and all("deltaText" not in e for e in deltas)
    assert events[-1]["message"]["content"][0]["text"] == "ok-1-z"
