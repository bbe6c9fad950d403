"""The plugin inside real darktable, without a screen: ``darktable-cli --core --luacmd``.

The command it runs is a stand-in (``IMAGECLUSTER_DARKTABLE_COMMAND``): a shell
script that records its arguments and prints a prepared answer, as
``imagecluster remote cluster --json`` would, or fails as it would. Tags are
read back from darktable's SQLite. One library with the photos imported (and
a first set of tags) is made per module; each test changes a copy of it.
"""

import json
import shlex
import stat
import subprocess
import sys

import pytest
from PIL import Image

from _dng import write_dng

pytestmark = pytest.mark.darktable

NAMES = ["2023/dog_1.jpg", "2023/dog_2.jpg", "2024/café_ß.jpg", "2024/l'été 🐱.jpg", "2024/alone.jpg"]
CLUSTER = "imagecluster|cluster "


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """{name: absolute path} of small real JPEGs, some with non-ASCII names and a quote."""
    library = tmp_path_factory.mktemp("photos")
    paths = {}
    for shade, name in enumerate(NAMES):
        path = library / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (64, 48), (40 * shade, 90, 160)).save(path, quality=90)
        paths[name] = str(path)
    return paths


class StandIn:
    """A shell script in place of ``imagecluster``: records its arguments, prints ``answer``, exits ``code``."""

    def __init__(self, folder, answer, code=0, stderr=""):
        self.args = folder / "args"
        self.path = folder / "stand in imagecluster"  # a space: the variable is a shell command prefix
        (folder / "answer").write_text(answer, encoding="utf-8")
        (folder / "stderr").write_text(stderr, encoding="utf-8")
        self.path.write_text(
            "#!/bin/sh\n"
            f'printf "%s\\n" "$*" >> {shlex.quote(str(self.args))}\n'
            f"cat {shlex.quote(str(folder / 'answer'))}\n"
            f"cat {shlex.quote(str(folder / 'stderr'))} >&2\n"
            f"exit {code}\n"
        )
        self.path.chmod(self.path.stat().st_mode | stat.S_IXUSR)
        self.env = {"IMAGECLUSTER_DARKTABLE_COMMAND": shlex.quote(str(self.path))}

    def calls(self):
        return self.args.read_text().splitlines() if self.args.exists() else []


def answer(clusters, sim=0.8):
    """What ``imagecluster remote cluster --json`` prints, but with every non-ASCII character \\u-escaped."""
    return json.dumps({"sim": sim, "clusters": clusters, "trees": ["/elsewhere/clusters"]}, ensure_ascii=True)


CLUSTER_LUA = """
local result, err = require("contrib/imagecluster").cluster({sim})
print("RESULT " .. (result and result.message or "nil"))
print("ERROR " .. tostring(err))
"""


def run_cluster(darktable, stand_in, sim="0.8"):
    return darktable.cli(CLUSTER_LUA.format(sim=sim), **stand_in.env).check()


@pytest.fixture(scope="module")
def tagged(photos, tmp_path_factory, darktable_helpers):
    """A darktable library holding the photos, tagged once by the plugin, and how that went."""
    folder = tmp_path_factory.mktemp("tagged")
    darktable = darktable_helpers.Darktable.create(folder / "darktable")
    install = subprocess.run(
        [sys.executable, "-m", "imagecluster", "install-darktable-plugin", "--configdir", darktable.configdir],
        env=darktable.env, capture_output=True, text=True,
    )
    assert install.returncode == 0, install.stderr
    imported = darktable.cli(darktable_helpers.lua_import(photos.values())).check()
    assert darktable.tags() == {}, imported.stdout

    clusters = [
        [photos["2023/dog_1.jpg"], "/not/in/darktable.jpg", photos["2023/dog_2.jpg"]],
        [photos["2024/café_ß.jpg"], photos["2024/l'été 🐱.jpg"]],
    ]
    text = answer(clusters)
    assert "\\u00e9" in text and "\\u00df" in text and "\\ud83d\\udc31" in text
    stand_in = StandIn(folder, text, stderr="imagecluster: a warning on stderr is fine\n")
    # A tag of the user's, on a photo the plugin tags too: never touched.
    dog = darktable_helpers.lua_string(photos["2023/dog_1.jpg"])
    darktable.cli(f'dt.tags.attach(dt.tags.create("holiday"), dt.database.import({dog}))').check()
    run = run_cluster(darktable, stand_in)
    return darktable, run, stand_in


def test_tags_each_cluster_matched_by_path(tagged, photos):
    darktable, run, stand_in = tagged
    assert stand_in.calls() == ["remote cluster --sim 0.8 --json"]
    assert darktable.tags() == {
        CLUSTER + "001": {photos["2023/dog_1.jpg"], photos["2023/dog_2.jpg"]},
        CLUSTER + "002": {photos["2024/café_ß.jpg"], photos["2024/l'été 🐱.jpg"]},
    }
    assert darktable.tags("holiday") == {"holiday": {photos["2023/dog_1.jpg"]}}
    # the toast (darktable-cli prints it), and the summary cluster() returns
    message = "imagecluster: 4 photos tagged in 2 clusters at sim 0.8 (tag imagecluster); " \
              "1 photo of the clusters is not in darktable's library"
    assert run.lines("RESULT") == [message] and message in run.stdout.replace("RESULT " + message, "")


def test_a_new_run_replaces_the_old_tags(tagged, photos, tmp_path):
    darktable = tagged[0].copy(tmp_path)
    stand_in = StandIn(tmp_path, answer([[photos["2023/dog_2.jpg"], photos["2024/alone.jpg"]]], sim=0.7))
    run = run_cluster(darktable, stand_in, sim="")  # no sim: the preference, unset here, so 0.7
    assert stand_in.calls() == ["remote cluster --sim 0.7 --json"]
    assert darktable.tags() == {CLUSTER + "001": {photos["2023/dog_2.jpg"], photos["2024/alone.jpg"]}}
    assert darktable.tag_names() == [CLUSTER + "001"]  # cluster 002 is gone, not just detached
    assert darktable.tags("holiday") == {"holiday": {photos["2023/dog_1.jpg"]}}
    assert run.lines("RESULT") == ["imagecluster: 2 photos tagged in 1 cluster at sim 0.7 (tag imagecluster)"]

    stand_in = StandIn(tmp_path, answer([], sim=0.99))
    run = run_cluster(darktable, stand_in, sim="0.99")
    assert darktable.tags() == {} and darktable.tag_names() == []
    assert run.lines("RESULT") == ["imagecluster: no clusters at sim 0.99; try a lower sim"]


FAILURES = {
    "daemon not available": (
        3,
        json.dumps({"error": "DaemonNotAvailable", "message": "the imagecluster daemon is not running",
                    "exit_code": 3}),
        "imagecluster: error: the imagecluster daemon is not running\n",
        "imagecluster: daemon not available: the imagecluster daemon is not running",
    ),
    "failed, message only on stderr": (
        1, "", "imagecluster: error: the store is locked\n", "imagecluster failed: the store is locked",
    ),
    "exit 0 but no JSON": (0, "Traceback (most recent call last):\n", "", "printed no JSON"),
    "JSON without clusters": (0, '{"sim": 0.8}', "", "printed JSON without clusters"),
    "exit 137, nothing said": (137, "", "", "imagecluster failed: exit status 137"),
}


@pytest.mark.parametrize("failure", FAILURES)
def test_a_failure_changes_no_tags_and_says_why(tagged, tmp_path, failure):
    darktable = tagged[0].copy(tmp_path)
    before = darktable.tags()
    code, stdout, stderr, message = FAILURES[failure]
    stand_in = StandIn(tmp_path, stdout, code=code, stderr=stderr)
    run = run_cluster(darktable, stand_in)
    assert stand_in.calls() == ["remote cluster --sim 0.8 --json"]
    assert darktable.tags() == before and len(before) == 2
    [error] = run.lines("ERROR")
    assert message in error and error.startswith("imagecluster"), error
    assert run.lines("RESULT") == ["nil"] and run.stdout.count(error) == 2  # returned, and shown as a toast


def test_not_installed_and_bad_sims(tagged, tmp_path):
    darktable = tagged[0].copy(tmp_path)
    before = darktable.tags()
    lua = """
local plugin = require("contrib/imagecluster")
for _, sim in ipairs({1.5, -0.1, 0/0, "0.5"}) do
  print("ERROR " .. select(2, plugin.cluster(sim)))
end
print("ERROR " .. select(2, plugin.cluster(0.5)))
"""
    run = darktable.cli(lua, IMAGECLUSTER_DARKTABLE_COMMAND=str(tmp_path / "no-such-imagecluster")).check()
    errors = run.lines("ERROR")
    assert len(errors) == 5
    assert all("sim must be a number from 0 to 1" in e for e in errors[:4]), errors
    assert errors[4] == (f"imagecluster is not installed: cannot run '{tmp_path / 'no-such-imagecluster'}' "
                         "(install it, or set IMAGECLUSTER_DARKTABLE_COMMAND to its full path)")
    assert darktable.tags() == before


def test_the_real_command_without_a_daemon(tagged, tmp_path, private_bus):
    """The real ``imagecluster remote`` on a session bus where no daemon runs or can be activated."""
    darktable = tagged[0].copy(tmp_path)
    before = darktable.tags()
    command = f"{shlex.quote(sys.executable)} -m imagecluster"
    run = darktable.cli('print("ERROR " .. select(2, require("contrib/imagecluster").cluster(0.7)))',
                        IMAGECLUSTER_DARKTABLE_COMMAND=command, DBUS_SESSION_BUS_ADDRESS=private_bus.address).check()
    [error] = run.lines("ERROR")
    assert error.startswith("imagecluster: daemon not available: the imagecluster daemon is not running"), error
    assert "imagecluster install-service" in error
    assert darktable.tags() == before



# RAW + JPEG pairs: the daemon lists one file of a shot, the plugin tags both
# (real DNGs, which darktable imports as RAW files, beside real JPEGs).
PAIR_FILES = ["IMG_0001.dng", "IMG_0001.JPG", "IMG_0002.dng", "IMG_0002.jpg", "IMG_0003.dng", "IMG_0003.jpg",
              "IMG_0004.dng", "IMG_0004.jpg", "a.png", "a.jpg"]


def test_both_files_of_a_raw_jpeg_shot_get_the_tag(tmp_path, darktable_helpers):
    shots = tmp_path / "shots"
    shots.mkdir()
    path = {name: str(shots / name) for name in PAIR_FILES}
    for shade, name in enumerate(PAIR_FILES):
        picture = Image.new("RGB", (64, 48), (20 * shade, 120, 60))
        if name.endswith(".dng"):
            write_dng(path[name], picture)
        else:
            picture.save(path[name])
    darktable = darktable_helpers.Darktable.create(tmp_path / "darktable")
    install = subprocess.run(
        [sys.executable, "-m", "imagecluster", "install-darktable-plugin", "--configdir", darktable.configdir],
        env=darktable.env, capture_output=True, text=True,
    )
    assert install.returncode == 0, install.stderr
    # IMG_0002.jpg stays out of darktable, as for a user who imports only the RAW files
    darktable.cli(darktable_helpers.lua_import(path[n] for n in PAIR_FILES if n != "IMG_0002.jpg")).check()
    clusters = [
        [path["IMG_0001.JPG"], path["IMG_0002.jpg"], path["IMG_0004.dng"]],  # the JPEG of a shot, or its RAW
        [path["a.jpg"], path["IMG_0003.jpg"]],
        [path["IMG_0003.dng"], "/not/in/darktable.jpg"],  # a file the daemon lists itself is tagged as listed
    ]
    run = run_cluster(darktable, StandIn(tmp_path, answer(clusters)))
    assert darktable.tags() == {
        CLUSTER + "001": {path[n] for n in ("IMG_0001.JPG", "IMG_0001.dng", "IMG_0002.dng", "IMG_0004.dng",
                                             "IMG_0004.jpg")},
        CLUSTER + "002": {path["a.jpg"], path["IMG_0003.jpg"]},  # a.png beside a.jpg: two photos, not a shot
        CLUSTER + "003": {path["IMG_0003.dng"]},
    }
    assert run.lines("RESULT") == [
        "imagecluster: 8 photos tagged in 3 clusters at sim 0.8 (tag imagecluster); "
        "1 photo of the clusters is not in darktable's library"
    ]


EVENTS_LUA = """
local result, err = require("contrib/imagecluster").events({sim})
print("RESULT " .. (result and result.message or "nil"))
print("ERROR " .. tostring(err))
"""


def test_events_mode_tags_each_event_with_its_date(tagged, photos, tmp_path):
    """The "group by events" button: every photo of event N gets imagecluster|event <date> NNN; cluster tags stay."""
    darktable = tagged[0].copy(tmp_path)
    clusters_before = darktable.tags(CLUSTER)
    dog_1, dog_2, cafe = photos["2023/dog_1.jpg"], photos["2023/dog_2.jpg"], photos["2024/café_ß.jpg"]

    def event(name, paths):
        return {"name": name, "date": name[:10], "place": "", "start": 1.0, "end": 2.0, "photos": paths,
                "clusters": []}

    events = [event("2024-05-01_45.07N_7.69E", [dog_1, "/not/in/darktable.jpg", dog_2]),
              event("2024-06-02_002", [cafe])]
    stand_in = StandIn(tmp_path, json.dumps({"sim": 0.7, "events": events, "trees": []}, ensure_ascii=True))
    run = darktable.cli(EVENTS_LUA.format(sim="0.7"), **stand_in.env).check()
    assert stand_in.calls() == ["remote cluster --by events --sim 0.7 --json"]
    assert darktable.tags("imagecluster|event") == {
        "imagecluster|event 2024-05-01 001": {dog_1, dog_2},
        "imagecluster|event 2024-06-02 002": {cafe},
    }
    assert darktable.tags(CLUSTER) == clusters_before  # the other mode's tags are not touched
    assert run.lines("RESULT") == ["imagecluster: 3 photos tagged in 2 events (tag imagecluster|event); "
                                   "1 photo of the events is not in darktable's library"]
    # A new run replaces the event tags; an answer without events changes nothing.
    stand_in = StandIn(tmp_path, json.dumps({"sim": 0.7, "events": [event("2024-07-01_001", [dog_2])]}))
    darktable.cli(EVENTS_LUA.format(sim="0.7"), **stand_in.env).check()
    assert darktable.tags("imagecluster|event") == {"imagecluster|event 2024-07-01 001": {dog_2}}
    stand_in = StandIn(tmp_path, json.dumps({"sim": 0.7, "clusters": []}))
    run = darktable.cli(EVENTS_LUA.format(sim="0.7"), **stand_in.env).check()
    assert "printed JSON without events" in run.lines("ERROR")[0]
    assert darktable.tags("imagecluster|event") == {"imagecluster|event 2024-07-01 001": {dog_2}}
