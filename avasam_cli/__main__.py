from avasam_cli.cli import main

main()
