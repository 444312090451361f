"""Readable labels on scatter plots: `place_labels` moves the text labels of a matplotlib axes so
that no two overlap, none covers a plotted point and all stay inside the axes (the lesson's PCA
map labels 50 movies, many of them close together and some near the right edge).

    fig = plot_pca(learn, top_movies)           # or any axes with ax.text labels at points
    place_labels(fig.axes[0])
    assert label_overlaps(fig.axes[0]) == []

It is a small greedy placement, deterministic and without dependencies beyond matplotlib: labels
are placed one after the other (in the order they were added), each at the first free spot
among candidates around its point, nearest first (right, left, above, below, the corners, then
rings further out); a label that had to move away from its point gets a thin leader line in its
colour. Positions are computed in display pixels from the rendered text extents, so call it once
the axes limits and the figure size are final; it freezes the axes limits.
"""
import numpy as np

__all__ = ["place_labels", "label_overlaps", "label_boxes"]

_DIRECTIONS = 16      # candidate angles per ring
_RINGS = 200          # rings of candidates, out to the axes' diagonal, before giving up on a free spot


def _renderer(fig):
    get = getattr(fig.canvas, "get_renderer", None)
    if get is not None:
        return get()
    fig.draw_without_rendering()
    return fig._get_renderer()


def label_boxes(ax, texts=None):
    "The display-pixel extents (x0, y0, x1, y1) of `texts` (default: every text of `ax`), as an (n, 4) array."
    texts = list(ax.texts) if texts is None else list(texts)
    r = _renderer(ax.figure)
    return np.array([t.get_window_extent(renderer=r).extents for t in texts], dtype=float).reshape(-1, 4)


def _overlap(a, b, pad=0.0):
    "Boolean (len(a), len(b)): whether boxes of `a` and `b` overlap (with `pad` pixels of margin)."
    return ((a[:, None, 0] < b[None, :, 2] + pad) & (b[None, :, 0] < a[:, None, 2] + pad)
            & (a[:, None, 1] < b[None, :, 3] + pad) & (b[None, :, 1] < a[:, None, 3] + pad))


def label_overlaps(ax, texts=None, outside=True):
    """The pairs (i, j) of labels whose boxes overlap, and with `outside` the labels (i, None) that
    stick out of the axes; an empty list when every label is clear."""
    texts = list(ax.texts) if texts is None else list(texts)
    boxes = label_boxes(ax, texts)
    hit = np.triu(_overlap(boxes, boxes), 1)
    pairs = [(int(i), int(j)) for i, j in zip(*np.nonzero(hit))]
    if outside:
        x0, y0, x1, y1 = ax.get_window_extent(renderer=_renderer(ax.figure)).extents
        out = (boxes[:, 0] < x0) | (boxes[:, 1] < y0) | (boxes[:, 2] > x1) | (boxes[:, 3] > y1)
        pairs += [(int(i), None) for i in np.flatnonzero(out)]
    return pairs


def _candidates(px, py, w, h, gap, step, reach):
    "Lower-left corners of boxes (w x h) around the point (px, py), nearest first."
    yield px + gap, py - h / 2                # right of the point, centred: where fastbook's text starts
    yield px - gap - w, py - h / 2            # left
    yield px - w / 2, py + gap                # above
    yield px - w / 2, py - gap - h            # below
    yield px + gap, py + gap                  # the four corners
    yield px - gap - w, py + gap
    yield px + gap, py - gap - h
    yield px - gap - w, py - gap - h
    angles = np.linspace(0, 2 * np.pi, _DIRECTIONS, endpoint=False)
    for ring in range(1, _RINGS + 1):
        r = gap + ring * max(step, reach / _RINGS) if ring > 20 else gap + ring * step
        for a in angles:                      # the box's nearest side or corner at distance r
            cx, cy = px + r * np.cos(a), py + r * np.sin(a)
            yield (cx if np.cos(a) >= 0 else cx - w), (cy if np.sin(a) >= 0 else cy - h)


def place_labels(ax, texts=None, points=None, gap=4.0, pad=1.0, marker=3.0, leaders=True):
    """Move `texts` (default: every text of `ax`) so that no two overlap, none covers a point and
    all lie inside `ax`. Each text keeps its anchor point (its current position, or the matching
    row of `points` in data coordinates) and goes to the nearest free spot around it; `gap` is
    the distance in points (1/72 inch) between a point and its label, `pad` the margin in pixels
    between labels, `marker` the half-size in points of a point's box (scatter's default marker
    is 6 points wide). Labels moved further than `3 * gap` from their point
    get a leader line (`leaders=False`: none). Calling it again (say after resizing the figure)
    places the labels afresh around the same points. Returns the texts. Freezes the axes limits."""
    from matplotlib.lines import Line2D
    texts = list(ax.texts) if texts is None else list(texts)
    if not texts:
        return texts
    fig = ax.figure
    ax.set_xlim(ax.get_xlim())
    ax.set_ylim(ax.get_ylim())
    if points is None:   # a label placed before keeps the point it was placed for
        anchors = np.array([getattr(t, "collabc_anchor", t.get_position()) for t in texts], dtype=float)
    else:
        anchors = np.asarray(points, dtype=float).reshape(len(texts), 2)
    to_px = ax.transData.transform
    from_px = ax.transData.inverted().transform
    pts = to_px(anchors)
    r = _renderer(fig)
    frame = ax.get_window_extent(renderer=r).extents
    reach = float(np.hypot(frame[2] - frame[0], frame[3] - frame[1]))
    scale = fig.dpi / 72.0                                              # points -> pixels
    gap, marker, step = gap * scale, marker * scale, 2.0 * scale
    obstacles = np.column_stack([pts - marker, pts + marker])       # every point is in the way
    placed = np.zeros((0, 4))
    for k, (t, (px, py)) in enumerate(zip(texts, pts)):
        t.set_ha("left")
        t.set_va("bottom")
        t.set_rotation_mode("anchor")
        ext = t.get_window_extent(renderer=r).extents
        w, h = ext[2] - ext[0], ext[3] - ext[1]
        best = None
        for x0, y0 in _candidates(px, py, w, h, gap, step, reach):
            box = np.array([[x0, y0, x0 + w, y0 + h]])
            if box[0, 0] < frame[0] or box[0, 1] < frame[1] or box[0, 2] > frame[2] or box[0, 3] > frame[3]:
                continue
            if _overlap(box, placed, pad).any() or _overlap(box, obstacles).any():
                continue
            best = box[0]
            break
        if best is None:      # nowhere free within reach: keep it inside the axes at least
            x0 = float(np.clip(px + gap, frame[0], max(frame[0], frame[2] - w)))
            y0 = float(np.clip(py - h / 2, frame[1], max(frame[1], frame[3] - h)))
            best = np.array([x0, y0, x0 + w, y0 + h])
        t.collabc_anchor = tuple(anchors[k])
        t.set_position(tuple(from_px([best[:2]])[0]))
        placed = np.vstack([placed, best])
        if leaders:
            nx, ny = np.clip(px, best[0], best[2]), np.clip(py, best[1], best[3])
            if np.hypot(nx - px, ny - py) > 3 * gap:
                (lx0, ly0), (lx1, ly1) = from_px([[px, py], [nx, ny]])
                ax.add_line(Line2D([lx0, lx1], [ly0, ly1], lw=0.6, color=t.get_color(), alpha=0.6,
                                   zorder=t.get_zorder() - 0.1))
    return texts
