"""What every ``churnops`` command line shares: argument types and help text.

A value out of range is a usage error (exit 2, one line naming the option), found while the
arguments are parsed, before any heavy import or any work. ``--help`` shows docstrings as plain
text (no reST markup) and every sub-command has a description.
"""

from __future__ import annotations

import argparse
import inspect
import math
import re
from collections.abc import Callable


def int_at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: an integer ``>= minimum``.

    Raises:
        argparse.ArgumentTypeError: not an integer, or below ``minimum`` (argparse prints it).
    """

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} is below the minimum, {minimum}")
        return value

    parse.__name__ = f"integer >= {minimum}"
    return parse


def port(text: str) -> int:
    """An argparse type: a TCP port, 1 to 65535.

    Raises:
        argparse.ArgumentTypeError: not an integer or out of range.
    """
    value = int_at_least(1)(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"{value} is not a TCP port (1 to 65535)")
    return value


def positive_float(text: str) -> float:
    """An argparse type: a finite number ``> 0`` (seconds, hours).

    Raises:
        argparse.ArgumentTypeError: not a number, not finite, or not above 0.
    """
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text} is not a finite number above 0")
    return value


def probability(text: str) -> float:
    """An argparse type: a rate strictly between 0 and 1 (a false-alarm rate).

    Raises:
        argparse.ArgumentTypeError: not a number, or not in (0, 1).
    """
    value = positive_float(text)
    if value >= 1:
        raise argparse.ArgumentTypeError(f"{text} is not between 0 and 1")
    return value


_ROLE = re.compile(r":[a-z]+:`~?([^`]+)`")  # :mod:`ops.services` -> ops.services
_LITERAL = re.compile(r"``([^`]+)``")  # ``churnops run`` -> churnops run


def doc_text(doc: str | None, *, whole: bool = False) -> str:
    """A docstring as ``--help`` text: reST roles and literals unmarked; its first paragraph on
    one line (``whole``: every paragraph, line breaks kept).

    Args:
        doc: the docstring (``None`` gives ``""``).
        whole: keep every paragraph, as written, instead of the first on one line.
    """
    text = inspect.cleandoc(doc or "")
    text = _LITERAL.sub(r"\1", _ROLE.sub(r"\1", text))
    if whole:
        return text
    return " ".join(text.split("\n\n", 1)[0].split())


def add_command(
    commands: argparse._SubParsersAction,  # type: ignore[type-arg]  # argparse's own type
    name: str,
    text: str,
) -> argparse.ArgumentParser:
    """A sub-command listed with ``text`` in its parent's ``--help`` and described by it, as a
    sentence, in its own (argparse shows a sub-command's ``help`` only in its parent's list)."""
    sentence = text[:1].upper() + text[1:] + ("" if text.endswith(".") else ".")
    parser: argparse.ArgumentParser = commands.add_parser(name, help=text, description=sentence)
    return parser
