"""What every pipeline command shares: one-line errors and a non-zero exit on bad input, never a traceback."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable

from ecgcore.errors import USER_ERRORS, cli_sentence
from ecgcore.logs import internal_error


def fail(message: str, code: int = 2) -> None:
    """Print one line to stderr and exit with ``code``."""
    message = message.strip().rstrip(".") + "."
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(code)


def run(main: Callable[[list[str] | None], int | None], argv: list[str] | None = None) -> None:
    """Call ``main``; user errors become one line and exit 2, Ctrl-C exits 130."""
    try:
        code = main(argv)
    except USER_ERRORS as exc:
        fail(cli_sentence(exc))
    except KeyboardInterrupt:
        print("interrupted.", file=sys.stderr)
        raise SystemExit(130) from None
    except Exception as exc:  # a bug, not the user's input: its traceback goes to the workspace log
        fail(internal_error(exc, "this command"), code=1)
    raise SystemExit(code or 0)


def print_figures(figures: dict, as_json: bool, width: int) -> None:
    """A pipeline's measured figures: one JSON object, or one aligned ``name value`` line each."""
    if as_json:
        print(json.dumps(figures))
    else:
        for key, value in figures.items():
            print(f"{key:{width}s} {value}")
