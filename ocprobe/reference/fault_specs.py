"""The fault catalogue of the reference gateway and the ``--fault NAME:every=N|rate=P[,seed=S][,OPTION=V]``
specs that choose them, parsed and checked. What each fault does on the wire is ``faults.py``'s; this part
imports nothing heavy, so ``--help`` can list the faults and the CLI can check specs cheaply."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

# name -> (what it does, options of its own with their defaults)
FAULTS: dict[str, tuple[str, dict[str, float]]] = {
    "hang": ("the run's final is never sent", {}),
    "drop": ("the socket is closed when the final is due", {}),
    "error-state": ("the run ends with state error and an errorKind", {}),
    "error-frame": ("chat.send is answered ok:false and no run starts", {}),
    "garbage": ("non-JSON, binary and wrongly shaped frames come before the answer", {}),
    "wrong-reply": ("the reply text lacks the nonce", {}),
    "slow-provider": ("the LLM call starts ms later", {"ms": 2000.0}),
    "duplicate-final": ("the final is sent twice", {}),
    "out-of-order": ("a final of a run nobody started, then the whole run before the chat.send answer", {}),
    "oversize": ("hello advertises maxPayload=bytes; a larger frame comes before the final", {"bytes": 65536.0}),
    "auth-flap": ("the socket is closed when the final is due and the next `connects` connects are refused",
                  {"connects": 1.0}),
    "stall-handshake": ("the socket is closed when the final is due and the next `connects` connects get no "
                        "challenge for ms", {"connects": 1.0, "ms": 1000.0}),
}
SELECTORS = ("every", "rate", "seed")
# (low, high, integer) per option
_RANGES: dict[str, tuple[float, float, bool]] = {
    "every": (1, 1_000_000, True),
    "rate": (0, 1, False),  # low end excluded below
    "seed": (0, 2**32 - 1, True),
    "ms": (0, 600_000, False),
    "bytes": (1024, 16 * 1024 * 1024, True),
    "connects": (1, 1000, True),
}


class FaultSpecError(ValueError):
    """A ``--fault`` that does not parse; the message is one line naming what is wrong."""


@dataclass(frozen=True)
class FaultSpec:
    name: str
    every: int | None = None
    rate: float | None = None
    seed: int = 0
    options: tuple[tuple[str, float], ...] = ()  # the fault's own options, defaults filled in

    def option(self, key: str) -> float:
        return dict(self.options)[key]

    def text(self) -> str:
        """The spec in the form ``parse_fault`` reads, defaults included (for a child's argv and logs)."""
        parts = [f"every={self.every}"] if self.every is not None else [f"rate={self.rate:g}", f"seed={self.seed}"]
        parts += [f"{key}={value:g}" for key, value in self.options]
        return f"{self.name}:{','.join(parts)}"


def parse_fault(text: str) -> FaultSpec:
    """``NAME:every=N`` or ``NAME:rate=P[,seed=S]``, then the fault's own ``KEY=VALUE`` options."""
    name, _, rest = text.strip().partition(":")
    where = f"bad --fault {text!r}"
    if name not in FAULTS:
        raise FaultSpecError(f"{where}: unknown fault {name!r} (choose from {', '.join(FAULTS)})")
    own = FAULTS[name][1]
    values: dict[str, float] = {}
    for item in rest.split(",") if rest.strip() else []:
        key, eq, raw = item.strip().partition("=")
        if not eq or not key:
            raise FaultSpecError(f"{where}: expected KEY=VALUE, got {item.strip()!r}")
        if key not in SELECTORS and key not in own:
            allowed = ", ".join([*SELECTORS, *own])
            raise FaultSpecError(f"{where}: unknown option {key!r} ({name} takes {allowed})")
        if key in values:
            raise FaultSpecError(f"{where}: {key} given twice")
        values[key] = _number(where, key, raw.strip())
    if ("every" in values) == ("rate" in values):
        raise FaultSpecError(f"{where}: give exactly one of every=N or rate=P")
    if "seed" in values and "rate" not in values:
        raise FaultSpecError(f"{where}: seed goes with rate=P only")
    return FaultSpec(
        name=name,
        every=int(values["every"]) if "every" in values else None,
        rate=values.get("rate"),
        seed=int(values.get("seed", 0)),
        options=tuple((key, values.get(key, default)) for key, default in own.items()),
    )


def parse_faults(texts: Iterable[str]) -> tuple[FaultSpec, ...]:
    specs = tuple(parse_fault(text) for text in texts)
    names = [spec.name for spec in specs]
    for name in names:
        if names.count(name) > 1:
            raise FaultSpecError(f"bad --fault: {name} given twice (one --fault per fault name)")
    return specs


def _number(where: str, key: str, raw: str) -> float:
    low, high, integer = _RANGES[key]
    try:
        value = int(raw) if integer else float(raw)
    except ValueError:
        kind = "an integer" if integer else "a number"
        raise FaultSpecError(f"{where}: {key} must be {kind}, got {raw!r}") from None
    if not math.isfinite(value) or not low <= value <= high or (key == "rate" and value == 0):
        bounds = "0 < rate <= 1" if key == "rate" else f"{key} between {low:g} and {high:g}"
        raise FaultSpecError(f"{where}: {key} out of range ({bounds}), got {raw}")
    return value


def describe_faults() -> str:
    """One line per fault for ``--help``."""
    return "; ".join(
        f"{name}{''.join(f',{k}={v:g}' for k, v in own.items())}: {what}" for name, (what, own) in FAULTS.items()
    )
