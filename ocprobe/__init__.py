"""ocprobe: reproduce, measure and bisect regressions in LLM chat gateways."""

__version__ = "0.1.0"
