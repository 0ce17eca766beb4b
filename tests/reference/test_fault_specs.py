"""``--fault`` specs: every fault's spec reads back from its text, and bad specs are one-line errors."""

from __future__ import annotations

import pytest

from ocprobe.reference.fault_specs import FAULTS, FaultSpecError, describe_faults, parse_fault, parse_faults


@pytest.mark.parametrize("name", list(FAULTS))
def test_a_spec_reads_back_from_its_text(name: str) -> None:
    for spec in (parse_fault(f"{name}:every=3"), parse_fault(f"{name}:rate=0.25,seed=9")):
        assert parse_fault(spec.text()) == spec
    assert parse_faults([f" {name}:every=1 "])[0].every == 1


@pytest.mark.parametrize("text", ["", ":every=1", "hang:", "hang:every=1,", "hang:every=1e3", "drop:rate=-0.1",
                                  "oversize:every=1,bytes=10", "auth-flap:every=1,connects=0", "hang:every=1,,seed=2"])
def test_bad_specs_raise_one_line(text: str) -> None:
    with pytest.raises(FaultSpecError) as raised:
        parse_fault(text)
    assert "\n" not in str(raised.value) and str(raised.value).startswith("bad --fault")


def test_the_help_names_every_fault_with_its_options() -> None:
    text = describe_faults()
    for name, (_, own) in FAULTS.items():
        assert name in text
        for key, default in own.items():
            assert f"{key}={default:g}" in text
