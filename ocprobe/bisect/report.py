"""The result of a bisect: the boundary versions, the changelog entries between them (from the newer
one's own CHANGELOG.md), the git command to go on commit by commit, and the Markdown report."""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlsplit

from ocprobe.bisect.search import GOOD, SKIP, UNKNOWN, boundary, old_verdict
from ocprobe.bisect.state import DONE, LOG_NAME, BisectState, VersionRecord
from ocprobe.openclaw.semver import Version, is_version

TAG_PREFIX = "v"  # OpenClaw tags its releases v2026.5.3 (its package.json names the repository)
REGRESSION, FIX = "regression", "fix"
_HEADING = re.compile(r"^##\s+v?(\S+)", re.MULTILINE)  # '## 2026.5.4': one section per release

PackageDir = Callable[[str], "Path | None"]


@dataclass
class BisectResult:
    direction: str  # regression (good is the older endpoint) or fix
    last_old: str  # the last good version of a regression, the last bad one of a fix
    first_new: str  # the first bad version of a regression, the first good one of a fix
    undecided: list[str]  # skipped or unknown versions between them: the change may be in any of them
    changelog: list[tuple[str, str]]  # (version, its entries) after last_old up to first_new
    changelog_source: str | None  # the CHANGELOG.md they come from
    repository: str | None
    git: list[str]  # commands to continue commit by commit

    @property
    def labels(self) -> tuple[str, str]:
        return ("last good", "first bad") if self.direction == REGRESSION else ("last bad", "first good")

    def to_json(self) -> dict[str, object]:
        return asdict(self)


def changelog_sections(text: str) -> list[tuple[str, str]]:
    """(version, body) for every ``## VERSION`` section of a changelog, in file order."""
    heads = [m for m in _HEADING.finditer(text) if is_version(m.group(1))]
    ends = [m.start() for m in heads[1:]] + [len(text)]
    return [(m.group(1), text[m.end():end].strip()) for m, end in zip(heads, ends)]


def changelog_between(package_dir: Path | None, older: str, newer: str) -> tuple[list[tuple[str, str]], str | None]:
    """Sections of the versions after ``older`` up to ``newer`` (by precedence), from ``package_dir``'s
    CHANGELOG.md (a release's changelog carries the sections of the releases before it)."""
    if package_dir is None:
        return [], None
    path = package_dir / "CHANGELOG.md"
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return [], None
    low, high = Version.parse(older), Version.parse(newer)
    return [(v, body) for v, body in changelog_sections(text) if low < Version.parse(v) <= high], str(path)


def repository_url(package_dir: Path | None) -> str | None:
    """A clone URL from package.json's ``repository`` (object or string, npm's shorthands included)."""
    if package_dir is None:
        return None
    try:
        repo = json.loads((package_dir / "package.json").read_text(encoding="utf-8")).get("repository")
    except (OSError, ValueError, AttributeError):
        return None
    url = repo.get("url") if isinstance(repo, dict) else repo
    if not isinstance(url, str) or not url.strip():
        return None
    url = url.strip().removeprefix("git+")
    if url.startswith("github:"):
        url = url[len("github:"):]
    if re.fullmatch(r"[\w.-]+/[\w.-]+", url):  # npm's 'owner/repo' shorthand means GitHub
        url = f"https://github.com/{url}"
    return url


def git_commands(repository: str | None, direction: str, last_old: str, first_new: str) -> list[str]:
    lines = []
    if repository:
        directory = Path(urlsplit(repository).path).name.removesuffix(".git") or "repo"
        lines.append(f"git clone {shlex.quote(repository)} && cd {shlex.quote(directory)}")
    new, old = f"{TAG_PREFIX}{first_new}", f"{TAG_PREFIX}{last_old}"
    if direction == REGRESSION:
        lines.append(f"git bisect start {new} {old}")
    else:  # looking for a fix: the newer state is the good one, which git's default terms cannot say
        lines.append(f"git bisect start --term-old=broken --term-new=fixed {new} {old}")
    return lines


def build_result(state: BisectState, package_dir: PackageDir) -> BisectResult:
    old = old_verdict(state.versions, state.good)
    verdicts = state.verdicts()
    lo, hi = boundary(state.versions, verdicts, old)
    last_old, first_new = state.versions[lo], state.versions[hi]
    direction = REGRESSION if old == GOOD else FIX
    changelog, source = changelog_between(package_dir(first_new), last_old, first_new)
    repository = repository_url(package_dir(first_new)) or repository_url(package_dir(last_old))
    return BisectResult(
        direction=direction, last_old=last_old, first_new=first_new,
        undecided=[v for v in state.versions[lo + 1:hi] if verdicts.get(v) in (SKIP, UNKNOWN)],
        changelog=changelog, changelog_source=source, repository=repository,
        git=git_commands(repository, direction, last_old, first_new),
    )


def result_line(result: BisectResult) -> str:
    last, first = result.labels
    line = f"{first} {result.first_new}, {last} {result.last_old}"
    if result.undecided:
        line += f"; the change may also be in {', '.join(result.undecided)} (skipped or undecided)"
    return line


def batch_notes(record: VersionRecord) -> str:
    return "; ".join(f"b{n} {b.failed}/{b.trials}{f' {b.note}' if b.note else ''}" for n, b in enumerate(record.batches, 1))


def markdown(state: BisectState, result: BisectResult | None, run_dir: Path) -> str:
    def cell(text: str) -> str:
        return " ".join(text.split()).replace("|", "\\|")

    lines = [f"# ocprobe bisect: {state.good} (good) .. {state.bad} (bad)", ""]
    if result is not None:
        lines.append(f"**Result:** {result_line(result)}.")
    else:
        lines.append(f"**Status:** {state.status}{f': {state.message}' if state.message else ''}.")
    lines += ["", "Reproduce:", "", "```sh", state.command, "```", ""]
    if state.status != DONE:
        lines += ["Resume:", "", "```sh", f"ocprobe bisect --resume {shlex.quote(str(run_dir))}", "```", ""]
    how = ("one run of the command decides each version (exit 0 good, 125 skip, other bad)" if state.exact else
           f"risk {state.risk:g} per version, each test after a batch at {state.level:.2g} (the risk split over the "
           f"batches a version may get), at most {state.max_calls} calls per version; BAD: more failures than the "
           "versions decided good, GOOD: fewer than those decided bad (one-sided Fisher exact tests)")
    lines += [f"Range: {len(state.versions)} versions in release order: {', '.join(state.versions)}.", "",
              f"Verdicts: {how}.", "",
              f"Spent: {state.calls} calls over {len(state.records)} versions in {state.elapsed_s:.0f} s "
              f"(log: {LOG_NAME}).", "", "## Steps", "",
              "| step | version | role | verdict | failed/trials | calls | time | evidence | batches |",
              "|---:|---|---|---|---:|---:|---:|---|---|"]
    for r in state.records:
        lines.append(f"| {r.step} | {r.version} | {r.role} | {(r.verdict or 'undecided').upper()} | {r.counts} | "
                     f"{r.calls} | {r.seconds:.0f} s | {cell(r.evidence)} | {cell(batch_notes(r))} |")
    if result is not None:
        last, first = result.labels
        lines += ["", "## Result", "", f"- {last}: {result.last_old}", f"- {first}: {result.first_new}"]
        if result.undecided:
            lines.append(f"- skipped or undecided between them: {', '.join(result.undecided)}")
        lines += ["", "Continue commit by commit in a clone (tags are `v<version>`):", "", "```sh", *result.git, "```"]
        lines += ["", f"## Changelog after {result.last_old} up to {result.first_new}", ""]
        if result.changelog:
            lines.append(f"From `{result.changelog_source}`.")
            for version, body in result.changelog:
                lines += ["", f"### {version}", "", body or "(no entries)"]
        else:
            lines.append("No changelog: the package of the first version after the boundary is not installed here.")
    return "\n".join(lines) + "\n"
