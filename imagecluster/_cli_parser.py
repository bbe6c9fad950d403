"""The command line's argument parser: a mistyped option is reported by the command it was meant for.

argparse lets a subcommand pass on what it does not know, and the top-level
parser then prints *its* usage ("imagecluster [-h] [--version] COMMAND")
without a hint. Here each parser refuses unknown options itself, with its own
usage and the closest option it has: ``cluster photos --smi 0.8`` says
"unrecognized arguments: --smi 0.8 (did you mean --sim?)".

Also the two helpers every numeric option's type is made of: the text as a
number, then :mod:`imagecluster._validation`'s rule, each failure worded for
the option.
"""

import argparse
import difflib

from ._exceptions import InvalidParameter

__all__ = ["Parser", "checked_arg", "number_arg"]


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose subcommands (made of this class too) report their own unknown options."""

    def parse_known_args(self, args=None, namespace=None):
        namespace, extras = super().parse_known_args(args, namespace)
        if extras:
            self.error(f"unrecognized arguments: {' '.join(extras)}{self._suggestion(extras)}")
        return namespace, extras

    def _suggestion(self, extras):
        options = [option for option in self._option_string_actions if option.startswith("--")]
        for extra in extras:
            if extra.startswith("-"):
                close = difflib.get_close_matches(extra.split("=", 1)[0], options, n=1, cutoff=0.6)
                if close:
                    return f" (did you mean {close[0]}?)"
        return ""


def number_arg(text, message):
    """The command line's text as a float (the checks of _validation take numbers, not text)."""
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(message) from None


def checked_arg(check, value, message):
    """``check(value)`` from _validation, the one rule; its failure as argparse's, worded for the option."""
    try:
        return check(value)
    except InvalidParameter:
        raise argparse.ArgumentTypeError(message) from None
