"""Parity: one probe over two transports of one reference gateway, compared call by call."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from ocprobe.engine import SequentialConfig
from ocprobe.errors import UsageError
from ocprobe.output.sink import Mode, Output
from ocprobe.parity import run_parity, sibling_endpoint
from ocprobe.runner import log_patterns
from ocprobe.targets import EmbeddedOptions, TargetSpec
from tests.cli.test_sequential import ocprobe, records


def test_sibling_endpoints_of_the_reference_gateway() -> None:
    assert sibling_endpoint("ws://127.0.0.1:5000", "relay") == "http://127.0.0.1:5000/chat.send"
    assert sibling_endpoint("http://127.0.0.1:5000/chat.send", "openai") == "http://127.0.0.1:5000/v1"
    assert sibling_endpoint("https://h:1/v1", "ws") == "wss://h:1"


def _spec(transport: str, **kwargs: str) -> TargetSpec:
    return TargetSpec(transport=transport, embedded=EmbeddedOptions(profile="reply-run-race"), **kwargs)


def test_a_relay_that_reads_the_wrong_field_differs_from_ws(tmp_path: Path) -> None:
    """The relay answers {"reply": ...}; reading data.text instead loses every reply, and parity shows it."""
    specs = [_spec("ws"), _spec("relay", reply_path="data.text")]
    result = asyncio.run(run_parity(specs, SequentialConfig(calls=4, gap=0.3), log_paths=[], patterns=log_patterns([]),
                                    run_dir=tmp_path, observer=Output(Mode.QUIET)))
    assert [r.cls.value for r in result.runs[0].records] == ["real"] * 4
    assert [index for index, _, _ in result.differences] == [1, 2, 3, 4]
    assert all(a == "real" and b != "real" for _, a, b in result.differences)
    assert result.exit_code == 1


def test_mixing_embedded_and_external_is_refused(tmp_path: Path) -> None:
    specs = [_spec("ws"), TargetSpec(target="ws://127.0.0.1:9")]
    with pytest.raises(UsageError, match="one gateway"):
        asyncio.run(run_parity(specs, SequentialConfig(calls=1), log_paths=[], patterns=[], run_dir=tmp_path,
                               observer=Output(Mode.QUIET)))


def test_cli_ws_and_relay_agree_on_the_race(tmp_path: Path) -> None:
    out = tmp_path / "parity.jsonl"
    result = ocprobe("parity", "-n", "4", "--profile", "reply-run-race", "--json", str(out), tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "ws       ✔✗✔✗" in result.stdout and "relay    ✔✗✔✗" in result.stdout
    parity = [r for r in records(out) if r["record"] == "parity"][-1]
    assert parity["transports"] == ["ws", "relay"] and parity["differences"] == [] and parity["exit_code"] == 0
    bad = ocprobe("parity", "--transports", "ws", tmp_path=tmp_path)
    assert bad.returncode == 2 and "give two" in bad.stderr
