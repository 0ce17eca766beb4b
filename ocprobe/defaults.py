"""Names and defaults the CLI shows in ``--help``, kept apart from the modules that use them (the engine,
the targets) so that ``--help`` imports none of the core."""

DEFAULT_MESSAGE = "Reply with exactly this token and nothing else: {nonce}"
DEFAULT_SESSION_KEY = "agent:test:main"
EMBEDDED = "embedded"
OPENCLAW_PREFIX = "openclaw@"
DEFAULT_TOKEN_ENV = "OPENCLAW_GATEWAY_TOKEN"
MATRIX_TITLE = "OpenClaw compatibility matrix"
