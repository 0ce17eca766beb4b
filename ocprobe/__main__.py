from ocprobe.cli import entry

entry()
