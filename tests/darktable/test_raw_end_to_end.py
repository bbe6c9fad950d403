"""End to end with camera RAW files: a darktable library of DNGs and of RAW + JPEG shots (issue 16).

The real daemon watches ``_raw_library``'s folder: DNG bursts of dogs and cats
(with and without an embedded preview) and two shots the camera saved as
``.DNG`` + ``.JPG``. darktable (the GUI, on Xvfb) imports the DNGs, and of the
shots both files of the first but only the RAW of the second, as a user who
imports only RAW files would. Pressing "cluster similar" must tag every DNG
burst, and every file darktable holds of each shot, though the daemon lists a
shot once (its JPEG).
"""

import pytest

from _raw_library import write_raw_library

pytestmark = pytest.mark.darktable

CLUSTER = "imagecluster|cluster "

# Set the sim preference, then press the lighttable's "cluster similar" button
# (its registered callback, as in test_end_to_end.py).
BUTTON_RUN = """
{imports}
dt.preferences.write("imagecluster", "sim", "float", 0.7)
local callbacks = debug.getuservalue(dt.gui.libs.image, 1).callbacks
callbacks.imagecluster("imagecluster", {{}})
"""


@pytest.fixture(scope="module")
def raw_daemon(tmp_path_factory, darktable_helpers):
    """The real daemon watching the RAW library, every file indexed; ``files`` by relative name."""
    folder = tmp_path_factory.mktemp("raw_daemon")
    files = write_raw_library(folder / "photos")
    with darktable_helpers.indexed_daemon(folder, folder / "photos", len(files)) as shared:
        shared.files = files
        yield shared


def test_cluster_similar_tags_dngs_and_both_files_of_a_shot(raw_daemon, tmp_path, darktable_helpers):
    shared, helpers, files = raw_daemon, darktable_helpers, raw_daemon.files
    with shared.client() as client:
        clusters = client.cluster(0.7)
    by_name = {str(path): name for name, path in files.items()}
    assert [sorted(by_name[p] for p in cluster) for cluster in clusters] == [
        ["dng/dog_1.dng", "dng/dog_2.dng", "dng/dog_3.dng", "pairs/IMG_0001.JPG"],  # a shot once, as its JPEG
        ["dng/cat_1.dng", "dng/cat_2.dng", "pairs/IMG_0002.JPG"],
    ]

    darktable = helpers.Darktable.with_plugin_for(tmp_path / "darktable", shared)
    imported = [path for name, path in sorted(files.items()) if name != "pairs/IMG_0002.JPG"]
    darktable.gui(BUTTON_RUN.format(imports=helpers.lua_import(imported))).check()

    tags = {
        CLUSTER + "001": {str(files[n]) for n in ("dng/dog_1.dng", "dng/dog_2.dng", "dng/dog_3.dng",
                                                  "pairs/IMG_0001.JPG", "pairs/IMG_0001.DNG")},
        CLUSTER + "002": {str(files[n]) for n in ("dng/cat_1.dng", "dng/cat_2.dng", "pairs/IMG_0002.DNG")},
    }
    assert darktable.tags() == tags
    for path in imported:  # darktable wrote each photo's XMP sidecar with its tag
        want = [name for name, members in tags.items() if str(path) in members]
        assert helpers.sidecar_subjects(path) == want, path

    # The sidecars darktable wrote beside the photos are no photos to the daemon.
    with shared.client() as client:
        assert client.wait_idle(60) and client.status().indexed == len(files), shared.daemon.log()
