"""Writes the lesson notebooks (notebooks/NN_*.ipynb) from the cell lists below.

This script is the source of the notebooks: edit a cell here, run `python notebooks/make_notebooks.py`,
and commit both. The notebooks are written without outputs and with fixed cell ids, so the
result is reproducible; `--check` exits non-zero when a committed notebook's cells differ from
what this script writes (tests/test_notebooks.py runs it). Needs nbformat.

Every notebook runs top to bottom on MovieLens-100k in a fresh kernel (`untar_data` reads
`$COLLABC_DATA/ml-100k` when set, else downloads it once), seeds collabc with `set_seed(42)`, and
asserts its key numbers in cells so that a regression fails CI.
"""
import argparse
import pathlib
import sys
import textwrap

HERE = pathlib.Path(__file__).resolve().parent


def md(s):
    return ("markdown", textwrap.dedent(s).strip("\n"))


def code(s):
    return ("code", textwrap.dedent(s).strip("\n"))


SETUP = code("""
    %matplotlib inline
    import numpy as np
    import pandas as pd
    from collabc import *
    set_seed(42)
""")

# the same, and tables show whole movie titles instead of cutting them at 50 characters with '...'
SETUP_TABLES = code("""
    %matplotlib inline
    import numpy as np
    import pandas as pd
    from collabc import *
    set_seed(42)
    pd.set_option('display.max_colwidth', None)
""")

LOAD = code("""
    path = untar_data(URLs.ML_100k)
    ratings = pd.read_csv(path/'u.data', delimiter='\\t', header=None,
                          names=['user', 'movie', 'rating', 'timestamp'])
    movies = pd.read_csv(path/'u.item', delimiter='|', encoding='latin-1', usecols=(0, 1),
                         names=('movie', 'title'), header=None)
    ratings = ratings.merge(movies)
""")

DLS = code("""
    dls = CollabDataLoaders.from_df(ratings, item_name='title', bs=64)
    n_users, n_movies = len(dls.classes['user']), len(dls.classes['title'])
    assert (n_users, n_movies) == (944, 1665)
    dls
""")

NOTEBOOKS = {}

# ---------------------------------------------------------------------------------------------
NOTEBOOKS["01_data"] = [
    md("""
        # 1. A first look at the data

        Collaborative filtering predicts how much a user will like an item from what *other* users
        with similar tastes liked, without knowing anything about the items themselves. The lesson
        uses MovieLens-100k: 100,000 ratings (1 to 5 stars) that 943 users gave to 1,682 movies.

        This series rebuilds the lesson (fastai Lesson 7, fastbook chapter 8) with `collabc`, a
        fastai.collab replacement with a C core and no PyTorch. Every notebook runs top to bottom in
        a fresh kernel and checks its key numbers with `assert`.
    """),
    SETUP_TABLES,
    md("""
        `untar_data` downloads the data set from GroupLens once and caches it (or uses
        `$COLLABC_DATA/ml-100k` when that variable is set). `u.data` is tab-separated, without a
        header: user id, movie id, rating, timestamp.
    """),
    code("""
        path = untar_data(URLs.ML_100k)
        ratings = pd.read_csv(path/'u.data', delimiter='\\t', header=None,
                              names=['user', 'movie', 'rating', 'timestamp'])
        ratings.head()
    """),
    code("""
        assert len(ratings) == 100_000
        assert ratings['user'].nunique() == 943 and ratings['movie'].nunique() == 1682
        assert sorted(ratings['rating'].unique()) == [1, 2, 3, 4, 5]
        ratings['rating'].value_counts().sort_index()
    """),
    md("""
        Four stars is the most common rating, and most ratings are 3 or more: people mostly rate
        movies they chose to watch. Each user rated at least 20 movies, yet the table is very
        sparse, since the average user has seen a few percent of the catalogue:
    """),
    code("""
        density = len(ratings) / (ratings['user'].nunique() * ratings['movie'].nunique())
        per_user = ratings['user'].value_counts()
        assert ratings['rating'].value_counts().idxmax() == 4
        assert per_user.min() == 20 and 0.06 < density < 0.07
        print(f'{density:.1%} of the user x movie table is filled; ratings per user: '
              f'min {per_user.min()}, median {per_user.median():.0f}, max {per_user.max()}')
    """),
    md("""
        ## Titles

        Movie ids mean nothing to a reader, so the lesson merges in the titles from `u.item`
        (`|`-separated, latin-1). A few titles appear under two ids in the file, so there are
        fewer titles than movie ids; from the next notebook on, the title is the item.
    """),
    code("""
        movies = pd.read_csv(path/'u.item', delimiter='|', encoding='latin-1', usecols=(0, 1),
                             names=('movie', 'title'), header=None)
        ratings = ratings.merge(movies)
        assert len(ratings) == 100_000 and ratings['title'].nunique() == 1664
        ratings.head()
    """),
    md("""
        ## The most active users and the most rated movies

        The lesson pictures the data as a crosstab: users down the side, movies across the top,
        ratings in the cells. Here are the 15 users who rated the most movies against the 15 movies
        rated most often. Even this, the densest corner of the table, has gaps (`NaN`): filling
        them in is exactly the prediction problem.
    """),
    code("""
        top_users = ratings['user'].value_counts().index[:15]
        top_titles = ratings['title'].value_counts().index[:15]
        sub = ratings[ratings['user'].isin(top_users) & ratings['title'].isin(top_titles)]
        crosstab = pd.crosstab(sub['user'], sub['title'], values=sub['rating'], aggfunc='mean')
        # whole stars, and the titles written upwards so that the 15 columns fit on a page
        crosstab.style.format('{:.0f}', na_rep='NaN').set_table_styles(
            [{'selector': 'th.col_heading', 'props': 'writing-mode: vertical-rl; transform: rotate(180deg); '
                                                     'text-align: left; vertical-align: bottom;'}])
    """),
    code("""
        filled = crosstab.notna().to_numpy().mean()
        assert crosstab.shape == (15, 15)
        assert 0.7 < filled < 1.0, filled
        print(f'{filled:.0%} of this corner is filled, against {density:.1%} of the whole table')
    """),
    md("""
        ## Latent factors by hand

        Suppose each movie could be described by a few numbers: how much science fiction it is, how
        much action, how old. A user can be described by the same numbers: how much they like each
        of those. The lesson scores the (made-up) movie *The Last Skywalker* on those three factors
        with values between -1 and 1:
    """),
    code("""
        last_skywalker = np.array([0.98, 0.9, -0.9])    # very sci-fi, very action, very new
        user1 = np.array([0.9, 0.8, -0.6])              # likes sci-fi, action, new movies
        match = (user1 * last_skywalker).sum()
        match
    """),
    md("""
        Multiplying the two vectors element by element and adding up (the *dot product*) gives a
        high score: a good match. *Casablanca* (not sci-fi, little action, old) is a poor match for
        the same user:
    """),
    code("""
        casablanca = np.array([-0.99, -0.3, 0.8])
        mismatch = (user1 * casablanca).sum()
        assert np.isclose(match, 2.142) and np.isclose(mismatch, -1.611)
        mismatch
    """),
    md("""
        Nobody hands us these factors. Collaborative filtering *learns* them: it starts each user
        and each movie with random factors and adjusts them by gradient descent until the dot
        products match the ratings we have. The next notebook looks at how a model stores and
        looks up those factors.
    """),
]

# ---------------------------------------------------------------------------------------------
NOTEBOOKS["02_embeddings"] = [
    md("""
        # 2. Embeddings

        A model keeps one row of factors per user and per movie in a matrix. To get user 3's
        factors we could multiply the matrix by a *one-hot* vector (all zeros except a 1 at
        position 3), which is an ordinary matrix product that a deep-learning library knows how to
        differentiate. It gives exactly the row we would get by indexing, which is far cheaper.
        An *embedding* is that: an index lookup that behaves like a multiplication by a one-hot
        vector.
    """),
    SETUP_TABLES,
    LOAD,
    code("""
        n_users, n_movies, n_factors = ratings['user'].nunique(), ratings['title'].nunique(), 5
        user_factors = np.random.randn(n_users, n_factors).astype(np.float32)
        movie_factors = np.random.randn(n_movies, n_factors).astype(np.float32)

        def one_hot(i, n):
            v = np.zeros(n, dtype=np.float32)
            v[i] = 1
            return v

        one_hot_3 = one_hot(3, n_users)
        user_factors.T @ one_hot_3, user_factors[3]
    """),
    code("""
        assert np.array_equal(user_factors.T @ one_hot_3, user_factors[3])
        # the same for a whole batch: rows of the identity matrix are the one-hot vectors
        idx = np.array([3, 7, 7, 42, 900])
        one_hots = np.eye(n_users, dtype=np.float32)[idx]          # (5, 943), almost all zeros
        assert np.array_equal(one_hots @ user_factors, user_factors[idx])
        one_hots.shape, (one_hots @ user_factors).shape
    """),
    md("""
        The product does 943 multiplications per factor to pick out one number; the lookup reads
        it. Training in collabc (as in PyTorch) uses the lookup forward and its mirror backward:
        the gradient of a row is the sum of the gradients of the batch items that used it.

        ## `CollabDataLoaders`

        `CollabDataLoaders.from_df` splits the ratings at random (80% training, 20% validation),
        turns user ids and titles into indices into the embedding tables, and serves mini-batches
        of 64. The first three columns are taken as user, item and rating unless named, so we name
        the title column as the item.
    """),
    DLS,
    code("""
        dls.show_batch()
    """),
    md("""
        Index 0 of every vocabulary is `'#na#'`, the slot for an id the model has never seen. As in
        fastai, numeric user ids get their classes from the training rows only, while string
        titles get every title in the file (1664 + `'#na#'`). The training loader shuffles and
        drops the last partial batch; the validation loader keeps its order and every row.
    """),
    code("""
        assert dls.classes['user'][0] == '#na#' and dls.classes['title'][0] == '#na#'
        assert (dls.train.n, dls.valid.n) == (80_000, 20_000)
        assert (len(dls.train), len(dls.valid)) == (1250, 313)
        dls.classes['title'][:5], dls.classes['title'].o2i['Silence of the Lambs, The (1991)']
    """),
    md("""
        A batch is a pair of NumPy arrays: `x` holds (user index, title index) pairs and `y` the
        ratings.
    """),
    code("""
        xb, yb = dls.one_batch()
        assert xb.shape == (64, 2) and xb.dtype == np.int64
        assert yb.shape == (64, 1) and yb.dtype == np.float32
        row = xb[0]
        xb[:3], yb[:3, 0], (dls.classes['user'][row[0]], dls.classes['title'][row[1]])
    """),
    md("""
        ## The embedding tables of a model

        A collabc model keeps its tables as NumPy views into one parameter block; `weight[indices]`
        is the lookup. For the users of the batch above it equals the one-hot product:
    """),
    code("""
        model = DotProduct(n_users=len(dls.classes['user']), n_movies=len(dls.classes['title']), n_factors=5)
        W = model.user_factors.weight
        one_hots = np.eye(W.shape[0], dtype=np.float32)[xb[:, 0]]
        assert np.array_equal(one_hots @ W, W[xb[:, 0]])
        model, W.shape, W[xb[:2, 0]]
    """),
    md("""
        The factors start as small random numbers (a truncated normal with standard deviation
        0.01, as fastai does). Training moves them; the next notebook trains the dot-product model
        step by step.
    """),
]

# ---------------------------------------------------------------------------------------------
NOTEBOOKS["03_dot_product"] = [
    md("""
        # 3. The dot-product model, step by step

        The lesson builds the model in stages and trains each one for five epochs with
        `fit_one_cycle(5, 5e-3)`, looking at the epoch table: a plain dot product, then squashing
        the predictions into the rating range, then biases, then weight decay. The loss is the
        mean squared error (MSE) on the validation set.
    """),
    SETUP_TABLES,
    LOAD,
    DLS,
    md("""
        ## A plain dot product

        `DotProduct` holds a table of 50 factors per user and per title; its prediction for a
        (user, title) pair is the dot product of their factors. `Learner` is fastai's training
        loop (Adam, one-cycle schedule, the epoch table), with each epoch run in C.
    """),
    code("""
        model = DotProduct(n_users, n_movies, 50)
        learn = Learner(dls, model, loss_func=MSELossFlat())
        learn.fit_one_cycle(5, 5e-3)
        plain = np.array(learn.recorder.values)      # per epoch: train_loss, valid_loss
    """),
    md("""
        ## Squashing into the rating range: `sigmoid_range`

        Nothing keeps the dot product between 1 and 5. `sigmoid_range(x, low, high)` maps any number
        into (low, high). The lesson uses (0, 5.5) rather than (0, 5): a sigmoid only reaches its
        limits at infinity, so a 5-star rating would otherwise be out of reach.
    """),
    code("""
        import matplotlib.pyplot as plt
        x = np.linspace(-6, 6, 200)
        plt.plot(x, sigmoid_range(x, 0, 5.5)); plt.axhline(5, ls=':', c='gray')
        plt.title('sigmoid_range(x, 0, 5.5)'); plt.show()
        sigmoid_range(np.array([-10.0, 0.0, 10.0]), 0, 5.5)
    """),
    code("""
        model = DotProduct(n_users, n_movies, 50, y_range=(0, 5.5))
        learn = Learner(dls, model, loss_func=MSELossFlat())
        learn.fit_one_cycle(5, 5e-3)
        squashed = np.array(learn.recorder.values)
    """),
    code("""
        # the range helps at once: the first epoch's valid loss drops from about 1.3 to about 1.0
        assert plain[0, 1] > 1.15 and squashed[0, 1] < 1.05, (plain[0, 1], squashed[0, 1])
        assert squashed[0, 1] < plain[0, 1] - 0.15
        pd.DataFrame({'plain': plain[:, 1], 'y_range': squashed[:, 1]}).rename_axis('epoch')
    """),
    md("""
        The head start does not last: the squashed model's validation loss stops improving after
        two or three epochs while its training loss keeps falling (to about 0.37 in the table
        above), so both end at a similar valid loss. Keep that pattern in mind; it comes back.
    """),
    md("""
        ## Biases

        Some users rate everything generously, and some movies are liked by nearly everyone. One
        extra number per user and per movie, added to the dot product, captures that directly.
        `DotProductBias` is the lesson's model with those biases and `y_range=(0, 5.5)`.
    """),
    code("""
        model = DotProductBias(n_users, n_movies, 50)
        learn = Learner(dls, model, loss_func=MSELossFlat())
        learn.fit_one_cycle(5, 5e-3)
        biases = np.array(learn.recorder.values)
    """),
    md("""
        The model does not end up better. The validation loss reaches its best by the second or
        third epoch and then rises while the training loss keeps falling to well under half of it:
        the model is memorising the training ratings. That is overfitting.
    """),
    code("""
        train_loss, valid_loss = biases[:, 0], biases[:, 1]
        assert valid_loss[-1] > valid_loss.min() + 0.02, valid_loss       # valid rose after its best
        assert valid_loss.argmin() <= 2
        assert train_loss[-1] < 0.35 and train_loss[-1] < valid_loss[-1] - 0.4
        valid_loss.min(), valid_loss[-1], train_loss[-1]
    """),
    md("""
        ## Weight decay

        Weight decay (L2 regularisation) adds `wd * (parameters**2).sum()` to the loss, which pulls
        every parameter towards zero at each step. Large factors are what let the model fit single
        ratings exactly, so penalising them makes it generalise. In fastai and collabc it is
        applied as *decoupled* decay: before each Adam step every parameter is multiplied by
        `1 - lr*wd`.

        Note that the run above already had some: without a `wd` argument, fastai's Adam (and so
        collabc's) applies `wd=0.01`.
    """),
    code("""
        assert learn.opt.hypers['wd'] == 0.01
    """),
    md("""
        The lesson's value is `wd=0.1`; here it is next to 0.01 and 0.001, each from fresh
        parameters:
    """),
    code("""
        runs = {}
        for wd in (0.1, 0.01, 0.001):
            print(f'wd={wd}')
            learn = Learner(dls, DotProductBias(n_users, n_movies, 50), loss_func=MSELossFlat())
            learn.fit_one_cycle(5, 5e-3, wd=wd)
            runs[wd] = np.array(learn.recorder.values)
    """),
    md("""
        With `wd=0.1` the training loss stays higher, and the validation loss falls for four
        epochs and then levels off: the last epoch ends within a few thousandths of the best one,
        and lowest of the three runs, at the lesson's value (fastai's tutorial: 0.811; the book:
        0.823). With 0.01 and 0.001 the validation loss is at its best after two or three epochs
        and then climbs by several hundredths while the training loss keeps falling: too little
        decay to stop the memorising. The last `learn` is the `wd=0.001` run; its loss curves
        show the turn.
    """),
    code("""
        summary = pd.DataFrame({f'wd={wd}': {'final train_loss': v[-1, 0], 'best valid_loss': v[:, 1].min(),
                                             'final valid_loss': v[-1, 1]} for wd, v in runs.items()}).T
        v01 = runs[0.1][:, 1]
        assert 0.78 <= v01[-1] <= 0.84, v01[-1]                  # the lesson's model
        assert (np.diff(v01[:4]) < 0).all(), v01                 # wd=0.1: falls for four epochs,
        assert v01[-1] <= v01.min() + 0.005, v01                 # then levels off near its best
        for wd in (0.01, 0.001):
            train, valid = runs[wd][:, 0], runs[wd][:, 1]
            assert v01[-1] < valid[-1] - 0.03                    # wd=0.1 ends lowest
            assert valid.argmin() <= 2 and valid[-1] > valid.min() + 0.02, valid   # best early, then climbs
            assert (np.diff(train) < 0).all() and train[-1] < runs[0.1][-1, 0] - 0.15   # train keeps falling
        summary
    """),
    code("""
        learn.recorder.plot_loss();
    """),
]

# ---------------------------------------------------------------------------------------------
NOTEBOOKS["04_from_scratch"] = [
    md("""
        # 4. Models from scratch

        The lesson writes its models itself, as PyTorch `Module`s, and trains them with fastai's
        `Learner`. The same code runs here unchanged: the only edits to the lesson's cells are the
        import line and a dropped `torch.` prefix (`torch.zeros` is `zeros`). collabc's `Module`,
        `Embedding`, `nn.Parameter` and tensors work like PyTorch's, with autograd, and `Learner`
        trains any such model with fastai's Adam and one-cycle schedule. At the end, the built-in
        `collab_learner` turns out to be the same model, trained in C.
    """),
    SETUP,
    LOAD,
    DLS,
    md("""
        ## A dot product, written out

        A model is a class: its layers are attributes, `forward` says what to do with a batch
        `x` of (user, movie) index pairs. `Embedding(n, k)` is a table of `n` rows of `k`
        learnable numbers (fastai's initialisation: a truncated normal with standard deviation
        0.01); calling it with indices looks the rows up.
    """),
    code("""
        class DotProduct(Module):
            def __init__(self, n_users, n_movies, n_factors, y_range=(0,5.5)):
                self.user_factors = Embedding(n_users, n_factors)
                self.movie_factors = Embedding(n_movies, n_factors)
                self.y_range = y_range
            def forward(self, x):
                users = self.user_factors(x[:,0])
                movies = self.movie_factors(x[:,1])
                return sigmoid_range((users * movies).sum(dim=1), *self.y_range)
    """),
    code("""
        model = DotProduct(n_users, n_movies, 50)
        learn = Learner(dls, model, loss_func=MSELossFlat())
        learn.fit_one_cycle(5, 5e-3)
    """),
    md("""
        ## With biases

        One more number per user and per movie, added to the dot product; trained with the
        lesson's weight decay.
    """),
    code("""
        class DotProductBias(Module):
            def __init__(self, n_users, n_movies, n_factors, y_range=(0,5.5)):
                self.user_factors = Embedding(n_users, n_factors)
                self.user_bias = Embedding(n_users, 1)
                self.movie_factors = Embedding(n_movies, n_factors)
                self.movie_bias = Embedding(n_movies, 1)
                self.y_range = y_range

            def forward(self, x):
                users = self.user_factors(x[:,0])
                movies = self.movie_factors(x[:,1])
                res = (users * movies).sum(dim=1, keepdim=True)
                res += self.user_bias(x[:,0]) + self.movie_bias(x[:,1])
                return sigmoid_range(res, *self.y_range)
    """),
    code("""
        model = DotProductBias(n_users, n_movies, 50)
        learn = Learner(dls, model, loss_func=MSELossFlat())
        learn.fit_one_cycle(5, 5e-3, wd=0.1)
    """),
    code("""
        valid_loss = learn.recorder.values[-1][1]
        assert 0.78 <= valid_loss <= 0.84, valid_loss       # the book: 0.823
        valid_loss
    """),
    md("""
        ## Creating our own embedding module

        What does `Embedding` hold? A `Module` finds its parameters itself: a tensor assigned to
        an attribute is just a tensor, an `nn.Parameter` is a parameter, and a sub-module's
        parameters are its own.
    """),
    code("""
        class T(Module):
            def __init__(self): self.a = ones(3)

        L(T().parameters())
    """),
    code("""
        class T(Module):
            def __init__(self): self.a = nn.Parameter(ones(3))

        L(T().parameters())
    """),
    code("""
        class T(Module):
            def __init__(self): self.a = nn.Linear(1, 3, bias=False)

        t = T()
        L(t.parameters())
    """),
    code("""
        type(t.a.weight)
    """),
    code("""
        t.a.weight
    """),
    md("""
        So an embedding is nothing but a parameter tensor that we index into. The book replaces
        `Embedding` with its own tables, drawn from a normal distribution with standard deviation
        0.01:
    """),
    code("""
        def create_params(size):
            return nn.Parameter(zeros(*size).normal_(0, 0.01))
    """),
    code("""
        class DotProductBias(Module):
            def __init__(self, n_users, n_movies, n_factors, y_range=(0,5.5)):
                self.user_factors = create_params([n_users, n_factors])
                self.user_bias = create_params([n_users])
                self.movie_factors = create_params([n_movies, n_factors])
                self.movie_bias = create_params([n_movies])
                self.y_range = y_range

            def forward(self, x):
                users = self.user_factors[x[:,0]]
                movies = self.movie_factors[x[:,1]]
                res = (users*movies).sum(dim=1)
                res += self.user_bias[x[:,0]] + self.movie_bias[x[:,1]]
                return sigmoid_range(res, *self.y_range)
    """),
    code("""
        model = DotProductBias(n_users, n_movies, 50)
        learn = Learner(dls, model, loss_func=MSELossFlat())
        learn.fit_one_cycle(5, 5e-3, wd=0.1)
    """),
    code("""
        valid_loss = learn.recorder.values[-1][1]
        assert 0.78 <= valid_loss <= 0.84, valid_loss       # the book's create_params run: 0.824
        # the forward pass by hand, in NumPy, equals the model's predictions
        w = {k: v.detach().numpy() for k, v in model.state_dict().items()}
        x = dls.valid.x
        z = (w['user_factors'][x[:, 0]] * w['movie_factors'][x[:, 1]]).sum(1) + w['user_bias'][x[:, 0]] + w['movie_bias'][x[:, 1]]
        by_hand = 5.5 / (1 + np.exp(-z))
        preds, targs = learn.get_preds()
        assert np.allclose(by_hand, preds, atol=1e-5)
        mse_by_hand = ((by_hand - targs[:, 0]) ** 2).mean()
        assert abs(mse_by_hand - valid_loss) < 1e-5, (mse_by_hand, valid_loss)
        valid_loss, mse_by_hand
    """),
    md("""
        ## Interpreting the biases

        The movies with the lowest bias are those the model thinks people dislike even when their
        taste matches; the highest, those liked even by people who usually do not like that kind
        of movie.
    """),
    code("""
        movie_bias = learn.model.movie_bias.squeeze()
        idxs = movie_bias.argsort()[:5]
        [dls.classes['title'][i] for i in idxs]
    """),
    code("""
        idxs = movie_bias.argsort(descending=True)[:5]
        top = [dls.classes['title'][i] for i in idxs]
        assert 'Titanic (1997)' in top or "Schindler's List (1993)" in top or 'Shawshank Redemption, The (1994)' in top, top
        top
    """),
    md("""
        ## The built-in model is the same model, trained in C

        `collab_learner(dls, n_factors=50, y_range=(0, 5.5))` builds fastai's `EmbeddingDotBias`:
        the same four tables and the same forward pass. Given the same starting values and the
        same batches (both learners draw their batch order from `dls`, so it is the same), it
        reaches the same parameters; collabc trains it with a fused C loop instead of autograd.
    """),
    code("""
        import time
        mine = DotProductBias(n_users, n_movies, 50)
        start = {k: v.detach().numpy().copy() for k, v in mine.state_dict().items()}
        learn_mine = Learner(dls, mine, loss_func=MSELossFlat())
        learn_builtin = collab_learner(dls, n_factors=50, y_range=(0, 5.5))
        learn_builtin.model.load_state_dict({
            'u_weight.weight': start['user_factors'], 'i_weight.weight': start['movie_factors'],
            'u_bias.weight': start['user_bias'][:, None], 'i_bias.weight': start['movie_bias'][:, None]})
        times = {}
        for name, l in (('written here (autograd)', learn_mine), ('collab_learner (C)', learn_builtin)):
            t = time.perf_counter()
            with l.no_bar(), l.no_logging():
                l.fit_one_cycle(5, 5e-3, wd=0.1)
            times[name] = time.perf_counter() - t
    """),
    code("""
        b = learn_builtin.model
        diffs = [np.abs(mine.user_factors.detach().numpy() - b.u_weight.weight.detach().numpy()).max(),
                 np.abs(mine.movie_factors.detach().numpy() - b.i_weight.weight.detach().numpy()).max(),
                 np.abs(mine.movie_bias.detach().numpy() - b.i_bias.weight.detach().numpy()[:, 0]).max()]
        assert max(diffs) < 1e-4, diffs
        v_mine, v_builtin = learn_mine.recorder.values[-1][1], learn_builtin.recorder.values[-1][1]
        assert abs(v_mine - v_builtin) < 1e-4 and 0.78 <= v_builtin <= 0.84, (v_mine, v_builtin)
        pd.DataFrame({'valid MSE': [v_mine, v_builtin], 'fit seconds': list(times.values())},
                     index=list(times)).round(4)
    """),
    md("""
        The parameters agree to a few millionths (the two add the biases in a different order),
        and the built-in model trains two to three times faster. Both are far faster than fastai
        on the same CPU (28 seconds for this fit).
    """),
]

# ---------------------------------------------------------------------------------------------
NOTEBOOKS["05_interpretation"] = [
    md("""
        # 5. Interpreting embeddings and biases

        A trained model is more than a predictor: its biases and factors say something about the
        movies. This notebook trains the lesson's `DotProductBias` (`wd=0.1`) and looks at the
        movie biases, a PCA map of the movie factors, and the nearest neighbours of a movie.
    """),
    SETUP_TABLES,
    LOAD,
    DLS,
    code("""
        learn = Learner(dls, DotProductBias(n_users, n_movies, 50), loss_func=MSELossFlat())
        learn.fit_one_cycle(5, 5e-3, wd=0.1)
        assert 0.78 <= learn.recorder.values[-1][1] <= 0.84
    """),
    md("""
        ## Movie biases

        A movie's bias is what it gets regardless of how well its factors match the user. A low
        bias means that even users whose taste matches the movie tend not to like it. Next to each
        title: its average rating and how many people rated it.
    """),
    code("""
        titles = np.array(dls.classes['title'], dtype=object)
        movie_bias = learn.model.movie_bias.weight.squeeze()
        stats = ratings.groupby('title')['rating'].agg(['mean', 'count'])

        def with_stats(idxs):
            t = titles[idxs]
            return pd.DataFrame({'title': t, 'bias': movie_bias[idxs],
                                 'mean rating': stats.loc[t, 'mean'].to_numpy().round(2),
                                 'ratings': stats.loc[t, 'count'].to_numpy()})

        lowest = with_stats(movie_bias.argsort()[:5])
        lowest
    """),
    md("""
        And the five highest: movies that people like even when they usually do not like that kind
        of movie.
    """),
    code("""
        highest = with_stats(movie_bias.argsort()[::-1][:5])
        assert (lowest['mean rating'] < 2.5).all()
        assert (highest['mean rating'] > 4.0).all() and (highest['ratings'] >= 100).all()
        highest
    """),
    md("""
        The bias is not just the average rating: it is what is left after the factors explain a
        user's taste. Among movies with at least 50 ratings the two still agree closely:
    """),
    code("""
        s = stats[stats['count'] >= 50]
        r = np.corrcoef(learn.model.movie_bias.weight[[dls.classes['title'].o2i[t] for t in s.index], 0],
                        s['mean'])[0, 1]
        assert r > 0.8, r
        r
    """),
    md("""
        ## A map of the movie factors

        50 factors are too many to look at, so the lesson projects the factors of the 1,000 most
        rated movies onto their first principal components (`pca`, fastai's `Tensor.pca`) and
        plots 50 of them. The directions are found from the ratings alone: nobody told the model
        about genres or critics.
    """),
    code("""
        import matplotlib.pyplot as plt
        g = ratings.groupby('title')['rating'].count()
        top_movies = g.sort_values(ascending=False).index.values[:1000]
        top_idxs = np.array([dls.classes['title'].o2i[m] for m in top_movies])
        movie_w = learn.model.movie_factors.weight[top_idxs]
        movie_pca = pca(movie_w, 3)
        fac0, fac1, fac2 = movie_pca.T
        idxs = list(range(50))
        X, Y = fac0[idxs], fac2[idxs]
        from collabc.plotting import label_overlaps, place_labels
        plt.figure(figsize=(12, 12))
        plt.scatter(X, Y)
        rng = np.random.default_rng(42)
        for i, x, y in zip(top_movies[idxs], X, Y):
            plt.text(x, y, i, color=rng.random(3) * 0.7, fontsize=11)
        plt.xlabel('component 0'); plt.ylabel('component 2')
        place_labels(plt.gca())          # move labels apart and inside the frame (a line joins a moved one)
        assert label_overlaps(plt.gca()) == []
        plt.show()
    """),
    md("""
        The first direction separates acclaimed films (classics, critics' favourites) from
        lowbrow blockbusters; it follows the movies' average rating closely, though the model only
        ever saw individual ratings. The components come out in order of decreasing spread.
    """),
    code("""
        corr0 = np.corrcoef(fac0, stats.loc[top_movies, 'mean'])[0, 1]
        spread = movie_pca.var(0)
        assert movie_pca.shape == (1000, 3) and spread[0] > spread[1] > spread[2]
        assert abs(corr0) > 0.6, corr0
        order = fac0.argsort()
        pd.DataFrame({'one end of component 0': top_movies[order[:8]],
                      'other end': top_movies[order[::-1][:8]]})
    """),
    md("""
        ## Embedding distance

        Two movies whose factors point the same way are liked by the same users. The lesson finds
        the movie closest to *The Silence of the Lambs* by cosine similarity of the factors:
    """),
    code("""
        movie_factors = learn.model.movie_factors.weight
        idx = dls.classes['title'].o2i['Silence of the Lambs, The (1991)']
        norms = np.linalg.norm(movie_factors, axis=1)
        distances = movie_factors @ movie_factors[idx] / np.maximum(norms * norms[idx], 1e-8)
        nearest = distances.argsort()[::-1][1]      # [0] is the movie itself
        titles[nearest], distances[nearest]
    """),
    md("""
        `learn.most_similar` does the same (scored in C) and returns the top n:
    """),
    code("""
        similar = learn.most_similar('Silence of the Lambs, The (1991)', n=5)
        assert similar['title'].iloc[0] == titles[nearest]
        assert np.isclose(similar['similarity'].iloc[0], distances[nearest], atol=1e-5)
        assert similar['similarity'].iloc[0] > 0.5
        similar
    """),
]

# ---------------------------------------------------------------------------------------------
NOTEBOOKS["06_collab_learner"] = [
    md("""
        # 6. `collab_learner`: the same in a few lines

        Everything so far is built into fastai's `collab_learner` (and collabc's): it makes an
        `EmbeddingDotBias` model (factors and biases for users and items, `y_range`) from the
        data's vocabularies and wraps it in a `Learner`.
    """),
    SETUP_TABLES,
    LOAD,
    code("""
        dls = CollabDataLoaders.from_df(ratings, item_name='title', bs=64)
        learn = collab_learner(dls, n_factors=50, y_range=(0, 5.5))
        learn.model
    """),
    md("""
        ## Choosing the learning rate

        fastai's `lr_find` trains for 100 batches with a learning rate that grows exponentially
        from 1e-7 to 10, plots the smoothed loss against it, and suggests a rate two thirds of
        the way along the longest stretch where the loss keeps falling. The model and the
        optimizer are put back as they were, so the fit below starts from scratch. The lesson's
        5e-3 is inside that stretch, a little below the suggestion: one-cycle training warms up
        to its maximum rate, so a maximum near the suggestion is the usual choice.
    """),
    code("""
        before = learn.model.params.copy()
        suggestion = learn.lr_find()
        assert 1e-3 < suggestion.valley < 5e-2, suggestion
        assert (learn.model.params == before).all()          # lr_find changed nothing
        suggestion
    """),
    code("""
        import time
        t = time.perf_counter()
        learn.fit_one_cycle(5, 5e-3, wd=0.1)
        print(f'{time.perf_counter() - t:.2f} s')
    """),
    code("""
        valid_loss = learn.recorder.values[-1][1]
        assert 0.78 <= valid_loss <= 0.84, valid_loss     # fastai's tutorial: 0.811
        valid_loss
    """),
    code("""
        learn.recorder.plot_loss();
    """),
    md("""
        The tables have fastai's names (`u_weight`, `i_weight`, `u_bias`, `i_bias`), and
        `model.bias` / `model.weight` take titles directly:
    """),
    code("""
        movie_bias = learn.model.i_bias.weight.squeeze()
        idxs = movie_bias.argsort()[::-1][:5]
        best = [dls.classes['title'][i] for i in idxs]
        assert np.allclose(learn.model.bias(best), movie_bias[idxs])
        best
    """),
    md("""
        The PCA map of the 1,000 most rated movies is one call, `plot_pca` (the lesson's figure);
        `place_labels` keeps its 50 labels apart and inside the frame:
    """),
    code("""
        from collabc.plotting import label_overlaps, place_labels
        g = ratings.groupby('title')['rating'].count()
        top_movies = g.sort_values(ascending=False).index.values[:1000]
        assert learn.model.weight(top_movies).shape == (1000, 50)
        fig = plot_pca(learn, top_movies, seed=42)
        place_labels(fig.axes[0])
        assert label_overlaps(fig.axes[0]) == []
    """),
    code("""
        similar = learn.most_similar('Silence of the Lambs, The (1991)', n=5)
        assert len(similar) == 5 and 'Silence of the Lambs, The (1991)' not in set(similar['title'])
        similar
    """),
    md("""
        ## Predictions

        `get_preds` gives the validation predictions (in split order), `show_results` a few of
        them next to the real ratings, `predict` one row:
    """),
    code("""
        preds, targs = learn.get_preds()
        assert preds.shape == (20_000,) and targs.shape == (20_000, 1)
        assert abs(((preds - targs[:, 0]) ** 2).mean() - valid_loss) < 1e-5
        learn.show_results();
    """),
    code("""
        row, pred, _ = learn.predict({'user': 42, 'title': 'Star Wars (1977)'})
        assert 0 < pred < 5.5
        row
    """),
    md("""
        ## Saving

        `export` writes an inference-ready learner (arrays and JSON, no pickle) that `load_learner`
        reads back with identical predictions:
    """),
    code("""
        import pathlib, tempfile
        with tempfile.TemporaryDirectory() as tmp:
            fname = learn.export(pathlib.Path(tmp)/'export.npz')
            learn2 = load_learner(fname)
        preds2, _ = learn2.get_preds(dl=dls.valid)
        assert np.array_equal(preds, preds2)
        learn2
    """),
]

# ---------------------------------------------------------------------------------------------
NOTEBOOKS["07_bootstrapping"] = [
    md("""
        # 7. Bootstrapping: new users, no users, and whose tastes count

        The lesson's hardest practical problem is the *bootstrapping* problem: a new user has no
        ratings, so there is no row of factors to look up. The book discusses the options in
        prose: ask a few questions at sign-up, or use the average user. collabc makes both
        concrete. `fold_in_user` solves a new row of factors and a bias from a handful of
        ratings, with every trained parameter frozen (no retraining); `average_user` is the
        fallback when there are no ratings at all.
    """),
    SETUP_TABLES,
    LOAD,
    code("""
        dls = CollabDataLoaders.from_df(ratings, item_name='title', bs=64)
        learn = collab_learner(dls, n_factors=50, y_range=(0, 5.5))
        learn.fit_one_cycle(5, 5e-3, wd=0.1)
        assert 0.78 <= learn.recorder.values[-1][1] <= 0.84
    """),
    md("""
        ## A new user from a few ratings

        A sign-up form asks about eight well-known movies. This user loves science fiction and
        action and dislikes costume romance:
    """),
    code("""
        answers = {'Star Wars (1977)': 5, 'Empire Strikes Back, The (1980)': 5,
                   'Return of the Jedi (1983)': 5, 'Terminator, The (1984)': 5, 'Aliens (1986)': 5,
                   'Sense and Sensibility (1995)': 1, 'English Patient, The (1996)': 1,
                   'Titanic (1997)': 2}
        me = learn.fold_in_user(answers, name='new user')
        me
    """),
    code("""
        recs = learn.recommend(me, n=10)
        assert len(recs) == 10 and not set(recs['title']) & set(answers)   # rated movies are skipped
        recs
    """),
    md("""
        ## No ratings at all: the average user

        Without any answers the lesson suggests the average of all users' factors (and bias).
        Its list is the consensus list: the movies with the highest biases, liked by nearly
        everyone.
    """),
    code("""
        avg = learn.average_user()
        consensus = learn.recommend(avg, n=10)
        consensus
    """),
    md("""
        Compared with the average user, the new user's predictions have moved the way their
        answers point: down for romances they were never asked about, and closer to the answers
        they gave.
    """),
    code("""
        probe = ['Emma (1996)', 'Sleepless in Seattle (1993)', 'While You Were Sleeping (1995)',
                 'Sabrina (1995)', 'Remains of the Day, The (1993)']
        compare = pd.DataFrame({'new user': me.predict(probe), 'average user': avg.predict(probe)}, index=probe)
        assert (compare['new user'] < compare['average user']).all()
        given = np.array(list(answers.values()), dtype=float)
        err_me = ((me.predict(list(answers)) - given) ** 2).mean()
        err_avg = ((avg.predict(list(answers)) - given) ** 2).mean()
        assert err_me < 0.75 * err_avg, (err_me, err_avg)
        print(f'MSE on the eight answers: new user {err_me:.2f}, average user {err_avg:.2f}')
        compare
    """),
    md("""
        With a single answer the fold-in stays close to the average user: the solution is pulled
        towards the trained users' average (a prior), so one rating cannot move it far. Its list
        is nearly the consensus list.
    """),
    code("""
        one = learn.fold_in_user({'Star Wars (1977)': 5})
        d_one = np.linalg.norm(one.factors - avg.factors)
        d_me = np.linalg.norm(me.factors - avg.factors)
        assert d_one < d_me / 4, (d_one, d_me)
        one_recs = learn.recommend(one, n=10)
        assert one_recs['title'].isin(consensus['title']).sum() >= 7
        print(f'distance from the average user: one answer {d_one:.3f}, eight answers {d_me:.3f}')
        one_recs
    """),
    md("""
        ## Representation bias

        The lesson warns that a recommender can end up serving a few groups: a small number of
        very active users shape the factors, and recommendations concentrate on what is already
        popular, which then gets watched and rated more (a feedback loop). Both are visible here.

        First, who supplies the data: the most active tenth of users gave about a third of all
        ratings.
    """),
    code("""
        per_user = ratings['user'].value_counts()
        share_active = per_user.iloc[:len(per_user) // 10].sum() / len(ratings)
        assert 0.25 < share_active < 0.4, share_active
        print(f'the {len(per_user) // 10} most active users (10%) gave {share_active:.0%} of the ratings')
    """),
    md("""
        Second, what gets recommended: the top 10 for every user (training movies excluded),
        compared with how often each movie was rated. Only a small part of the catalogue is ever
        recommended, and the 100 most rated movies (6% of the titles) take about half of all
        recommendation slots, much more than their share of the ratings.
    """),
    code("""
        all_recs = learn.recommend_many(list(dls.classes['user'][1:]), n=10)
        n_titles = ratings['title'].nunique()
        counts = ratings['title'].value_counts()
        top100 = set(counts.index[:100])
        distinct = all_recs['title'].nunique()
        share_recs = all_recs['title'].isin(top100).mean()
        share_ratings = counts.iloc[:100].sum() / len(ratings)
        assert len(all_recs) == 943 * 10
        assert distinct < 0.3 * n_titles, distinct
        assert share_recs > 0.4 and share_recs > share_ratings + 0.1, (share_recs, share_ratings)
        print(f'{distinct} of {n_titles} titles appear in any top-10 list; the 100 most rated titles '
              f'fill {share_recs:.0%} of the slots and have {share_ratings:.0%} of the ratings')
    """),
    code("""
        import matplotlib.pyplot as plt
        rank = pd.Series(np.arange(n_titles) // (n_titles // 10), index=counts.index).clip(upper=9)
        by_decile = pd.DataFrame({
            'share of ratings': counts.groupby(rank).sum() / counts.sum(),
            'share of top-10 slots': all_recs['title'].map(rank).value_counts(normalize=True),
        }).reindex(range(10)).fillna(0)
        by_decile.index = [f'{10 * i}-{10 * i + 10}%' for i in range(10)]
        by_decile.plot.bar(figsize=(10, 4), rot=0,
                           xlabel='titles ranked by number of ratings (most rated first)')
        plt.show()
        top_slots, top_ratings = by_decile.iloc[0]['share of top-10 slots'], by_decile.iloc[0]['share of ratings']
        tail_slots, tail_ratings = by_decile.iloc[5:].sum()[['share of top-10 slots', 'share of ratings']]
        assert top_slots > 0.55 and top_slots > top_ratings + 0.1, (top_slots, top_ratings)
        assert tail_slots < tail_ratings, (tail_slots, tail_ratings)
        by_decile
    """),
    md("""
        The most rated tenth of the titles fills about two thirds of all the slots, against 42% of
        the ratings, and the less-rated half of the catalogue is hardly ever recommended.

        The average user's list is the consensus list: its ten movies are all among the most
        recommended titles overall. A service that shows new users that list, and then learns
        from what they click, reinforces the concentration above.
    """),
    code("""
        most_recommended = set(all_recs['title'].value_counts().index[:20])
        overlap = consensus['title'].isin(most_recommended).sum()
        assert overlap >= 7, overlap
        overlap
    """),
]

# ---------------------------------------------------------------------------------------------
NOTEBOOKS["08_neural"] = [
    md("""
        # 8. Deep learning for collaborative filtering

        Instead of a dot product, a neural network can take the user's and the movie's factors,
        concatenated, and learn how to combine them. Then the two tables no longer need the same
        width; fastai picks sizes with `get_emb_sz`. The lesson writes `CollabNN` itself and then
        uses `collab_learner(use_nn=True)`; here both, the lesson's own code first, then the
        built-in models, which are the same networks trained in C, and the dot-product model.
    """),
    SETUP,
    LOAD,
    DLS,
    code("""
        embs = get_emb_sz(dls)
        assert embs == [(944, 74), (1665, 102)]
        embs
    """),
    md("""
        ## `CollabNN`, as the book writes it

        The two embeddings concatenated (176 numbers), a linear layer to 100 activations, ReLU,
        a linear layer to one number, `sigmoid_range(0, 5.5)`. The lesson trains it with
        `wd=0.01`.
    """),
    code("""
        class CollabNN(Module):
            def __init__(self, user_sz, item_sz, y_range=(0,5.5), n_act=100):
                self.user_factors = Embedding(*user_sz)
                self.item_factors = Embedding(*item_sz)
                self.layers = nn.Sequential(
                    nn.Linear(user_sz[1]+item_sz[1], n_act),
                    nn.ReLU(),
                    nn.Linear(n_act, 1))
                self.y_range = y_range

            def forward(self, x):
                embs = self.user_factors(x[:,0]),self.item_factors(x[:,1])
                x = self.layers(cat(embs, dim=1))
                return sigmoid_range(x, *self.y_range)
    """),
    code("""
        import time
        model = CollabNN(*embs)
        learn = Learner(dls, model, loss_func=MSELossFlat())
        t = time.perf_counter()
        learn.fit_one_cycle(5, 5e-3, wd=0.01)
        times = {'CollabNN (written here)': time.perf_counter() - t}
    """),
    code("""
        collab_nn = learn.recorder.values[-1][1]
        assert 0.82 <= collab_nn <= 0.89, collab_nn      # the book: 0.867
        model, collab_nn
    """),
    md("""
        ## `EmbeddingNN`, as fastai writes it

        fastai's `EmbeddingNN` is a tabular model with the two embeddings as its only inputs:
        `@delegates` makes its signature show `TabularModel`'s options. Here two hidden layers of
        100 and 50, each Linear, ReLU and BatchNorm.
    """),
    code("""
        @delegates(TabularModel)
        class EmbeddingNN(TabularModel):
            def __init__(self, emb_szs, layers, **kwargs):
                super().__init__(emb_szs, layers=layers, n_cont=0, out_sz=1, **kwargs)
    """),
    code("""
        model_nn = EmbeddingNN(embs, layers=[100, 50], y_range=(0, 5.5))
        learn_mine = Learner(dls, model_nn, loss_func=MSELossFlat())
        t = time.perf_counter()
        learn_mine.fit_one_cycle(5, 5e-3, wd=0.1)
        times['EmbeddingNN (written here)'] = time.perf_counter() - t
        model_nn
    """),
    md("""
        ## `collab_learner(use_nn=True)`: the same network, trained in C

        The built-in `EmbeddingNN` is this very `TabularModel` (same layers, same state-dict names);
        `collab_learner` trains it with a fused C loop.
    """),
    code("""
        learn_nn = collab_learner(dls, use_nn=True, y_range=(0, 5.5), layers=[100, 50])
        assert list(learn_nn.model.state_dict()) == list(model_nn.state_dict())
        t = time.perf_counter()
        learn_nn.fit_one_cycle(5, 5e-3, wd=0.1)
        times['collab_learner(use_nn=True)'] = time.perf_counter() - t
    """),
    code("""
        embedding_nn = learn_nn.recorder.values[-1][1]
        mine_nn = learn_mine.recorder.values[-1][1]
        assert 0.82 <= embedding_nn <= 0.89, embedding_nn     # the book: 0.865
        assert 0.82 <= mine_nn <= 0.89, mine_nn
        mine_nn, embedding_nn
    """),
    md("""
        ## Against the dot-product model

        The same data and split, the lesson's dot-product model:
    """),
    code("""
        learn_dot = collab_learner(dls, n_factors=50, y_range=(0, 5.5))
        t = time.perf_counter()
        learn_dot.fit_one_cycle(5, 5e-3, wd=0.1)
        times['collab_learner (dot product)'] = time.perf_counter() - t
        dot = learn_dot.recorder.values[-1][1]
        assert 0.78 <= dot <= 0.84, dot
    """),
    code("""
        n_params = lambda m: sum(p.numel() for p in m.parameters())
        comparison = pd.DataFrame({
            'valid MSE': [collab_nn, mine_nn, embedding_nn, dot],
            'parameters': [n_params(learn.model), n_params(model_nn), n_params(learn_nn.model), n_params(learn_dot.model)],
            'fit seconds': list(times.values()),
        }, index=list(times)).round(4)
        assert dot < collab_nn - 0.01 and dot < embedding_nn - 0.01
        assert times['collab_learner(use_nn=True)'] < times['EmbeddingNN (written here)']
        comparison
    """),
    md("""
        On MovieLens-100k with five epochs the plain dot product with biases wins, as in the
        lesson; the neural models have twice the parameters and are slower to train. Their
        strength is elsewhere: they can take extra columns (the user's age, the movie's genre) as
        inputs, which also helps with the bootstrapping problem.

        The two kinds of model largely agree on the validation ratings; note fastai's shapes:
        `(N, 1)` predictions for the neural model, `(N,)` for the dot model.
    """),
    code("""
        p_nn, _ = learn_nn.get_preds()
        p_dot, _ = learn_dot.get_preds()
        assert p_nn.shape == (20_000, 1) and p_dot.shape == (20_000,)
        agreement = np.corrcoef(p_nn[:, 0], p_dot)[0, 1]
        assert agreement > 0.8, agreement
        agreement
    """),
    md("""
        Recommendations work for the neural models too (scored through the network for every
        title); fold-in and factor similarity need the dot-product model.
    """),
    code("""
        recs = learn_nn.recommend(42, n=5)
        assert len(recs) == 5
        recs
    """),
]


# ---------------------------------------------------------------------------------------------
def scale_notebook():
    "09_scale: collabc on Ray (issue 16) - a small sweep and a distributed fit on a local Ray."
    return [
        md("""
            # 9. Beyond one machine, on Ray

            One machine goes far with collabc: 25 million ratings train in about a second an epoch.
            Users outgrow it in three ways, most often first: they run **many fits** (sweeps and
            cross-validation), they **score every user** against a large catalogue, and, rarely,
            their ratings **do not fit one machine**. `collabc.ray` (`pip install "collabc[ray]"`)
            serves all three on Ray. This notebook runs a small sweep and a distributed fit on a
            local Ray with two CPUs; the same calls run on a cluster (`ray.init(address=...)`).
        """),
        SETUP_TABLES,
        LOAD,
        code("""
            import ray
            from ray import tune
            from ray.tune.schedulers import ASHAScheduler
            from collabc.ray import tune_collab, cross_validate, fit_distributed, recommend_all
            ray.init(address='local', num_cpus=2, include_dashboard=False, log_to_driver=False)
            ray.cluster_resources()['CPU']
        """),
        md("""
            ## A sweep on Ray Tune

            Each trial is an ordinary collabc fit; the encoded ratings go to Ray's object store once
            for all trials. Every epoch is reported through a callback, so ASHA stops poor trials
            after their first epoch. Any argument of `collab_learner` or `fit_one_cycle` can be
            searched (a misspelt key fails before any trial starts); the others are fixed values.
        """),
        code("""
            import tempfile
            res = tune_collab(ratings, {'n_factors': tune.choice([10, 50]), 'wd': tune.loguniform(0.01, 0.3)},
                              epochs=3, num_samples=4, scheduler=ASHAScheduler(max_t=3, grace_period=1),
                              item_name='title', y_range=(0, 5.5), lr_max=5e-3, seed=42,
                              storage_path=tempfile.mkdtemp())
            assert len(res.trials) == 4 and res.trials.valid_loss.min() < 0.9
            res.trials[['config/n_factors', 'config/wd', 'valid_loss', 'epochs']]
        """),
        code("""
            res.best_config
        """),
        md("""
            A trial is exactly the fit you would run here: the same split (`seed`), `set_seed(seed)`,
            `collab_learner`, `fit_one_cycle`. Re-running the best trial locally gives its numbers.
        """),
        code("""
            set_seed(42)
            dls = CollabDataLoaders.from_df(ratings, item_name='title', valid_pct=0.2, seed=42, bs=64)
            set_seed(42)
            learn = collab_learner(dls, y_range=(0, 5.5), **res.best_config)
            learn.fit_one_cycle(3, 5e-3, wd=res.best_config['wd'])
            best = res.trials.iloc[0]
            if best.epochs == 3:
                assert learn.recorder.values[-1][1] == best.valid_loss
        """),
        md("""
            ## Training on several workers

            `fit_distributed` runs the sparse path's stratified schedule (DSGD, Gemulla et al. 2011,
            the block strata collabc already trains on one machine) over Ray actors. Each worker owns
            some groups of the larger table (here the movies) with their ratings and their optimizer
            rows; the groups of the smaller table (the users) move from worker to worker through the
            object store, one stratum after the other. The driver runs the ordinary training loop
            (schedule, callbacks, the table) and gathers the model after every epoch: that copy is
            the checkpoint a crashed worker resumes from. The result is the local
            `train_mode='sparse'` fit, bit for bit.
        """),
        code("""
            dist = fit_distributed(ratings, item_name='title', seed=42, n_workers=2, n_blocks=4, epochs=5,
                                   lr=0.05, wd=0.02, n_factors=50, y_range=(0, 5.5))
        """),
        code("""
            set_seed(42)
            dls = CollabDataLoaders.from_df(ratings, item_name='title', bs=64)
            local = collab_learner(dls, n_factors=50, y_range=(0, 5.5), opt_func=Adagrad,
                                   train_mode='sparse', n_blocks=4)
            local.fit(5, 0.05, wd=0.02)
            assert np.array_equal(dist.model.params, local.model.params)
        """),
        md("""
            What it cost: the bytes that crossed from worker to worker per epoch are at most `n_blocks`
            times the moving table with its optimizer rows (here 944 users x (50 factors + bias + 2
            Adagrad sums) x 4 bytes x 4 blocks; a group whose next block is on the same worker stays,
            so with 2 workers about half of that), plus the model once for the driver's checkpoint.
        """),
        code("""
            st = dist.ray_stats
            moving = 944 * (50 + 1 + 2) * 4
            assert st['side'] == 'item' and 0 < np.mean(st['bytes_moved']) <= 4 * moving
            pd.DataFrame({'seconds': st['epoch_seconds'], 'MiB moved': np.array(st['bytes_moved']) / 2**20,
                          'MiB to the driver': np.array(st['bytes_synced']) / 2**20})
        """),
        md("""
            The result is an ordinary `Learner`: export, `recommend`, fold-in as before. For every user
            at once, `recommend_all(model_path, users, out)` scores them on Ray Data actors (one
            loaded model each) and writes Parquet.
        """),
        code("""
            recs = dist.recommend(42, n=5)
            pd.testing.assert_frame_equal(recs, local.recommend(42, n=5))
            recs
        """),
        md("""
            ## When to stay on one machine

            On one machine the distributed fit only adds cost: every stratum waits for its slowest
            worker and the moving table crosses the object store `n_blocks` times an epoch. Use
            `train_mode='sparse'` with `n_threads` while the ratings, two copies of them (the block
            layout) and the model fit in memory - 25M ratings need about 500 MiB. Reach for
            `tune_collab` and `cross_validate` as soon as you run many fits (they use every core and
            every node), for `recommend_all` when the top-n lists of millions of users are a batch
            job, and for `fit_distributed` only when the ratings outgrow one machine: then give it
            Parquet files, which Ray tasks read in row groups so no process holds all ratings.
        """),
        code("""
            ray.shutdown()
        """),
    ]


NOTEBOOKS["09_scale"] = scale_notebook()


# ---------------------------------------------------------------------------------------------
def implicit_notebook():
    "10_implicit: implicit feedback (issue 17) - ALS and BPR in the Learner, beside popularity."
    return [
        md("""
            # 10. Implicit feedback: clicks, plays and purchases

            The lesson trains on star ratings. Most recommenders never see a rating, only what people
            clicked, watched, bought or played: *implicit feedback*. There is no "3 stars" to predict,
            only which items a user touched (and maybe how often), so the models change: **implicit
            ALS** (Hu, Koren & Volinsky 2008) treats every unseen item as a weak "no", and **BPR**
            (Rendle et al. 2009) learns to rank a user's items above the rest. Both train in C and
            fit through the same `Learner` as the lesson: the epoch table, callbacks, `recommend`,
            `most_similar`, fold-in and `export`.
        """),
        SETUP_TABLES,
        LOAD,
        md("""
            ## MovieLens as implicit data

            A rating of 4 or 5 becomes an interaction and the star value is dropped. With
            `implicit=True`, `from_df` sums repeated (user, item) pairs (a weight column such as play
            counts would be `weight_name='plays'`) and holds out each user's most recent 20% of
            interactions (`time_name`), so the ranking metrics ask the real question: does the model
            predict what the user watched next?
        """),
        code("""
            dls = CollabDataLoaders.from_df(ratings[ratings.rating >= 4].drop(columns='rating'), implicit=True,
                                            item_name='title', time_name='timestamp', seed=42)
            assert dls.implicit.n_users == 943 and len(dls.implicit.valid_x) > 10_000
            dls.implicit
        """),
        md("""
            ## Implicit ALS

            `implicit_learner(dls, 'als', n_factors=64, reg=..., alpha=...)`: every (user, item) pair
            counts, an interaction with confidence `1 + alpha * weight`, every other pair as a 0 with
            confidence 1; each epoch solves every user's row, then every item's. ALS has no learning
            rate, so `fit(n)` (or `fit_one_cycle(n)`) runs n iterations. The table shows the training
            loss and precision, recall, NDCG and MAP at 10 on the held-out interactions, with the
            user's training items excluded from the ranking.
        """),
        code("""
            als = implicit_learner(dls, 'als', n_factors=64, reg=10.0, alpha=5.0)
            als.fit(10)
        """),
        md("""
            A model is only useful if it beats recommending the most popular items to everyone:
            `ranking_metrics()` puts that baseline beside it and says which is ahead.
        """),
        code("""
            rep = als.ranking_metrics()
            assert rep['beats_baseline'] and rep['ndcg@10'] > 1.4 * rep['baseline']['ndcg@10']
            rep
        """),
        md("""
            ## Recommendations, similar movies, a new user

            `recommend` skips the movies the user already watched in training; `most_similar` compares
            the learned item factors; `fold_in_user` places a new user from the movies they watched,
            with ALS's exact user solve (every movie frozen, no retraining).
        """),
        code("""
            recs = als.recommend(42, n=5)
            assert len(recs) == 5
            recs
        """),
        code("""
            sim = als.most_similar('Star Wars (1977)', n=5)
            assert 'Return of the Jedi (1983)' in set(sim.title)
            sim
        """),
        code("""
            fan = als.fold_in_user(['Star Wars (1977)', 'Empire Strikes Back, The (1980)', 'Alien (1979)'], name='fan')
            new = als.recommend(fan, n=5)
            assert 'Star Wars (1977)' not in set(new.title)
            new
        """),
        md("""
            ## BPR

            BPR samples, for each interaction, an item the user did not touch and pushes the first
            above the second. It has a learning rate, so the lesson's `fit_one_cycle` schedules it
            (here with row-wise Adagrad). Callbacks watch the ranking columns: `SaveModelCallback`
            keeps the epoch with the best NDCG.
        """),
        code("""
            bpr = implicit_learner(dls, 'bpr', n_factors=64, reg=0.001, opt='adagrad')
            bpr.fit_one_cycle(15, 0.1, cbs=SaveModelCallback(monitor='ndcg@10', fname='bpr_best'))
        """),
        code("""
            rep = bpr.ranking_metrics()
            assert rep['beats_baseline']
            rep
        """),
        md("""
            On this split ALS ranks better than BPR, as it usually does on small dense data; BPR's
            strength is its pairwise objective, which scales to any number of items per step.

            ## Export and load

            `export` writes the model, its hyperparameters, the classes and the training pairs (so the
            loaded learner still skips seen items) in collabc's pickle-free format; `load_learner`
            checks the whole file before building anything.
        """),
        code("""
            als.export('als.npz')
            back = load_learner('als.npz')
            pd.testing.assert_frame_equal(back.recommend(42, n=5), recs)
            back.recommend(42, n=5)
        """),
    ]


def bayes_notebook():
    "11_bayes: Bayesian factorization by Gibbs sampling (issue 19) beside the lesson's dot model."
    return [
        md("""
            # 11. Beyond SGD: Bayesian factorization

            The lesson asks how good the predictions can get. Trained by SGD, the dot model levels off
            near a valid MSE of 0.80-0.81 on MovieLens-100k however it is tuned. The same model fitted
            by **Gibbs sampling** (Bayesian matrix factorization: priors on the factors whose
            strengths are themselves sampled, predictions averaged over hundreds of posterior
            samples) does clearly better, and better still with *implicit* features: which movies a
            user chose to rate (SVD++'s idea), which users rated a movie, and the day of the rating
            (Rendle et al., "On the difficulty of evaluating baselines", 2019). `bayes_learner` gives
            it the lesson's `Learner`: `fit`, the epoch table, `get_preds`, `recommend`,
            `most_similar`, fold-in, `export`.
        """),
        SETUP_TABLES,
        LOAD,
        DLS,
        md("""
            ## The lesson's model

            `collab_learner` with the lesson's settings, on the same random 20% validation split.
        """),
        code("""
            learn = collab_learner(dls, n_factors=50, y_range=(0, 5.5))
            learn.fit_one_cycle(5, 5e-3, wd=0.1)
            dot_mse = learn.validate()[0]
            assert 0.78 < dot_mse < 0.84
        """),
        md("""
            ## The Bayesian learner

            Rank 10, the items each user rated and the users who rated each item as extra features
            (`implicit='both'`, the default), and the rating's date (`date_name`): the day everyone
            shares and the user's own day (`user_day=True`, the default: timeSVD++'s per-user day
            effect, for the (user, day) pairs of the training rows). `fit()` runs the
            sampler's sweeps through the same training loop: an epoch is a group of sweeps (here 20),
            the train loss is the (smoothed) training MSE of the sweeps' own samples, the valid loss
            that of the **averaged** prediction so far (the current sample's during the first
            `burn_in` sweeps, which are not averaged). Ctrl-C stops between sweeps and leaves a usable
            model; `fit()` again continues the chain.

            To keep this notebook quick it draws 200 samples; the README's table uses 500 (200 get
            within about 0.003 of them).
        """),
        code("""
            bayes = bayes_learner(dls, n_factors=10, n_samples=200, burn_in=50, date_name='timestamp', seed=42)
            bayes.fit()
        """),
        md("""
            There is no learning rate: the schedules do not apply, and say so.
        """),
        code("""
            try:
                bayes.fit_one_cycle(5, 5e-3)
            except TypeError as e:
                print(e)
        """),
        md("""
            ## How much better?

            Plain Bayesian MF (`implicit='none'`, no dates) takes a couple of seconds; each feature
            lowers the error further. For plain MF the factors get BPMF's Normal-Wishart prior (a full
            10 x 10 precision per side, learnt, so the factors' correlations shrink together;
            `factor_prior='auto'` picks it, `'gamma'` gives the per-factor prior the richer models
            keep). On the fixed split, with 500 samples, it brings plain MF under 0.795 (docs/bayes.md).
        """),
        code("""
            plain = bayes_learner(dls, n_factors=10, n_samples=100, burn_in=20, implicit='none', seed=42)
            with plain.no_logging():
                plain.fit()
            results = pd.DataFrame({'model': ["the lesson's dot model (SGD, 5 epochs)",
                                              'Bayesian MF, plain (100 samples)',
                                              'Bayesian MF, implicit both sides + day + user day (200 samples)'],
                                    'valid MSE': [dot_mse, plain.validate()[0], bayes.validate()[0]]})
            assert results['valid MSE'][2] < results['valid MSE'][1] < results['valid MSE'][0]
            assert results['valid MSE'][2] < dot_mse - 0.03
            results
        """),
        md("""
            ## Similar movies, recommendations

            Every table the dot model has, the Bayesian learner has too: each of its 25 stored posterior
            draws is a dot model (a user's vector sums its own factors and those of the movies it
            rated), and the draws side by side are one dot model whose prediction is their average.
            So `most_similar` and `recommend` work as in the lesson. Recommendations are for an
            unknown day (the day terms averaged over the training days). `most_similar` compares
            the draws side by side rather than their average: the draws are only partly aligned,
            and on MovieLens their neighbours share genres more often than those of the averaged
            factors (`bench/bayes_similar.py`, docs/bayes.md).
        """),
        code("""
            bayes.most_similar('Star Wars (1977)', n=5)
        """),
        code("""
            bayes.recommend(42, n=5)
        """),
        md("""
            ## A new user

            `fold_in_user` solves the new user's conditional posterior with everything else fixed
            (a small Bayesian linear regression per draw, with the prior the sampler learned); the
            movies they rated also enter as their implicit features.
        """),
        code("""
            fan = bayes.fold_in_user({'Star Wars (1977)': 5, 'Return of the Jedi (1983)': 5,
                                      'Titanic (1997)': 1}, name='fan')
            top = bayes.recommend(fan, n=5)
            assert 'Star Wars (1977)' not in set(top.title)
            top
        """),
        md("""
            ## Export

            The export holds the draws (not the sampler): the loaded learner predicts, recommends and
            folds in new users exactly as the trained one does outside its validation rows.
        """),
        code("""
            fname = bayes.export('bayes.npz')
            loaded = load_learner(fname)
            assert loaded.recommend(42, n=5).equals(bayes.recommend(42, n=5))
            loaded.model
        """),
    ]


NOTEBOOKS["10_implicit"] = implicit_notebook()
NOTEBOOKS["11_bayes"] = bayes_notebook()


def build(name, cells):
    import nbformat
    nb = nbformat.v4.new_notebook()
    nb.metadata = {
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
    }
    for i, (kind, src) in enumerate(cells):
        cell = nbformat.v4.new_markdown_cell(src) if kind == "markdown" else nbformat.v4.new_code_cell(src)
        cell.id = f"{name.split('_')[0]}-{i:02d}"
        nb.cells.append(cell)
    nbformat.validate(nb)
    return nb


def render_text(name):
    import nbformat
    return nbformat.writes(build(name, NOTEBOOKS[name])) + "\n"


def _content(nb):
    "What --check compares: cells (kind, id, source, outputs, count) and the kernelspec, not formatting."
    def src(c):
        s = c.get("source", "")
        return "".join(s) if isinstance(s, list) else s
    return ([(c["cell_type"], c.get("id"), src(c), c.get("outputs"), c.get("execution_count"))
             for c in nb["cells"]], nb.get("metadata", {}).get("kernelspec"))


def stale_notebooks(folder=HERE):
    """Names of the notebooks in `folder` that differ from this script's output (or are missing),
    plus any .ipynb there that this script does not write."""
    import json
    stale = []
    for name in NOTEBOOKS:
        target = folder / f"{name}.ipynb"
        want = json.loads(render_text(name))
        try:
            have = json.loads(target.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            stale.append(target.name)
            continue
        if _content(have) != _content(want):
            stale.append(target.name)
    expected = {f"{n}.ipynb" for n in NOTEBOOKS}
    return stale + sorted(p.name for p in folder.glob("*.ipynb") if p.name not in expected)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true",
                    help="write nothing; exit 1 if a notebook differs from this script's output "
                         "(cells, ids, sources, outputs) or is not written by it")
    ap.add_argument("--out", type=pathlib.Path, default=HERE,
                    help="folder to write (or --check) the notebooks in (default: notebooks/)")
    args = ap.parse_args(argv)
    if args.check:
        stale = stale_notebooks(args.out)
        if stale:
            print("out of date (run python notebooks/make_notebooks.py): " + ", ".join(stale))
            return 1
        print(f"{len(NOTEBOOKS)} notebooks up to date")
        return 0
    for name in NOTEBOOKS:
        target = args.out / f"{name}.ipynb"
        target.write_text(render_text(name), encoding="utf-8")
        print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
