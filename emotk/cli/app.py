"""The typer app shared by every ``emotk.cli.*`` module, and the entry point.

Subcommand modules import heavy libraries (torch, lhotse) inside their functions,
so ``emotk --help`` stays fast.
"""

from __future__ import annotations

import sys

import typer

app = typer.Typer(
    name="emotk",
    help="Speech emotion recognition toolkit: Kaldi-style data dirs, features, training, scoring.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

_state = {"verbose": False}


@app.callback()
def _root(verbose: bool = typer.Option(False, "--verbose", "-v", help="Show tracebacks on errors.")):
    """emotk: speech emotion recognition in the Kaldi tradition.

    Example: emotk validate-data-dir data/emodb/all
    """
    _state["verbose"] = verbose


def log(msg: str) -> None:
    """One log line on stderr (recipes capture it in their logs)."""
    print(f"emotk: {msg}", file=sys.stderr, flush=True)


def main() -> None:
    from emotk.errors import EmotkError
    import emotk.cli  # noqa: F401  (registers the subcommands)

    try:
        app()
    except EmotkError as e:
        if _state["verbose"]:
            raise
        print(f"emotk: error: {e}", file=sys.stderr)
        sys.exit(1)
    except OSError as e:  # a file system refusal no emotk check anticipated: still one line naming the file
        if _state["verbose"]:
            raise
        where = f"{e.filename}: " if e.filename else ""
        print(f"emotk: error: {where}{e.strerror or e}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("emotk: interrupted", file=sys.stderr)
        sys.exit(130)
