"""Text from a hostile gateway reaches every sink intact or replaced, never aborting the run: a lone UTF-16
surrogate in a reply (legal JSON; a Node gateway emits one when it cuts a reply inside an emoji), an SSE line
past the client's limit, a reply streamed one character at a time."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from aiohttp import web

from ocprobe.transports.http import OpenAITransport, RelayTransport
from ocprobe.transports.ws import OpenClawWsTransport
from ocprobe.untrusted import loads, scrub
from tests.transports.test_http import scripted, sse
from tests.transports.test_ws import TOKEN, chat_gateway, fake_gateway, final, hello, send_once

# JSON text as a gateway sends it: escapes of a lone high surrogate, a lone low one, and a valid pair.
LONE = r"\ud800"


@pytest.mark.parametrize(("raw", "expected"), [
    (rf'"a{LONE}b"', "a\ufffdb"), (r'"\udc00"', "\ufffd"), (r'"\ud83d\ude00"', "\U0001F600"),
    (rf'{{"k{LONE}": ["{LONE}", {{"x": "{LONE}"}}]}}', {"k\ufffd": ["\ufffd", {"x": "\ufffd"}]}),
    ('"plain"', "plain"),
])
def test_lone_surrogates_become_replacement_characters(raw: str, expected: object) -> None:
    assert loads(raw) == expected == loads(raw.encode())
    json.dumps(loads(raw), ensure_ascii=False).encode("utf-8")  # writable as UTF-8 now


def test_scrub_leaves_valid_text_alone() -> None:
    text = "ok-1 é 😀"
    assert scrub(text) is text


def echo_gateway(suffix_json: str):  # type: ignore[no-untyped-def]
    """A ws gateway answering each chat.send with a final holding the message's nonce plus ``suffix_json``
    (raw JSON string content, escapes kept)."""
    async def script(ws: web.WebSocketResponse, run_id: str, message: str) -> None:
        nonce = re.search(r"ok-\d+-\w+", message).group(0)  # type: ignore[union-attr]
        await asyncio.sleep(0.05)
        await ws.send_str('{"type":"event","event":"chat","payload":{"runId":"%s","sessionKey":"s","state":"final",'
                          '"message":{"role":"assistant","content":[{"type":"text","text":"%s%s"}]}}}'
                          % (run_id, nonce, suffix_json))

    return chat_gateway(script)


def test_a_ws_reply_with_a_lone_surrogate_is_kept_replaced() -> None:
    outcome = send_once(echo_gateway(LONE), "say ok-1-abc")
    assert outcome.state == "final" and outcome.text == "ok-1-abc\ufffd"


def test_a_whole_run_with_lone_surrogates_writes_every_record_and_report(tmp_path: Path, in_thread) -> None:  # type: ignore[no-untyped-def]
    """Before: UnicodeEncodeError on the first record, internal error, no records, the other calls unsent."""
    url = in_thread(lambda: fake_gateway(echo_gateway(LONE + r" \udfff end")))
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    out, report = tmp_path / "run.jsonl", tmp_path / "report"
    proc = subprocess.run(
        [sys.executable, "-m", "ocprobe", "sequential", "-n", "4", "--target", url, "--token-file", str(token_file),
         "--json", str(out), "--report", str(report), "--settle", "0.2"],
        capture_output=True, text=True, timeout=120, env={**os.environ, "COLUMNS": "200"})
    assert "internal error" not in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    calls = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    calls = [c for c in calls if c["record"] == "call"]
    assert len(calls) == 4 and all(c["reply"].endswith("\ufffd \ufffd end") for c in calls)
    for name in ("calls.jsonl", "summary.json", "junit.xml", "report.md"):
        (report / name).read_text(encoding="utf-8")  # every sink written, as valid UTF-8
    assert "\ufffd" in proc.stdout  # the table too


def test_a_relay_that_echoes_the_prompt_is_not_counted_real(tmp_path: Path, in_thread) -> None:  # type: ignore[no-untyped-def]
    """Before: 5 of 5 echoed calls were 'real', exit 0: the nonce is in the prompt, so an echo carries it."""
    async def echo(request: web.Request) -> web.Response:
        body = await request.json() if request.method == "POST" else {}
        return web.json_response({"reply": f"You said: {body.get('message', '')}"})

    url = in_thread(lambda: scripted({"POST /chat.send": echo, "GET /chat.send": echo}))
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    out = tmp_path / "run.jsonl"
    proc = subprocess.run(
        [sys.executable, "-m", "ocprobe", "sequential", "-n", "5", "--target", f"{url}/chat.send", "--token-file",
         str(token_file), "--json", str(out), "--settle", "0.2"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr
    calls = [r for r in map(json.loads, out.read_text().splitlines()) if r["record"] == "call"]
    assert [c["class"] for c in calls] == ["wrong"] * 5
    assert all("echoes the prompt" in c["error"] for c in calls)


def test_a_relay_reply_with_a_lone_surrogate_is_kept_replaced() -> None:
    async def relay(request: web.Request) -> web.Response:
        return web.Response(text='{"reply": "ok-1-r%s"}' % LONE, content_type="application/json")

    async def main() -> None:
        async with scripted({"POST /chat.send": relay, "GET /chat.send": relay}) as base:
            transport = RelayTransport(f"{base}/chat.send", TOKEN)
            outcome = await transport.send("s", "m", "k", timeout=5)
            assert outcome.state == "final" and outcome.text == "ok-1-r\ufffd"
            await transport.close()

    asyncio.run(main())


def openai_call(lines: list[bytes], timeout: float = 10):  # type: ignore[no-untyped-def]
    async def main():  # type: ignore[no-untyped-def]
        async with scripted({"POST /v1/chat/completions": sse(lines)}) as base:
            transport = OpenAITransport(f"{base}/v1", TOKEN)
            try:
                return await transport.send("s", "m", "k", timeout=timeout)
            finally:
                await transport.close()

    return asyncio.run(main())


def chunk(text_json: str) -> bytes:
    return b'data: {"choices":[{"delta":{"content":"' + text_json.encode() + b'"}}]}\n\n'


def test_an_sse_reply_with_a_lone_surrogate_is_kept_replaced() -> None:
    outcome = openai_call([chunk("ok-1-o"), chunk(LONE), b"data: [DONE]\n\n"])
    assert outcome.state == "final" and outcome.text == "ok-1-o\ufffd"


def test_an_sse_line_over_the_limit_is_a_classified_call() -> None:
    """Before: aiohttp's LineTooLong escaped the transport (internal error, no records)."""
    outcome = openai_call([chunk("ok-1-o"), b"data: " + b"x" * (3 * 1024 * 1024) + b"\n\n", b"data: [DONE]\n\n"])
    assert outcome.state == "error" and "unreadable answer" in (outcome.error_message or "")


def test_a_reply_streamed_one_character_at_a_time_is_joined_once() -> None:
    """Before: every chunk re-joined all pieces so far; 200k one-character deltas took ~40 s."""
    pieces = [chunk("a")] * 100_000
    # Joined on every chunk, this takes minutes and ends as a timeout; joined once, about a second.
    outcome = openai_call([b"".join(pieces), b"data: [DONE]\n\n"], timeout=120)
    assert outcome.state == "final" and outcome.text == "a" * 100_000


def test_a_cut_stream_keeps_the_text_so_far() -> None:
    outcome = openai_call([chunk("ok-1-"), chunk("part")])  # no [DONE]
    assert outcome.state == "error" and outcome.text == "ok-1-part"


def test_markup_and_escape_sequences_from_outside_are_shown_not_obeyed(tmp_path: Path, in_thread) -> None:  # type: ignore[no-untyped-def]
    """Before: a reply ending in '[/INST]', a '[/]' in server.version or the session key 'team[/]x' crashed
    the run (MarkupError, no table); 'agent:main:[dm]' showed as something else; escape sequences in a reply
    (clear the screen, set the title) reached the terminal raw."""
    async def script(ws: web.WebSocketResponse, run_id: str, message: str) -> None:
        nonce = re.search(r"ok-\d+-\w+", message).group(0)  # type: ignore[union-attr]
        await final(ws, run_id, f"{nonce} [/INST] \x1b]0;pwned\x07\x1b[2J [dm]")

    handler = chat_gateway(script, {"type": "hello-ok", "protocol": 4, "server": {"version": "9.9[/]evil[bold]"}})
    url = in_thread(lambda: fake_gateway(handler))
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    token_file.chmod(0o600)
    for key in ("team[/]x", "agent:main:[dm]"):
        proc = subprocess.run(
            [sys.executable, "-m", "ocprobe", "concurrent", "-n", "2", "-c", "1", "--sessions", "2", "--session-key", key,
             "--target", url, "--token-file", str(token_file), "--settle", "0.2"],
            capture_output=True, text=True, timeout=120, env={**os.environ, "COLUMNS": "250"})
        assert proc.returncode == 0, proc.stderr
        out = proc.stdout + proc.stderr
        assert "9.9[/]evil[bold]" in out and "[/INST]" in out and f"{key}-s1" in out
        assert "\x1b" not in out and "\x07" not in out and "\\x1b]0;pwned\\x07\\x1b[2J" in proc.stdout


# -- bounded memory --------------------------------------------------------------------------------
def test_a_frame_over_the_limit_is_refused_before_it_is_buffered() -> None:
    """Before: with no maxPayload in the hello the client had no limit: one 1 GiB message took 3.1 GB."""
    from ocprobe.transports.ws import MAX_FRAME_BYTES

    async def handler(ws: web.WebSocketResponse) -> None:
        await hello(ws)
        req = json.loads((await ws.receive()).data)
        await ws.send_json({"type": "res", "id": req["id"], "ok": True, "payload": {"runId": "k", "status": "started"}})
        await ws.send_str("x" * (MAX_FRAME_BYTES + 1))
        await asyncio.sleep(1)

    outcome = send_once(handler, timeout=10)
    assert outcome.state == "error" and outcome.text == ""


def test_stray_finals_keep_a_bounded_text_and_their_nonces() -> None:
    """Before: 900 stray finals of 200 KB were kept whole (912 MB)."""
    from ocprobe.models import KEPT_TEXT

    big = "z" * 200_000 + " ok-7-abc123 "

    async def handler(ws: web.WebSocketResponse) -> None:
        await hello(ws)
        for n in range(20):
            await ws.send_json({"type": "event", "event": "chat", "payload": {
                "runId": f"srv-{n}", "sessionKey": "s", "state": "final", "message": {"content": [{"text": big}]}}})
        await asyncio.sleep(1)

    async def main() -> None:
        async with fake_gateway(handler) as url:
            transport = OpenClawWsTransport(url, TOKEN)
            await transport.open()
            events: list = []
            for _ in range(50):
                events += transport.take_foreign_events()
                if len(events) == 20:
                    break
                await asyncio.sleep(0.05)
            assert len(events) == 20
            assert all(len(e.text) < KEPT_TEXT + 200 and "ok-7-abc123" in e.text for e in events)
            await transport.close()

    asyncio.run(main())


def test_a_compressed_answer_is_read_up_to_its_bound() -> None:
    """Before: a 1 MB gzip body inflating to 1 GiB took 2.1 GB."""
    import gzip

    from ocprobe.transports.http import MAX_BODY

    bomb = gzip.compress(b"0" * (MAX_BODY * 2))

    async def relay(request: web.Request) -> web.Response:
        return web.Response(body=bomb, headers={"Content-Encoding": "gzip", "Content-Type": "application/json"})

    async def main() -> None:
        async with scripted({"POST /chat.send": relay}) as base:
            transport = RelayTransport(f"{base}/chat.send", TOKEN)
            outcome = await transport.send("s", "m", "k", timeout=30)
            assert outcome.state == "error" and "over 16 MiB" in (outcome.error_message or "")
            await transport.close()

    asyncio.run(main())
