"""Entry point for ``python -m repalign``."""

from repalign.cli import main

main()
