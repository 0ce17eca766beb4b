"""Property tests over what ocprobe takes from outside: a hostile gateway's frames in answer to a call, message
templates, scenario files and results files. The one property: a classified call (its record written to
disk and rendered), or a one-line error of ocprobe's own; never another exception, never unbounded work."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path
from typing import Any

from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ocprobe.compare import load_sample
from ocprobe.engine import SequentialConfig
from ocprobe.errors import OcprobeError
from ocprobe.models import KEPT_TEXT, CallClass
from ocprobe.output.sink import Mode, Output, render_table
from ocprobe.runner import validate_message_template
from ocprobe.scenario import load_scenario
from tests.transports.test_ws import chat_gateway, run_engine

HOSTILE = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                         HealthCheck.function_scoped_fixture])

# Text a gateway may send: lone surrogates, control characters, markup, long runs.
nasty_text = st.text(st.characters(codec=None, categories=None), max_size=50) | st.sampled_from([
    "\ud800", "\udfff tail", "\x1b]0;title\x07\x1b[2J", "[/INST]", "[bold]x[/]", "\r\rhidden", "x" * (KEPT_TEXT + 10),
])
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | nasty_text,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)
chat_payload = st.fixed_dictionaries({}, optional={
    "state": st.sampled_from(["status", "delta", "final", "error", "aborted", "bogus"]) | json_values,
    "message": st.fixed_dictionaries({}, optional={"content": st.lists(
        st.fixed_dictionaries({}, optional={"type": json_values, "text": nasty_text | json_values}), max_size=3)
        | json_values}) | json_values,
    "deltaText": nasty_text | json_values,
    "errorMessage": nasty_text | json_values,
    "errorKind": json_values,
    "sessionKey": nasty_text | json_values,
})
# Per frame: whose run it names (the call's, another, none) and its payload; or a raw non-JSON text frame.
frames = st.lists(st.tuples(st.sampled_from(["own", "other", "none"]), chat_payload)
                  | st.sampled_from([("raw", '{"type": "event", "event": "chat", "payload": {"runId": "\\ud800"'),
                                     ("raw", "not json"), ("raw", '"\\udc00"')]), max_size=6)


def test_every_answer_of_a_hostile_gateway_is_a_classified_call(tmp_path: Path) -> None:
    script: list[Any] = []

    async def answer(ws: web.WebSocketResponse, run_id: str, message: str) -> None:
        for whose, payload in script:
            if whose == "raw":
                await ws.send_str(payload)
                continue
            named = {"own": {"runId": run_id}, "other": {"runId": "srv-x"}, "none": {}}[whose]
            await ws.send_json({"type": "event", "event": "chat", "payload": {**payload, **named}})

    @HOSTILE
    @given(frames)
    def check(frames_sent: list[Any]) -> None:
        script[:] = frames_sent
        out = tmp_path / "run.jsonl"
        sink = Output(Mode.HUMAN, json_path=out, stdout=io.StringIO(), stderr=io.StringIO())
        result = asyncio.run(run_engine(chat_gateway(answer), SequentialConfig(calls=1, timeout=0.5, settle=0.05), sink))
        sink.close()
        assert len(result.records) == 1 and isinstance(result.records[0].cls, CallClass)
        written = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
        assert [r["record"] for r in written].count("call") == 1
        sink.console.print(render_table(result))  # the table renders whatever the text

    check()


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40) | st.builds(lambda a, b: a + "{nonce" + b + "}", st.text(max_size=10), st.text(max_size=10)))
def test_a_template_is_refused_or_sends_its_nonce_unaltered(template: str) -> None:
    try:
        validate_message_template(template)
    except OcprobeError as exc:
        assert "\n" not in str(exc)
        return
    sent = template.format(i=7, nonce="ok-7-abcdef")
    assert "ok-7-abcdef" in sent and len(sent) <= len(template) + 20


scenario_keys = st.sampled_from(["target", "mode", "iterations", "repeat", "gates", "description", "probe.calls",
                                 "probe.gap", "probe.timeout", "sweep.gaps", "transport.name", "transport.token_file",
                                 "gateway.profile", "gateway.protocol", "logs.patterns", "steps"])
toml_values = st.sampled_from(['"embedded"', '"ws://10.0.0.1:1"', "nan", "inf", "-1", "1e12", "0", "3", '"x"', "[]",
                               '["(a+)+$"]', '["(?<=x)"]', "[nan]", '"{nonce:.{i}}"', "true", '"embedded:openclaw-5.3"'])


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(scenario_keys, toml_values), max_size=6))
def test_a_scenario_file_is_loaded_or_refused_in_one_line(tmp_path: Path, pairs: list[tuple[str, str]]) -> None:
    path = tmp_path / "fuzz.toml"
    path.write_text("".join(f"{key} = {value}\n" for key, value in dict(pairs).items()))
    try:
        load_scenario(path)
    except OcprobeError as exc:
        assert "\n" not in str(exc).strip()


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.dictionaries(st.sampled_from(["record", "class", "latency_ms", "schema_version", "target"]),
                                json_values | st.sampled_from(["call", "summary", "start", "real"]), max_size=5),
                max_size=5))
def test_a_results_file_is_read_or_refused_in_one_line(tmp_path: Path, records: list[dict[str, Any]]) -> None:
    path = tmp_path / "fuzz.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8", errors="surrogatepass")
    try:
        sample = load_sample(path)
    except OcprobeError as exc:
        assert "\n" not in str(exc).strip()
        return
    assert all(latency >= 0 for latency in sample.real_latencies_ms)


