"""Real OpenClaw versions installed from npm into ocprobe's cache, each with a Node it accepts."""
