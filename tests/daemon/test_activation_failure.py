"""A daemon that D-Bus activation starts and that exits at once (a bad config) is reported at once, with the fix."""

import subprocess
import sys

from imagecluster.daemon._install import ACTIVATION_FILE, render


def test_a_bad_config_fails_the_call_at_once_with_the_reason(session_bus, tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text("libraries = 5\n")
    activation = render(ACTIVATION_FILE, daemon_args=["--config", str(config)])
    (session_bus.servicedir / ACTIVATION_FILE).write_text(activation)
    result = subprocess.run(
        [sys.executable, "-m", "imagecluster", "remote", "status", "--timeout", "600"],
        capture_output=True, text=True, timeout=120,  # far below --timeout: said at once, not waited out
    )
    assert result.returncode == 3, result.stderr
    assert "exited with status 2): its config file or options are wrong" in result.stderr
    assert "run `imagecluster daemon` in a terminal" in result.stderr
