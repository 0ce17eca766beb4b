"""The relay's body template and reply path, without a server."""

from __future__ import annotations

import json
from typing import Any

import pytest

from ocprobe.transports.relay_format import DEFAULT_RELAY_BODY, RelayBody, ReplyPathError, extract_reply, parse_reply_path


def test_relay_body_rendering() -> None:
    assert json.loads(RelayBody(DEFAULT_RELAY_BODY).render(session_key="main", message="a\"b", idempotency_key="k")) == {
        "sessionKey": "main", "message": 'a"b'}
    inside = RelayBody('{"q": "{message}", "lit": "{not_a_field} \\" {message}"}')
    assert json.loads(inside.render(session_key="s", message='x"y', idempotency_key="k")) == {
        "q": 'x"y', "lit": '{not_a_field} " x"y'}


@pytest.mark.parametrize(("path", "body", "expected"), [
    ("reply", {"reply": "hi"}, "hi"),
    ("data.text", {"data": {"text": "t"}}, "t"),
    ("choices.0.message.content", {"choices": [{"message": {"content": "c"}}]}, "c"),
    ("items.-1", {"items": ["a", "b"]}, "b"),
    ("reply", {"reply": None}, ""),
])
def test_reply_path_extraction(path: str, body: Any, expected: str) -> None:
    assert extract_reply(body, parse_reply_path(path)) == expected


@pytest.mark.parametrize(("path", "body", "needle"), [
    ("reply", {"answer": "x"}, "no key 'reply' at the top level (keys there: answer)"),
    ("data.text", {"data": "flat"}, "data is a string, not an object or list"),
    ("choices.1.text", {"choices": [{}]}, "index 1 out of range at choices"),
    ("choices.first", {"choices": []}, "choices is a list: 'first' is not an index"),
    ("data", {"data": {"text": "x"}}, "data holds an object, not text"),
])
def test_reply_path_errors_say_where(path: str, body: Any, needle: str) -> None:
    with pytest.raises(ReplyPathError) as info:
        extract_reply(body, parse_reply_path(path))
    assert needle in str(info.value)
