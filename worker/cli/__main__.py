"""`python -m worker.cli`: the livedub command."""

from worker.cli.main import main

main()
