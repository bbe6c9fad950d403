"""Progress you can see: a bar on a terminal, plain lines in a log, nothing with --quiet.

The bar is checked on a real pseudo-terminal with the real command; the
plain lines with a clock the test moves.
"""

import io
import os

from imagecluster._progress import ProgressBar, format_seconds

from _terminal import on_terminal


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_plain_lines_come_every_interval_with_rate_and_time_left():
    out, clock = io.StringIO(), Clock()
    with ProgressBar("fingerprinting holiday", stream=out, interval=10.0, clock=clock) as bar:
        advance = bar(138)
        clock.now += 5.0  # the model loads
        advance(32)
        assert out.getvalue() == ""  # a short run stays silent
        clock.now += 5.0
        advance(30)
        clock.now += 2.0
        advance(10)
    assert out.getvalue() == "imagecluster: fingerprinting holiday: 62/138 photos, 6.0 photos/s, 13 s left\n"


def test_a_terminal_gets_a_bar_at_once_then_figures_then_it_is_wiped(monkeypatch):
    monkeypatch.setenv("COLUMNS", "120")
    out, clock = Terminal(), Clock()
    with ProgressBar("fingerprinting holiday", stream=out, clock=clock) as bar:
        advance = bar(10)
        assert out.getvalue() == "\rfingerprinting holiday   0% [--------------------] 0/10 photos\x1b[K"
        clock.now += 3.0
        advance(4)
        assert out.getvalue().endswith("] 4/10 photos\x1b[K")
        clock.now += 1.0
        advance(2)
        assert out.getvalue().endswith("\rfingerprinting holiday  60% [############--------] 6/10 photos, "
                                       "2.0 photos/s, 2 s left\x1b[K")
    assert out.getvalue().endswith("\r\x1b[K")


def test_a_narrow_terminal_shortens_the_description_not_the_figures(monkeypatch):
    monkeypatch.setenv("COLUMNS", "60")
    out, clock = Terminal(), Clock()
    advance = ProgressBar("fingerprinting a folder with a long name", stream=out, clock=clock)(10)
    clock.now += 4.0
    advance(1)
    assert out.getvalue().endswith(" 1/10 photos\x1b[K")  # no rate yet: the first photo waited for the model
    clock.now += 1.0
    advance(4)
    assert out.getvalue().endswith("\rfingerprinting a ~  50% 5/10 photos, 4.0 photos/s, 1 s left\x1b[K")


def test_quiet_shows_nothing_and_the_daemon_count_can_grow():
    out = Terminal()
    with ProgressBar("x", enabled=False, stream=out) as bar:
        bar(10)(5)
        bar.update(3, 20)
    assert out.getvalue() == ""
    clock = Clock()
    bar = ProgressBar("the daemon", stream=out, clock=clock)
    bar.update(0, 4)
    clock.now += 1.0
    bar.update(2, 9)  # more photos arrived
    assert "2/9 photos" in out.getvalue()


def test_time_left_reads_like_a_person_would_say_it():
    assert [format_seconds(s) for s in (0.2, 42, 185, 3720)] == ["<1 s", "42 s", "3 min 05 s", "1 h 02 min"]


def _on_terminal(*args):
    status, shown = on_terminal(*args)
    assert status == 0, shown
    return shown


def test_cluster_and_index_on_a_terminal(burst_library):
    shown = _on_terminal("cluster", "--batch-size", "2", str(burst_library))
    assert "\rfingerprinting photos   0% [--------------------] 0/6 photos" in shown
    assert "/6 photos, " in shown and " photos/s, " in shown and " left" in shown
    assert "\r\x1b[K" in shown  # wiped before the summary
    assert "6 photos (6 new, 0 changed, 0 unchanged)" in shown

    (burst_library / "2024" / "cat_3.jpg").unlink()
    (burst_library / "2024" / "01" / "cat_2.jpg").rename(burst_library / "cat_new.jpg")
    os.utime(burst_library / "cat_new.jpg", (1, 1))
    quiet = _on_terminal("index", "--quiet", str(burst_library))
    assert "fingerprinting" not in quiet and "photos/s" not in quiet
