"""Fuzzing what reads untrusted text: the WebSocket frame parser (frames come from any gateway) and the
gate parser (gates come from the command line). Neither may raise anything but its own error type."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ocprobe.gates import GateSyntaxError, parse_gates
from ocprobe.transports.ws import ChatUpdate, decode_frame, max_payload, parse_chat_event

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=30,
)
# Frames shaped like the protocol's, with every field free to be of any type or missing.
protocol_like = st.fixed_dictionaries(
    {"type": st.sampled_from(["event", "res", "req"]) | json_values},
    optional={
        "event": st.sampled_from(["chat", "tick", "connect.challenge"]) | json_values,
        "id": st.text(max_size=8) | json_values,
        "ok": st.booleans() | json_values,
        "payload": st.fixed_dictionaries({}, optional={
            "runId": st.text(max_size=8) | json_values,
            "state": st.sampled_from(["delta", "final", "error", "aborted"]) | json_values,
            "sessionKey": json_values,
            "message": st.fixed_dictionaries({}, optional={
                "content": st.lists(st.fixed_dictionaries({}, optional={"type": json_values, "text": json_values}))
                | json_values}) | json_values,
            "errorMessage": json_values,
            "errorKind": json_values,
            "policy": json_values,
        }) | json_values,
        "policy": st.fixed_dictionaries({}, optional={"maxPayload": json_values}) | json_values,
    },
)


def _check_frame(raw: str | bytes) -> None:
    frame = decode_frame(raw)
    assert frame is None or isinstance(frame, dict)
    if frame is None:
        return
    update = parse_chat_event(frame)
    if update is not None:
        assert isinstance(update, ChatUpdate) and isinstance(update.run_id, str) and update.run_id
        assert isinstance(update.state, str) and isinstance(update.text, str) and isinstance(update.session_key, str)
        assert update.error_message is None or isinstance(update.error_message, str)
        assert update.error_kind is None or isinstance(update.error_kind, str)
    limit = max_payload(frame)
    assert limit is None or (isinstance(limit, int) and limit > 0)


@FUZZ
@given(st.text() | st.binary())
def test_any_text_or_bytes(raw: str | bytes) -> None:
    _check_frame(raw)


@FUZZ
@given(json_values)
def test_any_json_value(value: Any) -> None:
    _check_frame(json.dumps(value))


@FUZZ
@given(protocol_like)
def test_protocol_shaped_frames_of_any_field_type(frame: dict[str, Any]) -> None:
    _check_frame(json.dumps(frame))


@FUZZ
@given(st.integers(min_value=1, max_value=200_000), st.sampled_from(["[", "{\"a\":"]))
def test_nesting_too_deep_for_the_parser_is_skipped(depth: int, opener: str) -> None:
    assert decode_frame(opener * depth) is None


def test_a_well_formed_chat_event_is_read() -> None:
    raw = json.dumps({"type": "event", "event": "chat", "payload": {
        "runId": "r1", "sessionKey": "agent:main:main", "state": "final", "errorKind": 3,
        "message": {"role": "assistant", "content": [{"type": "text", "text": "ok-1"}, {"text": 5}]}}})
    frame = decode_frame(raw)
    assert frame is not None
    assert parse_chat_event(frame) == ChatUpdate("r1", "agent:main:main", "final", "ok-1", "", None, None)


gate_alphabet = st.sampled_from(list("abcxyz_09.[]'\"<>=! -\t\\") + ["log", "real", "rate", "==", "<=", "1e9", "é", "\x00"])


@FUZZ
@given(st.text() | st.lists(gate_alphabet, max_size=25).map("".join))
def test_gate_parser_raises_only_its_own_error(text: str) -> None:
    try:
        gates = parse_gates([text])
    except GateSyntaxError as exc:
        assert "\n" not in str(exc).strip() or "\n" in text  # one line, unless the gate itself spans lines
        return
    assert len(gates) == 1 and gates[0].op in ("==", "!=", "<", "<=", ">", ">=")
