"""``python -m agent`` runs the ``mtrec`` CLI."""

from agent.cli import main

main()
