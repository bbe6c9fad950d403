"""TensorFlow's start-up text never reaches a user's terminal, unless asked for with -vv.

Every run that loads the model used to print absl's "All log messages before
absl::InitializeLog() is called are written to STDERR" and "oneDNN custom
operations are on ..." twice each: the C++ side writes them while
TensorFlow is imported, past TF_CPP_MIN_LOG_LEVEL. The real command runs here
on new photos, so the model is loaded.
"""

import subprocess
import sys

TENSORFLOW_TEXT = ("absl::InitializeLog", "oneDNN custom operations", "port.cc")


def _run(*args):
    return subprocess.run(
        [sys.executable, "-m", "imagecluster", *args], capture_output=True, text=True, timeout=300,
    )


def test_loading_the_model_prints_nothing_from_tensorflow(make_library, tmp_path):
    quiet = _run("index", str(make_library({"a.jpg": "dog.jpg", "b.jpg": "cat.jpg"}, tmp_path / "one")))
    assert quiet.returncode == 0, quiet.stderr
    assert not [text for text in TENSORFLOW_TEXT if text in quiet.stderr], quiet.stderr

    # The lines are kept for -vv, as debug messages: the check above is not passing by luck.
    bare = subprocess.run([sys.executable, "-c", "import tensorflow"], capture_output=True, text=True, timeout=300)
    loud = _run("index", "-vv", str(make_library({"c.jpg": "dog.jpg"}, tmp_path / "two")))
    assert loud.returncode == 0, loud.stderr
    for text in TENSORFLOW_TEXT:
        if text in bare.stderr:  # what this TensorFlow build prints at all
            logged = [line for line in loud.stderr.splitlines() if line.startswith("imagecluster: ") and text in line]
            assert logged, loud.stderr
