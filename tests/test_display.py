"The progress bar over an epoch's batches: its text and ETA, the console and Jupyter forms, its use in fit."
import io
import sys
import types

import pytest

from collabc import Adagrad, CollabDataLoaders, callback as callback_mod, collab_learner, display, set_seed


class TTY(io.StringIO):
    def isatty(self):
        return True


def fake_ipython_display(shown):
    "A stand-in for IPython.display that appends to `shown` whatever is displayed or updated."
    mod = types.ModuleType("IPython.display")
    mod.HTML = lambda body: body

    class Handle:
        def update(self, body):
            shown.append(body)

    def show(body, display_id=False):
        shown.append(body)
        return Handle()
    mod.display = show
    return mod


def test_text_has_percent_counts_elapsed_eta_and_comment():
    bar = display.ProgressBar(1250, enabled=False)
    # 562 of 1250 in 90 s: 688 left at 0.16 s each -> 01:50 remaining
    assert bar.text(562, 90.0, "0.8123") == "44.96% [562/1250 01:30<01:50 0.8123]"
    assert bar.text(0, 0.0) == "0.00% [0/1250 00:00<00:00]"
    assert bar.text(1250, 3725.0) == "100.00% [1250/1250 1:02:05<00:00]"


def test_console_bar_redraws_one_line_only_on_a_terminal(monkeypatch):
    out = TTY()
    monkeypatch.setattr(sys, "stdout", out)
    bar = display.ProgressBar(100, min_seconds=1.0)
    bar.update(10, 0.01)                       # epoch expected to take 0.1 s: no bar
    assert out.getvalue() == ""
    bar.update(10, 0.5, "1.2345")              # expected 5 s: the bar appears
    bar.update(50, 2.5, "1.1000")
    text = out.getvalue()
    assert text.count("\r") == 2 and "\n" not in text
    last = text.split("\r")[-1]
    assert last.startswith("|" + "█" * 20 + " " * 20 + "| 50.00% [50/100 00:02<00:02 1.1000]")
    bar.close()                                # the line is wiped, the cursor back at its start
    assert out.getvalue().endswith("\r" + " " * len(last) + "\r")

    piped = io.StringIO()                      # not a terminal (a log file, a pipe): nothing at all
    monkeypatch.setattr(sys, "stdout", piped)
    bar = display.ProgressBar(100, min_seconds=0)
    bar.update(50, 10.0)
    bar.close()
    assert piped.getvalue() == ""


def test_notebook_bar_is_an_html_progress_element_updated_in_place(monkeypatch):
    shown = []
    monkeypatch.setitem(sys.modules, "IPython.display", fake_ipython_display(shown))
    monkeypatch.setattr(display, "in_notebook", lambda: True)
    bar = display.ProgressBar(8, min_seconds=0)
    for done in (2, 4, 8):
        bar.update(done, done * 0.5, "0.5")
    assert len(shown) == 3
    assert '<progress value="4" max="8"' in shown[1]
    assert "50.00% [4/8 00:02&lt;00:02 0.5]" in shown[1]
    bar.close()
    assert shown[-1] == ""                # removed once the epoch ends (the table row follows)
    disabled = display.ProgressBar(8, enabled=False, min_seconds=0)
    disabled.update(4, 100.0)
    assert len(shown) == 4


@pytest.mark.parametrize("mode", ["exact", "sparse"])
def test_fit_drives_the_bar_to_the_end_of_every_epoch(monkeypatch, synth_ratings, mode):
    bars = []

    class Recording(display.ProgressBar):
        def __init__(self, total, enabled=True, min_seconds=1.0):
            super().__init__(total, enabled, min_seconds)
            self.calls, self.closed = [], False
            bars.append(self)

        def update(self, done, elapsed, comment=""):
            self.calls.append((done, elapsed, comment))

        def close(self):
            self.closed = True
    monkeypatch.setattr(callback_mod, "ProgressBar", Recording)
    monkeypatch.setattr(sys, "stdout", TTY())
    set_seed(0)
    dls = CollabDataLoaders.from_df(synth_ratings, bs=16, seed=0)
    kw = dict(train_mode="sparse", opt_func=Adagrad) if mode == "sparse" else {}
    learn = collab_learner(dls, n_factors=4, y_range=(0, 5.5), **kw)
    learn.logger = lambda *a: None
    learn.fit(2, 1e-2)
    assert len(bars) == 2 and all(b.closed and b.console for b in bars)
    n_iter = learn._path.n_iter
    for b in bars:
        done = [c[0] for c in b.calls]
        assert done[-1] == b.total == n_iter and done == sorted(set(done))
        assert all(float(c[2]) > 0 for c in b.calls)          # the smoothed loss is the comment
        elapsed = [c[1] for c in b.calls]
        assert elapsed == sorted(elapsed)
    with learn.no_bar():                                        # no_bar removes the bar with the table
        learn.fit(1, 1e-2)
    assert len(bars) == 2
