"""What every ``python -m <tab>`` command line shares: bad input is one ``error: ...`` line and exit status 2.

argparse's own complaints (an unknown choice, a number that is not one, a missing argument) print the whole
usage block and ``prog: error: ...``; a person or a script reading stderr should see the same single line
whether the mistake was caught by argparse or by the command itself.
"""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn

#: The exit status for input a user can fix (a missing file, a bad option value, an unknown name).
USAGE_EXIT = 2


def fail(message: str) -> int:
    """Print ``error: <message>`` (first line only) on stderr and return the usage exit status."""
    first = str(message).strip().splitlines()[0] if str(message).strip() else "invalid input"
    print(f"error: {first}", file=sys.stderr)
    return USAGE_EXIT


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors (and its subcommands' errors) are one line: ``error: ...``, exit 2."""

    def error(self, message: str) -> NoReturn:
        verb = self.prog.split()[-1] if " " in self.prog else ""
        fail(f"{message} (see `{self.prog} --help`)" if verb else message)
        sys.exit(USAGE_EXIT)
