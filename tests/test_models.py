"""The shared records: the witness log's columns read back as requests, a call record's JSON."""

from __future__ import annotations

import json

import pytest

from ocprobe.models import CallClass, CallRecord, Evidence, WitnessLog, WitnessRequest


def test_witness_log_reads_back_what_was_appended() -> None:
    log = WitnessLog()
    log.append(1.5, ("ok-1-a",), "mock-model", True)
    log.append(2.5, (), "mock-model", False)
    log.append(3.5, ("ok-3-é", "ok-4-b"), "other", True)
    expected = [
        WitnessRequest(seq=1, at=1.5, nonces=("ok-1-a",), model="mock-model", stream=True),
        WitnessRequest(seq=2, at=2.5, nonces=(), model="mock-model", stream=False),
        WitnessRequest(seq=3, at=3.5, nonces=("ok-3-é", "ok-4-b"), model="other", stream=True),
    ]
    assert len(log) == 3 and list(log) == expected
    assert log[-1] == expected[2] and log[1:] == expected[1:] and log[5:] == []
    with pytest.raises(IndexError):
        log[3]


def test_witness_log_keeps_one_string_per_model_name() -> None:
    log = WitnessLog()
    for _ in range(2):
        log.append(1.0, (), json.loads('"mock-model"'), True)  # decoded anew, as from every request body
    assert log[0].model is log[1].model


def test_a_call_without_log_matches_keeps_no_list_of_its_own() -> None:
    record = CallRecord(index=1, session_key="main", run_id="r1", nonce="ok-1-a", started_at=1.0, ended_at=2.0,
                        latency_ms=1000.0, cls=CallClass.REAL, evidence=Evidence.WITNESS, llm_reached=True,
                        reply="ok-1-a", state="final")
    assert record.log_matches == ()
    assert record.to_json()["log_matches"] == []
