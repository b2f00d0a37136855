"""``python -m interpedia.cli``."""

from interpedia.cli import main

main()
