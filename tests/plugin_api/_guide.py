"""What the tests of doc/plugin-guide.rst share: finding its examples, building and running them.

Each example is found as the ``.. code-block:: LANGUAGE`` blocks of the
section with a given title; a section or block that is not there fails the
test, so an edit of the guide cannot silently turn a test off. A toolchain
that is missing skips the test and says what to install; with
IMAGECLUSTER_REQUIRE_EXAMPLES=1 (as .ci/run sets) it fails instead.
"""

import os
import re
import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
GUIDE = ROOT / "doc" / "plugin-guide.rst"
DATA = ROOT / "tests" / "data"

CPP = "C++ / Qt (QtDBus, digiKam's D-Bus stack)"
VALA = "Vala (GDBus, Shotwell's D-Bus stack)"
PYTHON = "Python"
SHELL = "Shell (or any program that can run a command)"
CONTRACT = "The contract"

RUN_TIMEOUT = 300  # seconds; a first Cluster or an activation on a loaded 2-core machine



def sections(text):
    """{title: [lines]} of the guide's ``====``-underlined sections."""
    lines = text.splitlines()
    found, title, body = {}, None, []
    for i, line in enumerate(lines):
        underline = lines[i + 1].strip() if i + 1 < len(lines) else ""
        if line.strip() and underline and set(underline) == {"="} and len(underline) >= len(line.strip()):
            if title is not None:
                found[title] = body
            title, body = line.strip(), []
        elif title is not None:
            body.append(line)
    if title is not None:
        found[title] = body
    return found


def code_blocks(title, language, count=1):
    """The ``count`` ``.. code-block:: language`` blocks of the guide's section ``title``, as text."""
    found = sections(GUIDE.read_text(encoding="utf-8"))
    assert title in found, f"doc/plugin-guide.rst has no section {title!r} (the test looks its examples up there)"
    lines = found[title]
    blocks = []
    for i, line in enumerate(lines):
        if line.strip() != f".. code-block:: {language}" or line != line.lstrip():
            continue
        body = []
        for following in lines[i + 1:]:
            if following.strip() and not following.startswith((" ", "\t")):
                break
            body.append(following)
        code = textwrap.dedent("\n".join(body)).strip("\n")
        code = "\n".join(line for line in code.splitlines() if not re.match(r":\w[\w-]*:", line))  # options
        blocks.append(code.strip("\n") + "\n")
    assert len(blocks) == count, (
        f"section {title!r} of doc/plugin-guide.rst has {len(blocks)} ``.. code-block:: {language}`` "
        f"blocks, the test expects {count}"
    )
    assert all(block.strip() for block in blocks), f"an empty ``.. code-block:: {language}`` in {title!r}"
    return blocks


# Set to 1 where the toolchains are installed (as CI may): a missing one is then a failure, not a skip.
REQUIRE = os.environ.get("IMAGECLUSTER_REQUIRE_EXAMPLES") == "1"


def skip_unless(condition, reason):
    if not condition:
        if REQUIRE:
            pytest.fail(f"{reason}, and IMAGECLUSTER_REQUIRE_EXAMPLES=1")
        pytest.skip(reason)


def pkg_config(*args):
    if not shutil.which("pkg-config"):
        return None
    answer = subprocess.run(["pkg-config", *args], capture_output=True, text=True, timeout=60)
    return answer.stdout.strip() if answer.returncode == 0 else None


def compile_in(argv, folder):
    answer = subprocess.run(argv, cwd=folder, capture_output=True, text=True, timeout=600)
    assert answer.returncode == 0, f"{' '.join(argv)} failed:\n{answer.stdout}\n{answer.stderr}"
    return answer.stdout + answer.stderr


def qt_moc():
    """Qt 6's moc; skips (or fails) where g++ or Qt 6's D-Bus development files are missing."""
    skip_unless(shutil.which("g++"), "g++ is missing (Debian: g++)")
    skip_unless(pkg_config("--exists", "Qt6DBus") is not None,
                 "Qt 6 D-Bus development files are missing (Debian: qt6-base-dev, pkg-config)")
    moc = Path(pkg_config("--variable=libexecdir", "Qt6Core") or "/nonexistent") / "moc"
    skip_unless(os.access(moc, os.X_OK), f"Qt 6's moc is missing ({moc}; Debian: qt6-base-dev)")
    return moc


def run_program(argv, env=None, cwd=None, timeout=RUN_TIMEOUT):
    """Run a program; (exit status, stdout and stderr together as text)."""
    env = dict(os.environ if env is None else env, LC_ALL="C.UTF-8")  # as in a desktop session
    answer = subprocess.run(list(map(str, argv)), env=env, cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, timeout=timeout)
    return answer.returncode, answer.stdout.decode("utf-8")
