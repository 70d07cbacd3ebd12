"""``python -m filterbench.harness.cli``: the ``filterbench`` command (what Slurm array scripts call)."""

from filterbench.harness.cli import main

main()
