"""Bad input to the command line and to files: refused before anything runs, one line, exit 2.

The cases are the BAD_INPUTS table of tests/robustness_cases.py. Each goes through ``ocprobe``'s real
entry point (``ocprobe.cli.main``, argv, exit status, stdout and stderr) in this process: eighty
interpreter start-ups would cost over a minute. A case that is not refused is cut by an alarm."""

from __future__ import annotations

import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ocprobe.cli import main
from tests.robustness_cases import BAD_INPUTS, FILES, BadInput

GUARD_S = 30  # a refusal takes milliseconds; a probe that runs instead is cut here


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    files = tmp_path_factory.mktemp("inputs")
    for name, data in FILES.items():
        (files / name).write_bytes(data)
    return files


@pytest.fixture
def guarded() -> Iterator[None]:
    """ocprobe's main installs a SIGTERM handler; put pytest's back, and cut a run that was not refused."""

    def cut(signum: int, frame: object) -> None:
        raise TimeoutError(f"not refused within {GUARD_S}s")

    term = signal.getsignal(signal.SIGTERM)
    alarm = signal.signal(signal.SIGALRM, cut)
    signal.alarm(GUARD_S)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, alarm)
        signal.signal(signal.SIGTERM, term)


def test_case_ids_are_unique() -> None:
    assert len({bad.id for bad in BAD_INPUTS}) == len(BAD_INPUTS)


@pytest.mark.parametrize("bad", BAD_INPUTS, ids=[bad.id for bad in BAD_INPUTS])
def test_refused_in_one_line_with_exit_2(bad: BadInput, inputs: Path, tmp_path: Path, guarded: None,
                                         monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    cache = tmp_path / "cache"
    monkeypatch.delenv("OPENCLAW_GATEWAY_TOKEN", raising=False)
    monkeypatch.setenv("OCPROBE_CACHE", str(cache))
    monkeypatch.setenv("COLUMNS", "200")
    for name, value in bad.env:
        monkeypatch.setenv(name, value.replace("{tmp}", str(inputs)))
    monkeypatch.setattr(sys, "argv", ["ocprobe", *(arg.replace("{tmp}", str(inputs)) for arg in bad.argv)])
    with pytest.raises(SystemExit) as exited:
        main()
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert exited.value.code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: ") and bad.error in lines[0], err
    assert out == ""
    assert not cache.exists()  # nothing ran: no run directory, no gateway state
