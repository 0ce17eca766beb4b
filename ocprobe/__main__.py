from ocprobe.cli import main

main()
