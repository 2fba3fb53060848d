"""Command-line interface: ``emotk <verb>-<noun>``. One module per area registers its commands."""

from emotk.cli.app import app, main  # noqa: F401
from emotk.cli import data  # noqa: F401  (registers commands)
