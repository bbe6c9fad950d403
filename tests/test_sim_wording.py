"""One wording of what a sim means, everywhere a user or plugin author reads it, matching the measurements.

The README's table and benchmark say it: at 0.9 only near-duplicates stay
together (burst recall 0.60), at 0.8 bursts do (0.96), 0.7 is the default.
"""

import re
from pathlib import Path

from imagecluster.cli import _SIM_HELP

REPO = Path(__file__).resolve().parents[1]
WORDING = "0.9 near-duplicates, 0.8 bursts, 0.7 bursts and re-takes of the same scene or subject, 0.5 loosely related"
PLACES = ["doc/darktable.rst", "doc/plugin-guide.rst", "imagecluster/plugin_api/darktable/imagecluster.lua"]


def _words(text):
    return " ".join(re.sub(r'"\s*\.\.\s*"', "", text).split())  # also joins Lua's "a " .. "b"


def test_every_place_says_the_same_as_the_readme_table():
    readme = _words((REPO / "README.rst").read_text(encoding="utf-8"))
    assert "0.9 near-duplicates: the same shot saved twice" in readme
    assert "0.8 bursts: the camera moved a little" in readme
    assert "0.7 **default**: bursts and re-takes of the same scene or subject" in readme
    for text, where in [(_SIM_HELP, "cluster --help")] + [((REPO / p).read_text(encoding="utf-8"), p) for p in PLACES]:
        assert WORDING in _words(text), where
        assert "near-duplicates and bursts" not in _words(text), where
