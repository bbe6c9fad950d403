"""The summary of a library of RAW + JPEG shots counts shots, as the clusters do, and says so (issue 16).

The commands run in a subprocess (they load TensorFlow, this process must not).
"""

import subprocess
import sys

from imagecluster._pairs import count_pairs

from _raw_library import write_raw_library


def imagecluster(*argv):
    result = subprocess.run([sys.executable, "-m", "imagecluster", *map(str, argv)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_count_pairs_counts_raw_files_that_have_a_jpeg_of_the_same_shot():
    assert count_pairs([]) == 0
    assert count_pairs(["a/IMG_1.CR2", "a/IMG_1.JPG", "a/IMG_2.NEF", "b/IMG_2.jpg", "a/x.png", "a/x.jpg"]) == 1
    assert count_pairs(["IMG_1.dng", "IMG_1.heic", "IMG_2.ARW", "IMG_2.jpeg", "IMG_3.raf"]) == 2


def test_index_and_cluster_count_a_raw_jpeg_shot_once(tmp_path):
    library = tmp_path / "photos"
    files = write_raw_library(library)  # 5 DNGs and 2 shots as .DNG + .JPG: 9 files, 7 photos
    assert len(files) == 9
    out = imagecluster("cluster", library, "--quiet")
    assert f"{library}: 7 photos (2 RAW + JPEG pairs counted once), 9 files (9 new, 0 changed, 0 unchanged), " \
           "model lite0\n" in out, out
    assert out.endswith(f"2 clusters with 7 photos written to {library / 'clusters'}\n"), out

    out = imagecluster("index", library, "--quiet")
    assert out == f"{library}: 7 photos (2 RAW + JPEG pairs counted once), 9 files (0 new, 0 changed, 9 unchanged), " \
                  "model lite0\n"

    (library / "pairs" / "IMG_0002.JPG").unlink()  # the shot is its RAW alone now: one photo, one file
    out = imagecluster("index", library, "--quiet")
    assert out == f"{library}: 7 photos (1 RAW + JPEG pair counted once), 8 files (0 new, 0 changed, 8 unchanged, " \
                  "1 gone), model lite0\n"
