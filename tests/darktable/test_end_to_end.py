"""End to end: the darktable GUI (on Xvfb) runs the plugin against the real daemon.

darktable imports the daemon's photos, the plugin calls the real
``imagecluster remote cluster`` on a private session bus, and the tags in
darktable's SQLite and in the photos' XMP sidecars must be the daemon's
clusters. The second run sets the sim preference and presses the plugin's
button (its registered callback), and must replace every tag of the first;
the third finds no clusters, and must leave no tag in any sidecar.
"""

import pytest

pytestmark = pytest.mark.darktable

CLUSTER = "imagecluster|cluster "

CLUSTER_RUN = """
{imports}
local result, err = require("contrib/imagecluster").cluster({sim})
print("RESULT " .. (result and result.message or "nil"))
print("ERROR " .. tostring(err))
"""

# The button of the lighttable's "selected image[s]" module calls the callback
# that register_action stored in the module's Lua table (darktable's
# libs/image.c); calling that callback is pressing the button.
BUTTON_RUN = """
dt.preferences.write("imagecluster", "sim", "float", 0.1)
print("PREFERENCE " .. string.format("%.2f", dt.preferences.read("imagecluster", "sim", "float")))
local callbacks = debug.getuservalue(dt.gui.libs.image, 1).callbacks
print("BUTTON " .. type(callbacks.imagecluster))
callbacks.imagecluster("imagecluster", {})
"""


def expected_tags(clusters):
    return {f"{CLUSTER}{number:03d}": set(cluster) for number, cluster in enumerate(clusters, 1)}


def check_sidecars(photos, tags, sidecar_subjects):
    for photo in photos:
        want = sorted(name for name, members in tags.items() if str(photo) in members)
        assert sidecar_subjects(photo) == want, photo


def test_tags_are_the_daemons_clusters_in_database_and_sidecars(darktable_daemon, tmp_path, darktable_helpers):
    shared, helpers = darktable_daemon, darktable_helpers
    darktable = helpers.Darktable.with_plugin_for(tmp_path / "darktable", shared)
    with shared.client() as client:
        first, second, third = client.cluster(0.7), client.cluster(0.1), client.cluster(1.0)
    # cats and dogs; then everything together; then nothing (1 means identical photos)
    assert (len(first), len(second), third) == (2, 1, []), (first, second, third)

    run = darktable.gui(CLUSTER_RUN.format(imports=helpers.lua_import(shared.photos), sim=0.7)).check()
    assert run.lines("ERROR") == ["nil"], run.stdout + run.stderr
    assert run.lines("RESULT") == ["imagecluster: 7 photos tagged in 2 clusters at sim 0.7 (tag imagecluster)"]
    tags = expected_tags(first)
    assert darktable.tags() == tags
    check_sidecars(shared.photos, tags, helpers.sidecar_subjects)

    run = darktable.gui(BUTTON_RUN).check()
    assert run.lines("PREFERENCE") == ["0.10"] and run.lines("BUTTON") == ["function"], run.stdout + run.stderr
    tags = expected_tags(second)
    assert darktable.tags() == tags
    assert darktable.tag_names() == [CLUSTER + "001"]
    check_sidecars(shared.photos, tags, helpers.sidecar_subjects)

    run = darktable.gui(CLUSTER_RUN.format(imports="", sim=1.0)).check()
    assert run.lines("RESULT") == ["imagecluster: no clusters at sim 1; try a lower sim"], run.stdout + run.stderr
    assert darktable.tags() == {} and darktable.tag_names() == []
    check_sidecars(shared.photos, {}, helpers.sidecar_subjects)


EVENTS_RUN = """
{imports}
local result, err = require("contrib/imagecluster").events(0.7)
print("RESULT " .. (result and result.message or "nil"))
print("ERROR " .. tostring(err))
"""


def test_events_mode_tags_are_the_daemons_events(darktable_daemon, tmp_path, darktable_helpers):
    """Issue 14: the events mode against the real daemon (ClusterEvents through `remote cluster --by events`)."""
    shared, helpers = darktable_daemon, darktable_helpers
    darktable = helpers.Darktable.with_plugin_for(tmp_path / "darktable", shared)
    with shared.client() as client:
        events = client.cluster_events(0.7)
    assert events and sum(len(e.photos) for e in events) == len(shared.photos)
    run = darktable.gui(EVENTS_RUN.format(imports=helpers.lua_import(shared.photos))).check()
    assert run.lines("ERROR") == ["nil"], run.stdout + run.stderr
    want = {f"imagecluster|event {e.date} {n:03d}": set(e.photos) for n, e in enumerate(events, 1)}
    assert darktable.tags("imagecluster|event") == want
    assert darktable.tags(CLUSTER) == {}  # the other mode's tags are its own
    assert run.lines("RESULT") == [
        f"imagecluster: {len(shared.photos)} photos tagged in {len(events)} event{'s' if len(events) > 1 else ''} "
        "(tag imagecluster|event)"]
