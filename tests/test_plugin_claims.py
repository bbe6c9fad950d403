"""The docs claim no plugin that does not exist: darktable has one; digiKam and Shotwell get metadata."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _text(name):
    return " ".join((REPO / name).read_text(encoding="utf-8").split())


def test_the_guide_says_what_exists_today_and_names_no_plugin_it_lacks():
    guide = _text("doc/plugin-guide.rst")
    today = guide.split("What exists today ================= ", 1)[1].split(" The contract ====", 1)[0]
    assert "**darktable**: a plugin, shipped and tested" in today
    assert "``imagecluster remote ... --json``" in today
    assert "**digiKam and Shotwell**: no plugin." in today and "through metadata" in today
    assert "**A digiKam DPlugin author** needs" in today
    for text in (guide, _text("README.rst"), _text("doc/darktable.rst")):
        for claim in ("(a digiKam DPlugin)", "Shotwell-style", "as a digiKam plugin would", "as Shotwell does"):
            assert claim not in text, claim
