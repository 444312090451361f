"""The sparse path's block grid cut into shards, without Ray: what each worker of
`fit_distributed` holds and does, as plain NumPy and `_core` calls (so it is tested without Ray).

The sparse path (`collabc.paths.SparsePath`) trains an nb x nb grid of blocks: block
`g*nb + h` holds the ratings of users `u` with `u % nb == g` and items `i` with `i % nb == h`,
and an epoch is nb strata, each nb blocks that share no user group and no item group. Cut the
grid by one side (the *stationary* side, users or items): a shard owns some of that side's
groups, with their rows of the model, their optimizer rows and their ratings; the groups of the
other side (the *moving* side) travel from shard to shard, each with its rows and optimizer
rows, so that at every stratum each moving group sits with the stationary group it meets.

A group's rows are renumbered `r // nb` (the group's rows are `grp, grp + nb, ...`), which keeps
their order, so a block's ratings keep the order the sparse path trains them in (by user, then
item). `_core.dot_fit_blocks` trains one block on a small model made of the stationary group's
rows and the visiting moving group's rows and does exactly the arithmetic the whole model's
call does for that block: a block's result depends only on the rows of its two groups, and
blocks of one stratum commute (tests/test_ray.py checks both against the local fit bit for bit).

A group's state travels as one flat float32 array (see `GroupCodec`): factors, bias and
optimizer rows, so it crosses the object store without pickling.
"""
import concurrent.futures

import numpy as np

from .. import _core

__all__ = ["GroupCodec", "Shard", "group_size", "shard_blocks", "local_blocks"]


def group_size(n_rows, nb, grp):
    "How many rows of a table of `n_rows` fall in group `grp` (rows grp, grp + nb, ...)."
    return max(0, (n_rows - grp + nb - 1) // nb)


def _side_views(params, opt_bufs, nu, ni, k, has_bias, kind):
    """{'user': {...}, 'item': {...}}: per side, the views of a dot model's block of `nu` users
    and `ni` items that hold each field of a row: 'w' (rows, k) factors, 'b' bias, and the
    optimizer's rows ('acc', 'acc_b' for Adagrad; 'mw', 'vw', 'mb', 'vb', 'pow1', 'pow2' for
    lazy Adam), laid out as the sparse path's optimizer buffers are (see csrc/sparse.h)."""
    tables, _ = _core.dot_layout(nu, ni, k, has_bias)
    off = {name: (o, shape) for name, o, shape in tables}

    def table(buf, name):
        o, shape = off[name]
        return buf[o:o + shape[0] * shape[1]].reshape(shape)

    rows = nu + ni
    out = {}
    for side, s0, n, wname, bname in (("user", 0, nu, "u_weight", "u_bias"),
                                       ("item", nu, ni, "i_weight", "i_bias")):
        v = {"w": table(params, wname)}
        if has_bias:
            v["b"] = table(params, bname)[:, 0]
        if kind == "adagrad":
            acc = opt_bufs["v"]
            v["acc"] = acc[s0:s0 + n]
            v["acc_b"] = acc[rows + s0:rows + s0 + n]
        elif kind == "adam":
            v["mw"], v["vw"] = table(opt_bufs["m"], wname), table(opt_bufs["v"], wname)
            if has_bias:
                v["mb"], v["vb"] = table(opt_bufs["m"], bname)[:, 0], table(opt_bufs["v"], bname)[:, 0]
            v["pow1"], v["pow2"] = opt_bufs["pow1"][s0:s0 + n], opt_bufs["pow2"][s0:s0 + n]
        out[side] = v
    return out


def opt_buffers(kind, nu, ni, n_params):
    "Fresh sparse-path optimizer buffers for a model of nu users and ni items (as SparsePath makes them)."
    rows = nu + ni
    if kind == "adagrad":
        return {"v": np.zeros(2 * rows, np.float32)}
    if kind == "adam":
        return {"m": np.zeros(n_params, np.float32), "v": np.zeros(n_params, np.float32),
                "pow1": np.ones(rows, np.float32), "pow2": np.ones(rows, np.float32)}
    if kind == "sgd":
        return {}
    raise ValueError(f"opt must be 'sgd', 'adagrad' or 'adam', got {kind!r}")


class GroupCodec:
    """Packs the rows of one group (factors, bias, optimizer rows) into one flat float32 array
    and back: the form in which a group crosses the object store."""

    def __init__(self, k, has_bias, kind):
        self.k, self.has_bias, self.kind = int(k), bool(has_bias), kind
        fields = [("w", self.k)] + ([("b", 1)] if has_bias else [])
        if kind == "adagrad":
            fields += [("acc", 1), ("acc_b", 1)]
        elif kind == "adam":
            fields += [("mw", self.k), ("vw", self.k)]
            fields += [("mb", 1), ("vb", 1)] if has_bias else []
            fields += [("pow1", 1), ("pow2", 1)]
        self.fields = fields
        self.width = sum(w for _, w in fields)   # floats per row

    def pack(self, views, rows):
        "The rows `rows` (a slice or index array) of a side's `views`, as one flat array."
        parts = []
        for name, w in self.fields:
            a = views[name][rows]
            parts.append(a.reshape(-1))
        return np.concatenate(parts) if parts else np.zeros(0, np.float32)

    def unpack(self, flat, views, rows):
        "Writes a packed group into the rows `rows` of a side's `views`."
        n = flat.size // self.width
        if n * self.width != flat.size:
            raise ValueError(f"a packed group of {flat.size} floats is not a whole number of rows of {self.width}")
        o = 0
        for name, w in self.fields:
            a = flat[o:o + n * w]
            views[name][rows] = a.reshape(n, w) if w > 1 else a
            o += n * w

    def n_rows(self, flat):
        return flat.size // self.width


def shard_blocks(x, y, starts, nb, side, groups):
    """The ratings a shard owning the stationary groups `groups` (of `side`) trains, from a
    block layout (`DataLoader.block_layout(nb)`): a dict with 'keys' ((m, 2) int64 pairs
    (stationary group, moving group)), 'starts' ((m+1,) int64) and 'x' / 'y', each block's rows in
    the layout's order with ids renumbered to their group's local index (`id // nb`)."""
    keys, parts_x, parts_y, st = [], [], [], [0]
    for own in groups:
        for mov in range(nb):
            g, h = (own, mov) if side == "user" else (mov, own)
            b = g * nb + h
            lo, hi = int(starts[b]), int(starts[b + 1])
            keys.append((own, mov))
            parts_x.append(x[lo:hi] // nb)
            parts_y.append(y[lo:hi])
            st.append(st[-1] + hi - lo)
    return {"keys": np.array(keys, np.int64).reshape(-1, 2), "starts": np.array(st, np.int64),
            "x": np.ascontiguousarray(np.concatenate(parts_x) if parts_x else np.zeros((0, 2), np.int32),
                                      dtype=np.int32),
            "y": np.ascontiguousarray(np.concatenate(parts_y) if parts_y else np.zeros(0, np.float32),
                                      dtype=np.float32)}


def local_blocks(x, y, nb, side, groups):
    """`shard_blocks` from a shard's own rows in any order (global ids, every row's stationary
    group in `groups`): they are grouped and ordered by `_core.block_sort` as the local layout is."""
    x = np.ascontiguousarray(x, dtype=np.int32).copy()
    y = np.ascontiguousarray(y, dtype=np.float32).copy()
    starts = _core.block_sort(x, y, None, nb, 1)
    return shard_blocks(x, y, starts, nb, side, groups)


class Shard:
    """One worker's part of the grid: the stationary groups `groups` of `side` ('user' or
    'item'), their ratings (`blocks`, from `shard_blocks`), and, per group, a small dot model
    (and optimizer buffers) holding that group's rows and room for one visiting moving group.

    `set_state({grp: packed})` loads the stationary groups' rows; `train(tasks, moving, hypers)`
    trains one stratum's blocks of this shard and returns their losses and the moving groups'
    new packed rows; `get_state()` returns the stationary groups' packed rows."""

    def __init__(self, groups, blocks, side, nb, n_users, n_items, n_factors, has_bias, y_range,
                 kind, n_threads=1):
        if side not in ("user", "item"):
            raise ValueError(f"side must be 'user' or 'item', got {side!r}")
        self.groups, self.side, self.nb = [int(g) for g in groups], side, int(nb)
        self.n_users, self.n_items, self.k = int(n_users), int(n_items), int(n_factors)
        self.has_bias, self.y_range, self.kind = bool(has_bias), y_range, kind
        self.codec = GroupCodec(self.k, self.has_bias, kind)
        self.n_threads = max(1, int(n_threads))
        n_own, n_mov = (self.n_users, self.n_items) if side == "user" else (self.n_items, self.n_users)
        self.n_mov_max = group_size(n_mov, self.nb, 0)
        self.local = {}
        for g in self.groups:
            n_g = group_size(n_own, self.nb, g)
            nu, ni = (n_g, self.n_mov_max) if side == "user" else (self.n_mov_max, n_g)
            _, total = _core.dot_layout(max(nu, 1), max(ni, 1), self.k, self.has_bias)
            nu, ni = max(nu, 1), max(ni, 1)
            params = np.zeros(total, np.float32)
            bufs = opt_buffers(kind, nu, ni, total)
            views = _side_views(params, bufs, nu, ni, self.k, self.has_bias, kind)
            self.local[g] = {"nu": nu, "ni": ni, "n_own": n_g, "params": params, "bufs": bufs,
                             "own": views[side], "mov": views["item" if side == "user" else "user"]}
        self.x, self.y = blocks["x"], blocks["y"]
        self.block_rows = {}
        for (own, mov), lo, hi in zip(blocks["keys"].tolist(), blocks["starts"][:-1].tolist(),
                                      blocks["starts"][1:].tolist()):
            self.block_rows[(own, mov)] = (lo, hi)
        self.n_ratings = int(self.y.size)
        self._pool = None

    def set_state(self, states):
        "Loads packed rows of stationary groups ({group: packed array})."
        for g, flat in states.items():
            loc = self.local[int(g)]
            self.codec.unpack(np.asarray(flat, np.float32), loc["own"], slice(0, loc["n_own"]))

    def get_state(self):
        "{group: packed rows} of every stationary group of this shard."
        return {g: self.codec.pack(loc["own"], slice(0, loc["n_own"])) for g, loc in self.local.items()}

    def _train_one(self, own, mov, lr, mom, moving, hypers):
        loc = self.local[own]
        n_mov = self.codec.n_rows(moving)
        rows = slice(0, n_mov)
        self.codec.unpack(moving, loc["mov"], rows)
        lo, hi = self.block_rows.get((own, mov), (0, 0))
        loss = np.zeros(1, np.float64)
        st = self.x[lo:hi]
        bufs = loc["bufs"]
        bad = _core.dot_fit_blocks(
            loc["params"], loss, st, self.y[lo:hi], np.array([0, hi - lo], np.int64),
            np.zeros(1, np.int64), np.array([lr], np.float64), np.array([mom], np.float64),
            n_users=loc["nu"], n_items=loc["ni"], n_factors=self.k, has_bias=self.has_bias,
            y_range=self.y_range, opt=self.kind, m=bufs.get("m"), v=bufs.get("v"),
            pow1=bufs.get("pow1"), pow2=bufs.get("pow2"), wd=hypers["wd"],
            sqr_mom=hypers.get("sqr_mom", 0.0), eps=hypers.get("eps", 1e-8), n_threads=1)
        return float(loss[0]), bad >= 0, self.codec.pack(loc["mov"], rows)

    def train(self, tasks, moving, hypers):
        """Trains the blocks `tasks` ([(stationary group, moving group, lr, mom)], at most one
        per stationary group: one stratum) with the moving groups' packed rows `moving` (one per
        task). Returns (losses, diverged flags, new packed moving rows), one per task."""
        if len(moving) != len(tasks):
            raise ValueError(f"{len(tasks)} tasks but {len(moving)} moving groups")
        owns = [t[0] for t in tasks]
        if len(set(owns)) != len(owns):
            raise ValueError("two tasks of one stratum share a stationary group")
        args = [(int(o), int(m), float(lr), float(mom), np.asarray(mv, np.float32), hypers)
                for (o, m, lr, mom), mv in zip(tasks, moving)]
        if self.n_threads > 1 and len(args) > 1:
            if self._pool is None:
                self._pool = concurrent.futures.ThreadPoolExecutor(self.n_threads)
            res = list(self._pool.map(lambda a: self._train_one(*a), args))
        else:
            res = [self._train_one(*a) for a in args]
        return [r[0] for r in res], [r[1] for r in res], [r[2] for r in res]


class Grid:
    """The whole model's rows, group by group: packs the stationary and moving groups out of a
    model's parameter block and optimizer buffers (the driver's copy, the checkpoint) and
    writes them back."""

    def __init__(self, n_users, n_items, n_factors, has_bias, kind, nb, side):
        self.nu, self.ni, self.k, self.nb, self.side = n_users, n_items, n_factors, nb, side
        self.has_bias, self.kind = has_bias, kind
        self.codec = GroupCodec(n_factors, has_bias, kind)

    def _views(self, params, bufs):
        v = _side_views(params, bufs, self.nu, self.ni, self.k, self.has_bias, self.kind)
        mov = "item" if self.side == "user" else "user"
        return v[self.side], v[mov]

    def pack(self, params, bufs):
        "({stationary group: packed}, {moving group: packed}) of a model's block and buffers."
        own, mov = self._views(params, bufs)
        nb = self.nb
        return ({g: self.codec.pack(own, slice(g, None, nb)) for g in range(nb)},
                {h: self.codec.pack(mov, slice(h, None, nb)) for h in range(nb)})

    def unpack(self, params, bufs, own_states, mov_states):
        "Writes packed groups back into a model's block and buffers."
        own, mov = self._views(params, bufs)
        for g, flat in own_states.items():
            self.codec.unpack(np.asarray(flat, np.float32), own, slice(int(g), None, self.nb))
        for h, flat in mov_states.items():
            self.codec.unpack(np.asarray(flat, np.float32), mov, slice(int(h), None, self.nb))
