"""The errors echoclr raises for its users, and the exit code each one means on the command line.

Two kinds, one exit code each, the same in every command:

* :class:`UsageError` (exit 2): the input cannot work — a bad path, an unknown label, a folder that is not a
  store, an impossible config, a folder ``--overwrite`` does not recognise. The user fixes the command line.
* :class:`EchoclrError` itself (exit 1): the command was right but the run failed — a missing optional
  dependency (DALI), another rank of a distributed job failed.

The library also raises the standard ``ValueError`` / ``FileNotFoundError`` / ``FileExistsError`` with messages
written for users (config validation, missing files); the CLI treats those as usage errors too
(:func:`exit_code_for`). Anything else is a bug: the CLI prints one line and asks for ``--debug``.
"""

from __future__ import annotations

__all__ = [
    "EXIT_RUNTIME",
    "EXIT_USAGE",
    "EchoclrError",
    "UnknownNameError",
    "UsageError",
    "exit_code_for",
]

EXIT_USAGE = 2
EXIT_RUNTIME = 1

# Standard exceptions whose messages the library writes for users: bad values, missing or existing paths.
_INPUT_ERRORS: tuple[type[BaseException], ...] = (
    ValueError,
    FileNotFoundError,
    FileExistsError,
    NotADirectoryError,
    IsADirectoryError,
    PermissionError,
)


class EchoclrError(Exception):
    """A failure the user should read as one line (exit code 1 on the command line)."""

    exit_code: int = EXIT_RUNTIME


class UsageError(EchoclrError, ValueError):
    """The input cannot work: a bad path, value, label, store or config (exit code 2).

    A ``ValueError`` too, so callers that validate with ``except ValueError`` keep working.
    """

    exit_code = EXIT_USAGE


class UnknownNameError(UsageError, KeyError):
    """A label, split or video id the data does not have (a ``KeyError`` too, for mapping-style callers)."""

    def __str__(self) -> str:  # KeyError's str() is the repr of its argument; users read the message itself
        return str(self.args[0]) if self.args else ""


def exit_code_for(exc: BaseException) -> int | None:
    """The exit code the CLI uses for ``exc``, or None when ``exc`` is not a user-facing error (a bug).

    Args:
        exc: the exception a command raised.

    Returns:
        2 for usage/input errors, 1 for runtime failures, None for anything else.
    """
    if isinstance(exc, EchoclrError):
        return exc.exit_code
    if isinstance(exc, _INPUT_ERRORS):
        return EXIT_USAGE
    return None
