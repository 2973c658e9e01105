"""What every ``python -m <tab>`` command line shares: bad input is one ``error: ...`` line and exit status 2.

argparse's own complaints (an unknown choice, a number that is not one, a missing argument) print the whole
usage block and ``prog: error: ...``; a person or a script reading stderr should see the same single line
whether the mistake was caught by argparse or by the command itself. ``run`` does the same for what the
command raises: a missing file, a folder given for a file, a file that is not what it claims (bad JSON, a
pickle for weights, text in another encoding), data that cannot be trained on, each one ``error:`` line and
exit 2; only a real bug is a one-line exit 1 (its traceback with ``RECS_DEBUG=1``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import pickle
import sys
import zipfile
from typing import Callable, Mapping, NoReturn, Optional

log = logging.getLogger(__name__)

#: The exit status for input a user can fix (a missing file, a bad option value, an unknown name).
USAGE_EXIT = 2
#: The longest ``error:`` line printed; a message quoting a file's content is cut there.
MESSAGE_CHARS = 1000


def fail(message: str) -> int:
    """Print ``error: <message>`` (first line only) on stderr and return the usage exit status."""
    first = str(message).strip().splitlines()[0] if str(message).strip() else "invalid input"
    if len(first) > MESSAGE_CHARS:  # e.g. a binary file's first "line" quoted back: keep the line readable
        first = first[:MESSAGE_CHARS].rstrip() + " …"
    print(f"error: {first}", file=sys.stderr)
    return USAGE_EXIT


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors (and its subcommands' errors) are one line: ``error: ...``, exit 2."""

    def error(self, message: str) -> NoReturn:
        verb = self.prog.split()[-1] if " " in self.prog else ""
        fail(f"{message} (see `{self.prog} --help`)" if verb else message)
        sys.exit(USAGE_EXIT)


#: What a person's input can make any command raise: bad values and text (ValueError: also JSON, Unicode and
#: image errors, data that cannot be trained on), paths (OSError: missing, a folder, no permission), lookups
#: (KeyError), and files that are not what they claim (truncated, a pickle, a broken zip).
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, OSError, KeyError, EOFError, pickle.UnpicklingError,
                                                zipfile.BadZipFile)


def describe(exc: BaseException) -> str:
    """One readable sentence for an expected exception (the library's own text, with the path where it has one)."""
    if isinstance(exc, IsADirectoryError):
        return f"{exc.filename} is a folder; give the path of a file"
    if isinstance(exc, NotADirectoryError):
        return f"{exc.filename} is not a folder"
    if isinstance(exc, FileNotFoundError) and exc.filename:
        return f"{exc.filename} does not exist"
    if isinstance(exc, OSError) and exc.filename and exc.strerror:
        return f"{exc.filename}: {exc.strerror}"
    if isinstance(exc, json.JSONDecodeError):
        return f"not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})"
    if isinstance(exc, UnicodeDecodeError):
        return f"the file is not UTF-8 text (byte {exc.start}: {exc.reason})"
    if isinstance(exc, pickle.UnpicklingError):
        return "the file is not one this program can read safely (pickles are refused)"
    if isinstance(exc, KeyError) and exc.args:
        return str(exc.args[0])
    return str(exc) or type(exc).__name__


def run(command: Callable[[], Optional[int]], *, expected: tuple[type[BaseException], ...] = (),
        statuses: Optional[Mapping[type[BaseException], int]] = None) -> int:
    """Run a CLI verb; expected failures are one ``error:`` line and exit 2 (or ``statuses[type]``).

    ``expected`` adds the tab's own exception types (a missing dataset, artifact or weights) to
    ``USER_ERRORS``. Anything else is a bug: still one line on stderr, exit 1, and the traceback in the log
    at debug level (``RECS_DEBUG=1`` re-raises it).
    """
    statuses = dict(statuses or {})
    try:
        return int(command() or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except tuple(statuses) + tuple(expected) + USER_ERRORS as exc:
        status = next((code for kind, code in statuses.items() if isinstance(exc, kind)), USAGE_EXIT)
        fail(describe(exc))
        return status
    except Exception as exc:  # noqa: BLE001 - a bug, still one line; the traceback with RECS_DEBUG=1
        if os.environ.get("RECS_DEBUG"):
            raise
        log.debug("unexpected failure", exc_info=True)
        fail(f"{type(exc).__name__}: {describe(exc)} (rerun with RECS_DEBUG=1 for the traceback)")
        return 1
