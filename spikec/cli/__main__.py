"""``python -m spikec.cli``."""
from spikec.cli import main

main()
