"""The public surface: everything in __all__ exists, and the core never imports the outer layers."""

import subprocess
import sys

import imagecluster


def test_all_names_exist():
    for name in imagecluster.__all__:
        assert hasattr(imagecluster, name), name
    assert sorted(imagecluster.__all__) == imagecluster.__all__


def test_public_errors_share_one_root():
    errors = [getattr(imagecluster, n) for n in imagecluster.__all__ if isinstance(getattr(imagecluster, n), type)]
    errors = [e for e in errors if issubclass(e, Exception)]
    assert len(errors) >= 8
    assert all(issubclass(e, imagecluster.ImageClusterError) for e in errors)


def test_importing_the_core_loads_neither_tensorflow_nor_the_cli():
    code = (
        "import sys, imagecluster, imagecluster.cluster, imagecluster.tree, imagecluster.store;"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras')"
        " or m in ('imagecluster.cli', 'imagecluster.daemon', 'imagecluster.plugin_api')];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
