"""The command line's argument parser: a mistyped option is reported by the command it was meant for.

argparse lets a subcommand pass on what it does not know, and the top-level
parser then prints *its* usage ("imagecluster [-h] [--version] COMMAND")
without a hint. Here each parser refuses unknown options itself, with its own
usage and the closest option it has: ``cluster photos --smi 0.8`` says
"unrecognized arguments: --smi 0.8 (did you mean --sim?)".
"""

import argparse
import difflib

__all__ = ["Parser"]


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
