"""collabc.plotting.place_labels: after it, no two label boxes overlap and every label lies inside
the axes (boxes measured by matplotlib's Agg renderer), each label stays by its point or gets a
leader line, and the result is deterministic."""
import numpy as np
import pytest

pytest.importorskip("matplotlib")
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from collabc.plotting import label_boxes, label_overlaps, place_labels  # noqa: E402

TITLES = ["Star Wars (1977)", "Independence Day (ID4) (1996)", "Indiana Jones and the Last Crusade (1989)",
          "Willy Wonka and the Chocolate Factory (1971)", "Monty Python and the Holy Grail (1974)",
          "E.T. the Extra-Terrestrial (1982)", "Silence of the Lambs, The (1991)", "Fargo (1996)"]


def scatter(n, seed, figsize=(12, 12), spread=1.0):
    "An Agg figure like the lesson's PCA map: n points, labelled with long titles at the points."
    rng = np.random.default_rng(seed)
    xy = rng.normal(size=(n, 2)) * spread
    xy[:5, 0] = xy[:, 0].max()                     # some at the right edge, where labels used to run off
    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.scatter(xy[:, 0], xy[:, 1])
    for k, (x, y) in enumerate(xy):
        ax.text(x, y, f"{TITLES[k % len(TITLES)]} #{k}", color=rng.random(3) * 0.7, fontsize=11)
    return fig, ax, xy


@pytest.mark.parametrize("n, seed", [(50, 0), (50, 1), (30, 2)])
def test_no_two_labels_overlap_and_all_inside(n, seed):
    fig, ax, xy = scatter(n, seed)
    assert len(label_overlaps(ax)) > 10               # as drawn at the points, the labels collide
    place_labels(ax)
    assert label_overlaps(ax) == []
    boxes = label_boxes(ax)
    x0, y0, x1, y1 = ax.get_window_extent(renderer=fig.canvas.get_renderer()).extents
    assert (boxes[:, 0] >= x0).all() and (boxes[:, 2] <= x1).all()
    assert (boxes[:, 1] >= y0).all() and (boxes[:, 3] <= y1).all()
    # the labels still belong to their points: near it, or joined to it by a leader line
    pts = ax.transData.transform(xy)
    near = np.hypot(np.clip(pts[:, 0], boxes[:, 0], boxes[:, 2]) - pts[:, 0],
                    np.clip(pts[:, 1], boxes[:, 1], boxes[:, 3]) - pts[:, 1])
    scale = fig.dpi / 72
    assert (near <= 3 * 4 * scale + 1e-6).sum() + len(ax.lines) == n
    assert np.median(near) < 8 * scale


def test_labels_do_not_cover_points():
    fig, ax, xy = scatter(40, 3)
    place_labels(ax)
    boxes, pts = label_boxes(ax), ax.transData.transform(xy)
    inside = ((pts[None, :, 0] > boxes[:, None, 0]) & (pts[None, :, 0] < boxes[:, None, 2])
              & (pts[None, :, 1] > boxes[:, None, 1]) & (pts[None, :, 1] < boxes[:, None, 3]))
    assert not inside.any()


def test_deterministic_idempotent_and_limits_kept():
    a, ax_a, _ = scatter(50, 4)
    b, ax_b, _ = scatter(50, 4)
    lim = ax_a.get_xlim(), ax_a.get_ylim()
    place_labels(ax_a)
    place_labels(ax_b)
    first = label_boxes(ax_a)
    np.testing.assert_array_equal(first, label_boxes(ax_b))
    assert (ax_a.get_xlim(), ax_a.get_ylim()) == lim
    place_labels(ax_a, leaders=False)       # again: around the same points, so the same places
    np.testing.assert_allclose(label_boxes(ax_a), first, atol=1e-6)   # (pixels -> data -> pixels)


def test_overlap_report_names_pairs_and_outsiders():
    fig = Figure(figsize=(4, 3))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.text(0.5, 0.5, "one label")
    ax.text(0.5, 0.5, "on top of another")
    ax.text(0.95, 0.2, "running off the right edge")
    assert label_overlaps(ax) == [(0, 1), (2, None)]
    assert label_overlaps(ax, outside=False) == [(0, 1)]
    place_labels(ax)
    assert label_overlaps(ax) == []
    assert place_labels(fig.add_subplot(2, 2, 4)) == []      # an axes without labels
