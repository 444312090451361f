"""The epoch table, as fastai/fastprogress show it: padded text in a console, an HTML table
(updated in place) in Jupyter, or plain lists under `learn.no_bar()`."""
import html
import sys

__all__ = ["EpochTable", "ProgressBar", "format_time", "in_notebook"]


def format_time(t):
    "fastprogress's format: `mm:ss`, or `h:mm:ss` past an hour (seconds truncated)."
    t = int(t)
    h, m, s = t // 3600, (t // 60) % 60, t % 60
    return f"{h}:{m:02d}:{s:02d}" if h != 0 else f"{m:02d}:{s:02d}"


def in_notebook():
    """True inside a Jupyter kernel, where HTML output renders: classic Jupyter, JupyterLab, VS Code,
    Google Colab (whose shell subclasses ipykernel's ZMQInteractiveShell) and other front ends.
    Decided by capability, not by the shell's class name: the running IPython shell is attached
    to a kernel and has a display publisher (a terminal IPython shell has no kernel)."""
    ip = sys.modules.get("IPython")
    if ip is None:
        return False
    try:
        shell = ip.get_ipython()
    except Exception:
        return False
    if shell is None:
        return False
    return getattr(shell, "kernel", None) is not None and getattr(shell, "display_pub", None) is not None


def _cell(v):
    return f"{v:.6f}" if isinstance(v, float) else str(v)


def html_table(rows):
    "fastprogress's `text2html_table`: header row then one row per epoch."
    out = ['<table border="1" class="dataframe">', "  <thead>", '    <tr style="text-align: left;">']
    out += [f"      <th>{html.escape(str(c))}</th>" for c in rows[0]]
    out += ["    </tr>", "  </thead>", "  <tbody>"]
    for r in rows[1:]:
        out.append("    <tr>")
        out += [f"      <td>{html.escape(str(c))}</td>" for c in r]
        out.append("    </tr>")
    out += ["  </tbody>", "</table>"]
    return "\n".join(out)


class EpochTable:
    "Writes one row per epoch in the right form for where the code runs."
    def __init__(self, names, enabled=True, logger=print):
        self.names, self.enabled, self.logger = list(names), enabled, logger
        self.rows = [self.names]
        self.handle = None
        self.notebook = enabled and logger is print and in_notebook()
        if self.enabled and not self.notebook:
            self.padded = [n + " " * (8 - len(n)) if len(n) < 8 else n for n in self.names]
            self.logger("  ".join(self.padded))

    def row(self, values):
        if not self.enabled:
            self.logger(list(values))
            return
        cells = [_cell(v) for v in values]
        self.rows.append(cells)
        if self.notebook:
            from IPython.display import HTML, display
            if self.handle is None:
                self.handle = display(HTML(html_table(self.rows)), display_id=True)
            else:
                self.handle.update(HTML(html_table(self.rows)))
        else:
            self.logger("".join(c + " " * (2 + len(n) - len(c)) for c, n in zip(cells, self.padded)))

    def close(self):
        pass


class ProgressBar:
    """fastprogress's bar for one epoch: `45.00% [562/1250 00:01<00:01 0.8123]`. In Jupyter an
    HTML <progress> element updated in place; in a console a line redrawn with '\\r', only when
    stdout is a terminal (as fastprogress does). It appears only once the epoch is expected to
    take more than `min_seconds`, so short epochs print nothing extra."""
    def __init__(self, total, enabled=True, min_seconds=1.0):
        self.total, self.min_seconds = max(int(total), 1), min_seconds
        self.notebook = enabled and in_notebook()
        try:
            tty = sys.stdout.isatty()
        except (AttributeError, ValueError):
            tty = False
        self.console = enabled and not self.notebook and tty
        self.handle, self.shown, self.width = None, False, 0

    def text(self, done, elapsed, comment=""):
        remaining = elapsed / done * (self.total - done) if done else 0.0
        return (f"{100 * done / self.total:.2f}% [{done}/{self.total} {format_time(elapsed)}"
                f"<{format_time(remaining)}{' ' + comment if comment else ''}]")

    def update(self, done, elapsed, comment=""):
        if not (self.console or self.notebook):
            return
        expected = elapsed / done * self.total if done else 0.0
        if not self.shown and max(expected, elapsed) < self.min_seconds:
            return
        self.shown = True
        text = self.text(done, elapsed, comment)
        if self.notebook:
            from IPython.display import HTML, display
            body = HTML(f'<progress value="{done}" max="{self.total}" style="width:300px; height:20px; '
                        f'vertical-align: middle;"></progress> {html.escape(text)}')
            if self.handle is None:
                self.handle = display(body, display_id=True)
            else:
                self.handle.update(body)
        else:
            n = int(40 * done / self.total)
            line = f"|{'█' * n}{' ' * (40 - n)}| {text}"
            self.width = max(self.width, len(line))
            sys.stdout.write("\r" + line.ljust(self.width))
            sys.stdout.flush()

    def close(self):
        if not self.shown:
            return
        if self.notebook and self.handle is not None:
            from IPython.display import HTML
            self.handle.update(HTML(""))
        elif self.console:
            sys.stdout.write("\r" + " " * self.width + "\r")
            sys.stdout.flush()
        self.shown = False
