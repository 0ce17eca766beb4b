"""``python -m ocprobe.reference SPEC.json``: the gateway child of an embedded run.

It is not the ``ocprobe gateway serve`` command because every embedded run waits for it to start, and the
CLI's imports (typer, rich, every command) would add a fifth of a second to each. SPEC.json holds the
``GatewayConfig`` fields but the secrets: the token is read from ``token_file``, the provider's key from
``$OCPROBE_PROVIDER_API_KEY``. The ready line on stdout is ``gateway serve --json``'s.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

from ocprobe.process import exit_now
from ocprobe.reference.defaults import PROVIDER_KEY_ENV
from ocprobe.reference.fault_specs import parse_faults
from ocprobe.reference.gateway import GatewayConfig
from ocprobe.reference.serve import serve


def main(spec_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    token = Path(spec.pop("token_file")).read_text(encoding="utf-8").strip()
    config = GatewayConfig(
        token=token, provider_api_key=os.environ[PROVIDER_KEY_ENV], faults=parse_faults(spec.pop("faults")),
        log_file=Path(spec.pop("log_file")), **spec,
    )
    asyncio.run(serve(config, on_ready=lambda info: print(json.dumps(info.record()), flush=True)))


if __name__ == "__main__":
    try:
        main(*sys.argv[1:])
    except KeyboardInterrupt:  # Ctrl-C reaches the whole process group: the parent reports it
        sys.exit(130)
    exit_now(0)  # serve() has closed the sockets and the log; the embedded run waits for this exit
