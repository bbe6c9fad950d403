"""The run's summary adds up: the total is new + changed + unchanged, unreadable files are listed apart; 1 cluster.

The command runs as its own process, as a user runs it (and so that TensorFlow
loads there, not in the test process).
"""

import subprocess
import sys


def test_the_summary_counts_add_up_and_one_is_singular(make_library):
    library = make_library({"a.jpg": "dog.jpg", "b.jpg": "dog.jpg"})
    (library / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a JPEG")
    run = subprocess.run([sys.executable, "-m", "imagecluster", "cluster", str(library), "--quiet"],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    out = run.stdout
    assert f"{library}: 2 photos (2 new, 0 changed, 0 unchanged), model lite0\n" in out
    assert "skipped 1 file(s) that could not be read:\n" in out
    assert out.endswith(f"1 cluster with 2 photos written to {library / 'clusters'}\n")
