"""Release order and engines.node ranges, as npm's semver decides them."""

from __future__ import annotations

import pytest

from ocprobe.openclaw.node import choose_node_version
from ocprobe.openclaw.semver import Range, Version, is_version, sort_versions


def test_release_order_puts_prereleases_before_their_release() -> None:
    published = ["2026.5.3", "2026.4.29", "2026.5.3-1", "2026.4.29-beta.10", "2026.4.29-beta.1", "2026.5.2",
                 "2026.4.29-beta.2", "2026.4.29-alpha", "2026.4.29-1"]
    assert sort_versions(published) == [
        "2026.4.29-1",  # numeric identifiers sort before alphanumeric ones
        "2026.4.29-alpha", "2026.4.29-beta.1", "2026.4.29-beta.2", "2026.4.29-beta.10", "2026.4.29",
        "2026.5.2",
        "2026.5.3-1",  # npm reads '-1' as a prerelease of 2026.5.3, not a later build
        "2026.5.3",
    ]


def test_version_parsing() -> None:
    assert Version.parse("v22.14.0") == Version(22, 14, 0)
    assert Version.parse("1.2.3-rc.1+build.5") == Version(1, 2, 3, ("rc", "1"))
    assert str(Version.parse("2026.5.3-1")) == "2026.5.3-1"
    assert Version.parse("1.0.0+a") == Version.parse("1.0.0+b")  # build metadata has no precedence
    for bad in ("latest", "2026.5", "1.2.3.4", "../1.2.3", "1.2.3-"):
        assert not is_version(bad)
        with pytest.raises(ValueError):
            Version.parse(bad)


@pytest.mark.parametrize(("range_text", "inside", "outside"), [
    (">=22.14.0", ["22.14.0", "22.23.3", "26.10.0"], ["20.20.2", "22.13.9"]),
    ("^22.14.0", ["22.14.0", "22.99.0"], ["23.0.0", "22.13.0"]),
    ("~22.14.0", ["22.14.0", "22.14.9"], ["22.15.0", "22.13.9"]),
    ("22.14.0", ["22.14.0"], ["22.14.1"]),
    ("=22.14.0", ["22.14.0"], ["22.14.1"]),
    (">=24.16.0 <25 || >=26.1.0", ["24.16.0", "24.21.0", "26.1.0"], ["24.15.0", "25.9.0", "26.0.0"]),
    (">= 18", ["18.0.0", "20.20.2"], ["17.9.9"]),
    (">=18 <=22.14", ["22.14.9"], ["22.15.0"]),
    (">22", ["23.0.0"], ["22.99.99"]),
    ("<22", ["21.9.9"], ["22.0.0"]),
    ("22.x", ["22.0.0", "22.23.3"], ["23.0.0", "21.9.9"]),
    ("^0.2.3", ["0.2.9"], ["0.3.0"]),
    ("^0.0.3", ["0.0.3"], ["0.0.4"]),
    ("~22", ["22.5.0"], ["23.0.0"]),
    ("*", ["0.0.1", "26.0.0"], []),
    ("", ["0.0.1"], []),
    (">=20 || ^18.17", ["18.17.0", "21.0.0"], ["19.0.0", "18.16.0"]),
])
def test_ranges(range_text: str, inside: list[str], outside: list[str]) -> None:
    wanted = Range.parse(range_text)
    assert [v for v in inside if v not in wanted] == []
    assert [v for v in outside if v in wanted] == []


def test_prerelease_only_matches_a_range_naming_one_of_the_same_release() -> None:
    assert "23.0.0-rc.1" not in Range.parse(">=22")
    assert "22.0.0-rc.2" in Range.parse(">=22.0.0-rc.1")
    assert "22.1.0-rc.2" not in Range.parse(">=22.0.0-rc.1")


@pytest.mark.parametrize("unsupported", ["1.2.3 - 2.3.4", ">=22 &&", "node22"])
def test_unsupported_range_forms_are_refused(unsupported: str) -> None:
    with pytest.raises(ValueError):
        Range.parse(unsupported)


PUBLISHED = ["20.20.2", "22.13.0", "22.14.0", "22.20.0", "22.23.3", "24.15.0", "24.16.0", "24.21.0", "25.9.0",
             "26.0.0", "26.1.0", "26.10.0"]


@pytest.mark.parametrize(("range_text", "cached", "expected"), [
    (">=22.14.0", [], "22.23.3"),  # newest in the floor major, not the newest Node there is
    (">=22.14.0", ["22.20.0"], "22.20.0"),  # an already fetched one in that major saves a download
    (">=22.14.0", ["24.21.0"], "22.23.3"),  # ... but not one of another major
    (">=24.16.0 <25 || >=26.1.0", [], "24.21.0"),
    (">=27", [], None),
])
def test_choose_node_version(range_text: str, cached: list[str], expected: str | None) -> None:
    assert choose_node_version(Range.parse(range_text), PUBLISHED, cached) == expected
