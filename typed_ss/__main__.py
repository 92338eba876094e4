"""``python -m typed_ss``: the ``typed-ss`` command."""

from typed_ss.cli import main

main(prog_name="typed-ss")
