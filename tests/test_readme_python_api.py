"""The README's Python API examples run as printed, and write what the README says: cluster_folder(write=False)
only the store, the building blocks nothing at all."""

import os
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _examples():
    text = (REPO / "README.rst").read_text(encoding="utf-8")
    section = text.split("Python API\n==========\n", 1)[1].split("\n======", 1)[0]
    blocks = re.findall(r"::\n\n((?:    .*\n|\n)+)", section)
    return ["\n".join(line[4:] for line in block.splitlines()) for block in blocks]


def _listing(folder):
    return sorted((str(p.relative_to(folder)), p.stat().st_mtime_ns) for p in folder.rglob("*"))


def test_the_python_api_examples_write_what_the_readme_says(make_library, tmp_path, capsys):
    folder_api, building_blocks = _examples()[:2]
    layout = {"dog_1.jpg": "dog.jpg", "dog_2.jpg": "dog.jpg", "cat_1.jpg": "cat.jpg", "cat_2.jpg": "cat.jpg"}

    first = make_library(layout, tmp_path / "first")
    exec(folder_api.replace("~/Pictures/holiday", os.fspath(first)), {})
    assert (first / ".imagecluster").is_dir() and not (first / "clusters").exists()
    assert sorted(capsys.readouterr().out.splitlines()) == [
        "2 ['cat_1.jpg', 'cat_2.jpg']", "2 ['dog_1.jpg', 'dog_2.jpg']",
    ]

    second = make_library(layout, tmp_path / "second")
    before = _listing(second)
    exec(building_blocks.replace("~/Pictures/holiday", os.fspath(second)), {})
    assert _listing(second) == before  # nothing written, nothing touched
    assert sorted(capsys.readouterr().out.splitlines()) == ["['cat_1.jpg', 'cat_2.jpg']", "['dog_1.jpg', 'dog_2.jpg']"]
