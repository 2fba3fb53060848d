"""Command-line interface: ``emotk <verb>-<noun>``. One module per area registers its commands;
the import order below is the order of ``emotk --help`` (the order of a recipe)."""

from emotk.cli.app import app, main  # noqa: F401
from emotk.cli import data  # noqa: F401  (registers commands)
from emotk.cli import corpora  # noqa: F401
from emotk.cli import augment  # noqa: F401
from emotk.cli import features  # noqa: F401
from emotk.cli import train  # noqa: F401
from emotk.cli import deploy  # noqa: F401
from emotk.cli import tune  # noqa: F401
from emotk.cli import evaluate  # noqa: F401
from emotk.cli import analysis  # noqa: F401
from emotk.cli import recola  # noqa: F401
