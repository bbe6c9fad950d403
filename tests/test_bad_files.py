"""Bad, odd and special files among good photos: the real CLI keeps going, says why once, and harms nothing.

The corpus (tests/_bad_files.py) is made of real files: broken ones (zero
bytes, truncated, text or noise named like photos, a bad PNG checksum,
decompression bombs, a FIFO, a socket, a device, unreadable, deleted between
listing and reading, still being written), odd but valid photos (16-bit,
1-bit, palette with transparency, CMYK, grey, animated, multi-page,
EXIF-rotated, damaged EXIF, odd names) and things that are not the library's
photos by design (symlinks, a folder named like a photo).
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import pytest
from PIL import Image

from imagecluster import NotAnImage
from imagecluster.cli import _shown
from imagecluster.images import load_image

from _bad_files import DATA, camera_moved, disk_state, make_corpus, tree_clusters, write_photos

# The real command, with one file deleted after the listing, as it is about to be read.
_RUN_CLI = """
import os, sys
import imagecluster._pipeline as pipeline
original = pipeline.load_image
def load_image(path, size):
    if os.path.basename(path) == "vanishing.jpg":
        os.unlink(path)
    return original(path, size)
pipeline.load_image = load_image
from imagecluster.cli import main
sys.exit(main(sys.argv[1:]))
"""


def cli(*args):
    result = subprocess.run(
        [sys.executable, "-c", _RUN_CLI, *map(os.fspath, args)],
        capture_output=True, text=True, errors="surrogateescape", timeout=300,
    )
    assert "Traceback" not in result.stderr and "Logging error" not in result.stderr, result.stderr
    return result


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs and Unix sockets")
def test_bad_files_are_skipped_once_with_a_reason_and_the_good_ones_cluster_as_alone(tmp_path):
    lib = tmp_path / "photos"
    good, broken, ignored, sock = make_corpus(lib)
    with sock:
        whole = (lib / "2023" / "dog_0.jpg").read_bytes()
        (lib / "bad" / "vanishing.jpg").write_bytes(whole)
        broken["bad/vanishing.jpg"] = "file not found"
        growing = open(lib / "bad" / "growing.jpg", "wb")  # noqa: SIM115 - held open across the run
        growing.write(whole[: len(whole) // 2])
        growing.flush()
        broken["bad/growing.jpg"] = "damaged or truncated"
        kinds = len(good) - 6 + len(broken) + len(ignored)
        assert kinds >= 30, kinds
        before = disk_state(lib)

        result = cli("cluster", lib, "--sim", "0.7", "-v")
        after = disk_state(lib)
        growing.write(whole[len(whole) // 2:])
        growing.close()
    assert result.returncode == 0, result.stdout + result.stderr

    # each bad file listed exactly once, with its reason; nothing else listed
    lines = result.stdout.splitlines()
    listed = [line for line in lines if line.startswith("  " + _shown(lib.resolve()))]
    assert len(listed) == len(broken), "\n".join(listed)
    for name, reason in broken.items():
        prefix = f"  {_shown(lib.resolve() / name)}: "
        mine = [line for line in listed if line.startswith(prefix)]
        assert len(mine) == 1, (name, listed)
        assert re.search(reason, mine[0][len(prefix):]), (name, mine[0])
    assert f"skipped {len(broken)} file(s)" in result.stdout
    assert f"({len(good)} new, 0 changed, 0 unchanged)" in result.stdout

    # no original file changed, moved or removed (but the one the test deleted)
    del before["bad/vanishing.jpg"]
    assert after == before

    # the good photos cluster exactly as they do without the bad ones around them
    control = write_photos(tmp_path / "control", good)
    alone = cli("cluster", control, "--sim", "0.7")
    assert alone.returncode == 0 and "could not be read" not in alone.stdout, alone.stdout
    clusters = tree_clusters(lib)
    assert clusters == tree_clusters(control)
    dogs = next(group for group in clusters if "2023/dog_0.jpg" in group)
    assert {"2023/dog_1.jpg", "2023/dog_2.jpg"} <= dogs and "2024/cat_0.jpg" not in dogs
    assert all(not name.startswith("bad/") or name in good for group in clusters for name in group)


# Pillow warns about the damaged EXIF block (this suite makes warnings errors); the CLI silences it.
@pytest.mark.filterwarnings("ignore:Corrupt EXIF data:UserWarning")
def test_an_exif_rotated_photo_comes_out_upright_and_damaged_exif_costs_nothing(tmp_path):
    from _bad_files import corrupt_exif_jpeg, jpeg_bytes

    upright = camera_moved(DATA / "cat.jpg", 22)  # landscape: the cat's head is in the upper half
    exif = Image.Exif()
    exif[0x0112] = 6  # the camera was turned: stored sideways, shown after a quarter turn clockwise
    (tmp_path / "upright.jpg").write_bytes(jpeg_bytes(upright))
    (tmp_path / "rotated.jpg").write_bytes(jpeg_bytes(upright.transpose(Image.Transpose.ROTATE_90), exif=exif))
    (tmp_path / "sideways.jpg").write_bytes(jpeg_bytes(upright.transpose(Image.Transpose.ROTATE_90)))
    reference = load_image(tmp_path / "upright.jpg", 224).astype(np.float32)
    assert np.abs(load_image(tmp_path / "rotated.jpg", 224) - reference).mean() < 6
    assert np.abs(load_image(tmp_path / "sideways.jpg", 224) - reference).mean() > 20  # the check can fail

    (tmp_path / "bad_exif.jpg").write_bytes(corrupt_exif_jpeg(upright))
    assert np.abs(load_image(tmp_path / "bad_exif.jpg", 224) - reference).mean() < 2


def test_a_decompression_bomb_is_refused_before_memory_is_spent(tmp_path):
    from _bad_files import jpeg_bomb, png_bomb

    (tmp_path / "bomb.png").write_bytes(png_bomb(40_000, 40_000))  # 4.8 GB of pixels, declared in 80 bytes
    (tmp_path / "bomb.jpg").write_bytes(jpeg_bomb(40_000, 40_000))
    code = (
        "import sys; from imagecluster.images import load_image\n"
        "for path in sys.argv[1:]:\n"
        "    try: load_image(path, 224)\n"
        "    except ValueError as exc: print(exc)\n"
        # VmHWM is this program's own peak: ru_maxrss keeps the peak from before
        # exec, which is pytest's own size once earlier tests have grown it.
        "print(next(line.split()[1] for line in open('/proc/self/status') if line.startswith('VmHWM:')))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, tmp_path / "bomb.png", tmp_path / "bomb.jpg"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    *reasons, peak_kb = result.stdout.splitlines()
    assert len(reasons) == 2 and all("too many pixels" in r for r in reasons), reasons
    assert int(peak_kb) < 400_000  # one decoded copy would be 4,800,000 KB


@pytest.mark.skipif(os.geteuid() != 0, reason="dropping to another user needs root; as a user, the CLI test covers it")
def test_no_read_permission_as_a_user_who_cannot_read(tmp_path):
    # CI runs as root, who reads any file: a forked child becomes 'nobody' to meet a mode-000 photo
    # as a user would. Its folder is outside tmp_path, which 'nobody' may not enter.
    from _bad_files import jpeg_bytes

    folder = tempfile.mkdtemp(prefix="imagecluster-perm-")
    try:
        os.chmod(folder, 0o755)
        data = jpeg_bytes(camera_moved(DATA / "dog.jpg", 1))
        for name, mode in (("ok.jpg", 0o644), ("locked.jpg", 0o000)):
            with open(os.path.join(folder, name), "wb") as f:
                f.write(data)
            os.chmod(os.path.join(folder, name), mode)
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: never returns into pytest
            status = 1
            try:
                os.setgroups([])
                os.setgid(65534)
                os.setuid(65534)
                answers = []
                for name in ("ok.jpg", "locked.jpg"):
                    try:
                        answers.append(str(load_image(os.path.join(folder, name), 32).shape))
                    except NotAnImage as exc:
                        answers.append(str(exc))
                os.write(write_end, "\n".join(answers).encode())
                status = 0
            finally:
                os._exit(status)
        os.close(write_end)
        with os.fdopen(read_end) as f:
            answers = f.read().splitlines()
        assert os.waitpid(pid, 0)[1] == 0
        assert answers == ["(32, 32, 3)", f"{folder}/locked.jpg: permission denied"]
    finally:
        shutil.rmtree(folder)
