"""The README's two quick-start commands work on a stock Debian/Ubuntu, and CI runs the test one verbatim.

Debian's and Ubuntu's Python refuse ``pip install`` outside a virtual
environment ("externally-managed-environment"), so each command makes one
before it installs anything; ``.ci/run`` (root, fresh machine) ends with the
README's test command, character for character.
"""

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _commands():
    """The two one-line commands of the Quick start section, in order (not the sample output)."""
    text = (REPO / "README.rst").read_text(encoding="utf-8")
    section = text.split("Quick start\n===========\n", 1)[1].split("\n=====", 1)[0]
    return [block for block in re.findall(r"::\n\n    (\S.*)\n", section) if " && " in block]


def test_each_quick_start_command_installs_into_a_virtual_environment():
    commands = _commands()
    assert len(commands) == 2, commands
    for command in commands:
        steps = command.split(" && ")
        venv = next(i for i, step in enumerate(steps) if step.startswith("python3 -m venv "))
        pip = next(i for i, step in enumerate(steps) if step.startswith("pip install "))
        assert venv < pip, command
        folder = steps[venv].split()[-1]
        assert steps[venv + 1] == f". {folder}/bin/activate", command  # pip and python are the venv's


def test_ci_runs_the_readme_test_command_verbatim():
    test_command = _commands()[1]
    assert test_command.endswith("python -m pytest")
    lines = [line for line in (REPO / ".ci" / "run").read_text().splitlines() if line and not line.startswith("#")]
    assert lines[-1] == test_command
