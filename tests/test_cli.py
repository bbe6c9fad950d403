"""The imagecluster command as a user runs it: real process, real photos, exit codes, no tracebacks."""

import os
import subprocess
import sys

import pytest


def run(*args, cwd=None):
    result = subprocess.run(
        [sys.executable, "-m", "imagecluster", *map(str, args)],
        capture_output=True, text=True, cwd=cwd, timeout=600,
    )
    assert "Traceback" not in result.stderr, result.stderr
    return result


def test_cluster_prints_summary_and_writes_tree(burst_library):
    (burst_library / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 cut short")
    result = run("cluster", burst_library, "--sim", "0.7")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "6 new" in out and "skipped 1 file" in out and "broken.jpg" in out
    assert "cluster size : ncluster" in out
    assert "\n3            : 2\n" in out
    assert (burst_library / "clusters" / "cluster_with_3" / "cluster_1").is_dir()

    again = run("cluster", burst_library, "--sim", "0.7")
    assert again.returncode == 0 and "0 new" in again.stdout and "6 unchanged" in again.stdout


def test_index_only(burst_library):
    result = run("index", burst_library)
    assert result.returncode == 0, result.stderr
    assert "6 new" in result.stdout
    assert not (burst_library / "clusters").exists()
    # the similarity graph is kept up to date too: the next Cluster does not search every pair
    from imagecluster.graph import LibraryGraph
    from imagecluster.store import Store

    graph = LibraryGraph(Store(burst_library), "lite0")
    assert graph.file.is_file()
    saved = graph.file.stat().st_mtime_ns
    assert graph.update() is False and graph.file.stat().st_mtime_ns == saved  # taken as it is
    assert len(graph.paths) == 6


def test_a_library_of_one_photo(make_library, tmp_path):
    # Its first comparison has no pair to search; its progress report divided by zero.
    lib = make_library({"only.jpg": "cat.jpg"})
    for command in ("cluster", "index"):
        result = run(command, lib)
        assert result.returncode == 0, result.stderr
        assert "1 photo" in result.stdout and "Traceback" not in result.stderr
    assert "no clusters at this sim" in run("cluster", lib).stdout


@pytest.mark.parametrize("sim", ["1.5", "-0.2", "nan", "high"])
def test_bad_sim_is_a_usage_error(burst_library, sim):
    result = run("cluster", burst_library, "--sim", sim)
    assert result.returncode == 2
    assert "--sim" in result.stderr
    assert not (burst_library / ".imagecluster").exists()


def test_missing_folder(tmp_path):
    result = run("cluster", tmp_path / "nowhere")
    assert result.returncode == 1
    assert "does not exist" in result.stderr


def test_refuses_to_replace_a_foreign_out_folder(burst_library, tmp_path):
    out = tmp_path / "albums"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    result = run("cluster", burst_library, "--out", out)
    assert result.returncode == 1
    assert "not written by imagecluster" in result.stderr
    assert os.listdir(out) == ["keep.txt"]


def test_help_explains_sim():
    result = run("cluster", "--help")
    assert result.returncode == 0
    assert "similar" in result.stdout and "0.9" in result.stdout


def test_no_command_shows_help():
    result = run()
    assert result.returncode == 2
    assert "cluster" in result.stdout


def snapshot(folder):
    """Every file below ``folder`` (store included) with its bytes: equal snapshots mean nothing changed."""
    found = {}
    for dirpath, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(dirpath, name)
            with open(path, "rb") as f:
                found[os.path.relpath(path, folder)] = f.read()
    return found


def test_out_inside_the_library_is_refused_before_any_indexing(burst_library):
    assert run("cluster", burst_library).returncode == 0
    (burst_library / "2023" / "05" / "new.jpg").write_bytes((burst_library / "2024" / "cat_3.jpg").read_bytes())
    before = snapshot(burst_library)
    for out in (burst_library / "2023", burst_library, burst_library / "2024" / "cat_3.jpg"):
        result = run("cluster", burst_library, "--out", out)
        assert result.returncode == 2, result.stderr
        assert "inside the library" in result.stderr and str(out) in result.stderr
        assert snapshot(burst_library) == before  # no fingerprint dropped, new.jpg not indexed either
    again = run("cluster", burst_library)
    assert again.returncode == 0 and "1 new, 0 changed, 6 unchanged" in again.stdout


def test_a_closed_pipe_ends_quietly(tmp_path):
    # As `imagecluster cluster DIR | head -1` once head has its line: the read end is gone.
    (tmp_path / "photos").mkdir()
    process = subprocess.Popen(
        [sys.executable, "-m", "imagecluster", "cluster", tmp_path / "photos"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    process.stdout.close()
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 141
    assert stderr == b""  # no BrokenPipeError traceback, no "Exception ignored" at exit
    assert (tmp_path / "photos" / "clusters").is_dir()  # the work was done before the output


@pytest.mark.parametrize("damage", ["truncated", "random bytes"])
def test_a_damaged_store_is_set_aside_and_rebuilt_in_the_same_run(burst_library, damage):
    assert run("index", burst_library).returncode == 0
    snapshot_file = burst_library / ".imagecluster" / "fingerprints.pk"
    data = snapshot_file.read_bytes()
    snapshot_file.write_bytes(data[: len(data) // 2] if damage == "truncated" else os.urandom(len(data)))
    result = run("cluster", burst_library, "--sim", "0.7")
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("was damaged") == 1 and "6 new" in result.stdout  # said once, rebuilt at once
    (kept,) = (burst_library / ".imagecluster").glob("damaged-*")
    assert (kept / "fingerprints.pk").read_bytes() != data  # the damaged file itself, kept for the user
    again = run("cluster", burst_library, "--sim", "0.7")
    assert again.returncode == 0 and "6 unchanged" in again.stdout and "was damaged" not in again.stderr
