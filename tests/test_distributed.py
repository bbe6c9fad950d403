"""Fingerprinting on a Dask cluster (``--scheduler``): a real LocalCluster, a real ``dask scheduler`` and workers.

Every fingerprint is compared with the local pipeline's (``imagecluster index``
run in a subprocess, so pytest's own process never imports TensorFlow: the
Dask workers are processes of their own and load the real lite0 model).
"""

import collections
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import distributed
import numpy as np
import pytest
from PIL import Image, ImageEnhance

from imagecluster import Store
from imagecluster._distributed import index_distributed
from imagecluster._journal import iter_records

DATA = Path(__file__).parent / "data"
MODEL = "lite0"
PHOTOS = 24  # readable photos in the test library, besides two bad files


def _make_photos(root, count):
    """``count`` distinct real JPEGs (crops, turns, exposures of the test photos) in a few folders."""
    sources = [Image.open(DATA / name).convert("RGB") for name in ("cat.jpg", "dog.jpg")]
    for i in range(count):
        im = sources[i % 2]
        w, h = im.size
        crop = im.crop((i % 5 * w // 40, i % 3 * h // 40, w - i % 4 * w // 40, h - i % 7 * h // 60))
        shot = ImageEnhance.Brightness(crop.rotate((i % 7) - 3)).enhance(0.85 + 0.05 * (i % 6))
        folder = root / f"{2010 + i // 10}"
        folder.mkdir(parents=True, exist_ok=True)
        exif = Image.Exif()
        exif[0x0132] = f"{2010 + i // 10}:06:{1 + i % 28:02d} 12:{i % 60:02d}:00"  # DateTime: read by the workers
        shot.save(folder / f"shot_{i:03d}.jpg", quality=88, exif=exif)
    return root


def _add_bad_files(root):
    bad = root / "bad"
    bad.mkdir()
    (bad / "notes.jpg").write_bytes(b"this is a text file named like a photo\n")
    whole = (root / "2010" / "shot_000.jpg").read_bytes()
    (bad / "cut.jpg").write_bytes(whole[: len(whole) // 3])


def _index_cli(lib, *options, timeout=300):
    return subprocess.run(
        [sys.executable, "-m", "imagecluster", "index", str(lib), "-q", *options],
        capture_output=True, text=True, timeout=timeout,
    )


def _vectors(lib):
    paths, fps = Store(lib).fingerprints(MODEL)
    return dict(zip(paths, fps))


def _skipped_lines(stdout, lib):
    """The report's "skipped" lines, with the library's path taken out."""
    return sorted(line.replace(str(lib), "LIB") for line in stdout.splitlines() if line.startswith("  "))


def _copy(reference, dest):
    shutil.copytree(reference.lib, dest, ignore=shutil.ignore_patterns(".imagecluster"))
    return dest


def _assert_same_fingerprints(lib, reference):
    got = _vectors(lib)
    assert sorted(got) == sorted(reference.vectors)
    for rel, vector in reference.vectors.items():
        cosine = float(np.dot(got[rel], vector) / (np.linalg.norm(got[rel]) * np.linalg.norm(vector)))
        assert cosine >= 0.9999, (rel, cosine)


def _puts(lib):
    """How often each path was written to the journal (the store is read with compact=False)."""
    data = (Store(lib).folder / "journal.pk").read_bytes()
    return collections.Counter(record[2] for _, record in iter_records(data, 0) if record[0] == "put")


# Threads Dask starts that outlive one test by design: its process-wide offload thread (started on
# first use), and the threads with which a LocalCluster's nanny watches a worker it restarted (they
# end with the module's cluster, which checks that).
_DASK_THREADS = ("Dask-Offload", "AsyncProcess Dask Worker process", "QueueFeederThread")


@pytest.fixture(autouse=True)
def no_leaked_threads():
    """As tests/conftest.py's check, except the Dask threads above."""
    before = set(threading.enumerate())
    yield
    leaked = [t for t in threading.enumerate() if t not in before and not t.name.startswith(_DASK_THREADS)]
    for thread in leaked:
        thread.join(timeout=5)
    still = [t.name for t in leaked if t.is_alive()]
    assert not still, f"threads left running: {still}"


class Reference:
    """The library as the local pipeline fingerprinted it."""

    def __init__(self, lib, vectors, unreadable, skipped):
        self.lib, self.vectors, self.unreadable, self.skipped = lib, vectors, unreadable, skipped
        self.captures = {rel: c.capture for rel, c in Store(lib).captures().items()}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    lib = tmp_path_factory.mktemp("reference") / "photos"
    _add_bad_files(_make_photos(lib, PHOTOS))
    run = _index_cli(lib)
    assert run.returncode == 0, run.stderr
    unreadable = {rel: u.reason for rel, u in Store(lib).unreadable(MODEL).items()}
    assert sorted(unreadable) == ["bad/cut.jpg", "bad/notes.jpg"]
    return Reference(lib, _vectors(lib), unreadable, _skipped_lines(run.stdout, lib))


# ------------------------------------------------------------------ LocalCluster


@pytest.fixture(scope="module")
def local_cluster():
    with distributed.LocalCluster(
        n_workers=2, processes=True, threads_per_worker=1, dashboard_address=":0", silence_logs=logging.ERROR,
    ) as cluster:
        yield cluster
    watchers = [t for t in threading.enumerate() if t.name.startswith(_DASK_THREADS[1:])]
    for thread in watchers:
        thread.join(timeout=10)
    assert not [t.name for t in watchers if t.is_alive()]


def test_local_cluster_gives_the_local_fingerprints_and_reports_bad_files_alike(local_cluster, reference, tmp_path):
    lib = _copy(reference, tmp_path / "photos")
    advanced = []
    with distributed.Client(local_cluster) as client:
        report = index_distributed(lib, client, batch_size=4, compact=False,
                                   progress=lambda total: advanced.append(total) or advanced.append)
    assert (report.added, report.found) == (PHOTOS, PHOTOS + 2)
    assert advanced[0] == PHOTOS + 2 and sum(advanced[1:]) == PHOTOS + 2  # the bar counts every file once
    _assert_same_fingerprints(lib, reference)
    assert {os.path.relpath(f.path, lib): f.reason for f in report.failures} == reference.unreadable
    assert {rel: u.reason for rel, u in Store(lib).unreadable(MODEL).items()} == reference.unreadable
    assert set(_puts(lib).values()) == {1}
    captures = {rel: c.capture for rel, c in Store(lib).captures().items()}
    assert captures == reference.captures and len(captures) == PHOTOS  # headers read by the workers, as locally
    assert all(c.datetime is not None for c in captures.values())
    assert "tensorflow" not in sys.modules  # the model ran in the worker processes only


def test_a_worker_killed_mid_run_loses_and_duplicates_nothing(local_cluster, reference, tmp_path):
    lib = _copy(reference, tmp_path / "photos")
    with distributed.Client(local_cluster) as client:
        client.wait_for_workers(2, timeout=120)
        pids = client.run(os.getpid)
        victim = min(pids.values())
        killed = []

        def progress(total):
            def advance(n):
                if not killed:  # after the first stored batch: the other batches are in flight
                    os.kill(victim, signal.SIGKILL)
                    killed.append(victim)
            return advance

        report = index_distributed(lib, client, batch_size=2, compact=False, progress=progress)
        assert killed == [victim]
        client.wait_for_workers(2, timeout=120)  # the nanny started a new worker
        assert victim not in client.run(os.getpid).values()
    assert report.added == PHOTOS
    _assert_same_fingerprints(lib, reference)
    assert _puts(lib) == {rel: 1 for rel in reference.vectors}  # nothing lost, nothing written twice
    assert {rel: u.reason for rel, u in Store(lib).unreadable(MODEL).items()} == reference.unreadable


# ------------------------------------------------- dask scheduler + dask worker


@pytest.fixture(scope="module")
def scheduler(tmp_path_factory):
    """A ``dask scheduler`` and two ``dask worker`` processes; yields the scheduler's address."""
    folder = tmp_path_factory.mktemp("dask")
    address_file = folder / "scheduler.json"
    logs, procs = [], []

    def start(*command, name):
        log = open(folder / f"{name}.log", "wb")  # noqa: SIM115 - closed at teardown
        logs.append(log)
        procs.append(subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True))

    dask = [sys.executable, "-m", "dask"]  # the `dask` command of this Python
    start(*dask, "scheduler", "--host", "127.0.0.1", "--port", "0", "--dashboard-address", ":0",
          "--scheduler-file", str(address_file), name="scheduler")
    try:
        deadline = time.monotonic() + 60
        while not address_file.exists():
            assert time.monotonic() < deadline, (folder / "scheduler.log").read_text()
            time.sleep(0.1)
        time.sleep(0.2)  # written in one go, but let it be complete
        address = json.loads(address_file.read_text())["address"]
        for i in range(2):
            start(*dask, "worker", address, "--nthreads", "1",
                  "--nworkers", "1", "--no-dashboard", "--name", f"w{i}", name=f"worker{i}")
        yield address
    finally:
        for proc in reversed(procs):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in reversed(procs):
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        for log in logs:
            log.close()


def test_dask_worker_processes_give_the_local_fingerprints(scheduler, reference, tmp_path):
    lib = _copy(reference, tmp_path / "photos")
    run = _index_cli(lib, "--scheduler", scheduler, "--batch-size", "4")
    assert run.returncode == 0, run.stderr
    assert f"{PHOTOS} photos ({PHOTOS} new" in run.stdout
    assert _skipped_lines(run.stdout, lib) == reference.skipped  # bad files reported as by a local run
    assert "Traceback" not in run.stderr
    _assert_same_fingerprints(lib, reference)
    assert {rel: u.reason for rel, u in Store(lib).unreadable(MODEL).items()} == reference.unreadable


def _as_in_the_foreground():
    """Ctrl-C reaches the child, as it does a command a person starts.

    A shell starts a background job (as pytest may be started) with SIGINT
    ignored, the child inherits that, and Python then never raises
    KeyboardInterrupt: the Ctrl-C case would fail for the way it was run.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGINT], ids=["SIGKILL", "Ctrl-C"])
def test_the_client_killed_mid_run_resumes_with_what_is_missing(scheduler, tmp_path, how):
    lib = _make_photos(tmp_path / "photos", 60)
    journal = lib / ".imagecluster" / "journal.pk"
    command = [sys.executable, "-m", "imagecluster", "index", str(lib), "-q", "--scheduler", scheduler,
               "--batch-size", "1"]
    client = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                              preexec_fn=_as_in_the_foreground)
    try:
        deadline = time.monotonic() + 180
        # The journal's first append is its base record alone; kill once fingerprints follow it.
        while not (journal.exists() and journal.stat().st_size > 3000):
            assert client.poll() is None and time.monotonic() < deadline
            time.sleep(0.005)
        client.send_signal(how)
        _, stderr = client.communicate(timeout=120)
    finally:
        if client.poll() is None:
            client.kill()
            client.wait()
    if how == signal.SIGINT:  # Ctrl-C: said so, no traceback, the usual status
        assert client.returncode == 130, stderr
        assert "interrupted; fingerprints made so far are kept" in stderr and "Traceback" not in stderr
    stored = len(Store(lib).entries(MODEL))
    assert 0 < stored < 60
    rerun = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert f"60 photos ({60 - stored} new, 0 changed, {stored} unchanged)" in rerun.stdout
    assert len(Store(lib).entries(MODEL)) == 60


def test_cluster_on_the_scheduler_writes_the_tree_of_the_local_fingerprints(scheduler, reference, tmp_path):
    lib = _copy(reference, tmp_path / "photos")
    run = subprocess.run(
        [sys.executable, "-m", "imagecluster", "cluster", str(lib), "-q", "--scheduler", scheduler, "--sim", "0.5"],
        capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == 0, run.stderr
    assert f"{PHOTOS} photos ({PHOTOS} new" in run.stdout and "written to" in run.stdout
    assert _skipped_lines(run.stdout, lib) == reference.skipped
    _assert_same_fingerprints(lib, reference)
    assert any((lib / "clusters").iterdir())


def test_a_path_map_leads_workers_to_their_mount(scheduler, reference, tmp_path):
    lib = _copy(reference, tmp_path / "photos")
    mount = tmp_path / "mnt" / "nas"
    mount.parent.mkdir()
    mount.symlink_to(lib)  # the workers' view of the same share
    run = _index_cli(lib, "--scheduler", scheduler, "--path-map", f"{lib}={mount}")
    assert run.returncode == 0, run.stderr
    _assert_same_fingerprints(lib, reference)


def test_a_library_no_worker_sees_is_an_error_not_unreadable_photos(scheduler, reference, tmp_path):
    lib = _copy(reference, tmp_path / "photos")
    run = _index_cli(lib, "--scheduler", scheduler, "--path-map", f"{lib}=/nonexistent/photos")
    assert run.returncode == 1
    assert "no Dask worker sees the library folder /nonexistent/photos" in run.stderr
    assert "Traceback" not in run.stderr
    store = Store(lib)
    assert store.unreadable(MODEL) == {} and store.entries(MODEL) == {}  # nothing marked, nothing lost


def test_without_distributed_scheduler_says_what_to_install(tmp_path):
    lib = _make_photos(tmp_path / "photos", 1)
    code = (
        "import sys; sys.modules['distributed'] = None; from imagecluster.cli import main; "
        f"sys.exit(main(['index', {str(lib)!r}, '--scheduler', 'local:2']))"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 2
    assert "pip install 'imagecluster[dask]'" in run.stderr
    assert "Traceback" not in run.stderr
