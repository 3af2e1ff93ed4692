"""`python -m forgetting ...`: the command line, as the `forgetting` script runs it."""

from forgetting.cli import main

main()
