"""Tests for collabc.data: CollabDataLoaders.from_df / from_csv, CategoryMap, DataLoader(s).

The rules checked here are fastai 2.7's (see the spec, section 1.2): valid = head of a permutation,
'#na#' at 0, sorted classes, train-only classes for numeric ids, full-frame classes for strings and
categoricals, train shuffled + drop_last, valid in order with its last partial batch.
"""
import os
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from collabc import data as data_mod
from collabc.data import CategoryMap, CollabDataLoaders, DataLoader, DataLoaders
from collabc.seed import set_seed


def small_df(n=20, seed=0):
    "n ratings of 4 int users x 5 string items, plus an unused extra column."
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        'user': rng.integers(1, 5, n),
        'item': rng.choice(np.array(['d', 'b', 'a', 'e', 'c'], dtype=object), n),
        'rating': rng.integers(1, 6, n).astype(np.float64),
        'ts': np.arange(n),
    })


def decode(dls, x):
    "Decoded (user, item) labels of the encoded rows x."
    u = np.asarray(dls.classes[dls.user_name], dtype=object)[x[:, 0]]
    i = np.asarray(dls.classes[dls.item_name], dtype=object)[x[:, 1]]
    return u, i


# ----------------------------------------------------------------------------------------------
# CategoryMap

def test_categorymap_sorted_with_na_and_plain_o2i():
    cm = CategoryMap([3, 1, 2, 3, 1])
    assert cm == ['#na#', 1, 2, 3]
    assert isinstance(cm, list)
    assert type(cm.o2i) is dict
    assert cm.o2i == {'#na#': 0, 1: 1, 2: 2, 3: 3}
    with pytest.raises(KeyError):
        cm.o2i[99]                                  # deliberate: no defaultdict -> no silent '#na#'
    assert CategoryMap(['b', None, 'a', 'B']) == ['#na#', 'B', 'a', 'b']   # code-point order, NaN dropped
    assert CategoryMap([1], add_na=False) == [1]


def test_categorymap_categorical_keeps_all_categories_in_order():
    cat = pd.Categorical(['x', 'y'], categories=['z', 'y', 'x'])
    assert CategoryMap(cat) == ['#na#', 'z', 'y', 'x']


def test_categorymap_repr_is_short():
    assert repr(CategoryMap([1, 2, 3])) == "(#4) ['#na#', 1, 2, 3]"
    long = repr(CategoryMap(range(100)))
    assert long.startswith("(#101) ['#na#', 0, 1,") and long.endswith(", ...]")
    assert len(long) < 80


def test_categorymap_rejects_reserved_label_and_strings():
    with pytest.raises(ValueError, match="reserved"):
        CategoryMap(['a', '#na#'])
    with pytest.raises(TypeError, match="collection of labels"):
        CategoryMap('abc')


def test_categorymap_pickles():
    cm = CategoryMap(['b', 'a'])
    cm2 = pickle.loads(pickle.dumps(cm))
    assert cm2 == cm and cm2.o2i == cm.o2i and type(cm2) is CategoryMap


# ----------------------------------------------------------------------------------------------
# from_df: names, classes, encoding

def test_column_defaults_and_attributes():
    df = small_df()
    dls = CollabDataLoaders.from_df(df, bs=4, seed=1)
    assert isinstance(dls, CollabDataLoaders) and isinstance(dls, DataLoaders)
    assert (dls.user_name, dls.item_name, dls.rating_name) == ('user', 'item', 'rating')
    assert dls.cat_names == ['user', 'item']
    assert list(dls.classes) == ['user', 'item']
    assert dls.n_users == len(dls.classes['user']) and dls.n_items == len(dls.classes['item'])
    assert dls[0] is dls.train and dls[1] is dls.valid
    with pytest.raises(IndexError):
        dls[2]
    assert dls.path == Path('.') and isinstance(dls.path, Path)
    assert CollabDataLoaders.from_df(df, bs=4, path='/tmp').path == Path('/tmp')
    assert dls.bs == 4 and dls.train.bs == 4 and dls.valid.bs == 4
    assert CollabDataLoaders.from_df(df, bs=4, val_bs=7).valid.bs == 7
    assert list(dls.train_ds.columns) == ['user', 'item', 'rating', 'ts']   # extra column carried
    assert 'CollabDataLoaders' in repr(dls) and "'user'" in repr(dls)


def test_explicit_column_names():
    df = small_df()[['rating', 'ts', 'item', 'user']]
    dls = CollabDataLoaders.from_df(df, user_name='user', item_name='item', rating_name='rating', bs=4, seed=0)
    assert dls.cat_names == ['user', 'item']
    u, i = decode(dls, dls.train.x)
    assert (u == dls.train_ds['user'].to_numpy()).all()
    assert (i == dls.train_ds['item'].to_numpy()).all()
    assert np.array_equal(dls.train.y, dls.train_ds['rating'].to_numpy(np.float32))


def test_int_ids_take_classes_from_train_only():
    df = pd.DataFrame({'user': [3, 1, 2, 1, 9, 2], 'item': [10, 20, 10, 30, 20, 40], 'rating': [1., 2, 3, 4, 5, 1]})
    dls = CollabDataLoaders.from_df(df, valid_idx=[4, 5], bs=2)   # user 9 and item 40 only in valid
    assert dls.classes['user'] == ['#na#', 1, 2, 3]
    assert dls.classes['item'] == ['#na#', 10, 20, 30]
    assert dls.valid.x.tolist() == [[0, 2], [2, 0]]
    assert dls.train.x.tolist() == [[3, 1], [1, 2], [2, 1], [1, 3]]
    forced = CollabDataLoaders.from_df(df, valid_idx=[4, 5], bs=2, classes_from='all')
    assert forced.classes['user'] == ['#na#', 1, 2, 3, 9]
    assert forced.valid.x.tolist() == [[4, 2], [2, 4]]


def test_string_ids_take_classes_from_full_frame():
    df = pd.DataFrame({'user': ['u1', 'u2', 'u1', 'u3'], 'item': ['b', 'a', 'a', 'zz'], 'rating': [1, 2, 3, 4]})
    dls = CollabDataLoaders.from_df(df, valid_idx=[3], bs=1)     # u3 and zz only in valid
    assert dls.classes['user'] == ['#na#', 'u1', 'u2', 'u3']
    assert dls.classes['item'] == ['#na#', 'a', 'b', 'zz']
    assert dls.valid.x.tolist() == [[3, 3]]
    train_only = CollabDataLoaders.from_df(df, valid_idx=[3], bs=1, classes_from='train')
    assert train_only.classes['item'] == ['#na#', 'a', 'b']
    assert train_only.valid.x.tolist() == [[0, 0]]
    obj = df.astype({'user': object, 'item': object})
    assert CollabDataLoaders.from_df(obj, valid_idx=[3], bs=1).classes == dls.classes


def test_categorical_ids_use_all_categories():
    df = pd.DataFrame({'user': [1, 2, 1, 2],
                       'item': pd.Categorical(['x', 'y', 'x', 'w'], categories=['w', 'x', 'y', 'unused']),
                       'rating': [1., 2, 3, 4]})
    dls = CollabDataLoaders.from_df(df, valid_idx=[3], bs=1)
    assert dls.classes['item'] == ['#na#', 'w', 'x', 'y', 'unused']
    assert dls.train.x[:, 1].tolist() == [2, 3, 2] and dls.valid.x[:, 1].tolist() == [1]
    train_only = CollabDataLoaders.from_df(df, valid_idx=[3], bs=1, classes_from='train')
    assert train_only.classes['item'] == ['#na#', 'x', 'y']
    assert train_only.valid.x[:, 1].tolist() == [0]


def test_numeric_classes_sorted_numerically():
    df = pd.DataFrame({'user': [10, 9, 100, 2.5], 'item': [1, 1, 2, 2], 'rating': [1, 2, 3, 4]})
    dls = CollabDataLoaders.from_df(df, classes_from='all', valid_idx=[0], bs=1)
    assert dls.classes['user'] == ['#na#', 2.5, 9.0, 10.0, 100.0]
    assert dls.classes['user'].o2i[100.0] == 4


def test_nullable_dtypes():
    df = pd.DataFrame({'user': pd.array([1, 2, 3, 1], dtype='Int64'),
                       'item': pd.array(['a', 'b', 'a', 'c'], dtype='string'),
                       'rating': pd.array([1, 2, 3, 4], dtype='Int8')})
    dls = CollabDataLoaders.from_df(df, valid_idx=[3], bs=1)
    assert dls.classes['user'] == ['#na#', 1, 2, 3]
    assert dls.classes['item'] == ['#na#', 'a', 'b', 'c']
    assert dls.train.y.dtype == np.float32 and dls.train.y.tolist() == [1, 2, 3]


def test_too_many_classes(monkeypatch):
    monkeypatch.setattr(data_mod, '_MAX_CLASSES', 4)
    df = pd.DataFrame({'user': [1, 2, 3, 4, 5, 1], 'item': [1, 1, 1, 1, 1, 2], 'rating': [1.] * 6})
    with pytest.raises(ValueError, match=r"user_name='user' has 6 classes .*more than"):
        CollabDataLoaders.from_df(df, valid_idx=[5], bs=1)


# ----------------------------------------------------------------------------------------------
# split

def test_valid_is_head_of_seeded_permutation():
    df = small_df(50)
    dls = CollabDataLoaders.from_df(df, valid_pct=0.3, seed=7, bs=4)
    perm = np.random.default_rng(7).permutation(50)
    cut = int(0.3 * 50)
    assert dls.valid_ds['ts'].tolist() == perm[:cut].tolist()
    assert dls.train_ds['ts'].tolist() == perm[cut:].tolist()
    assert dls.valid.n == 15 and dls.train.n == 35
    assert dls.train_ds.index.tolist() == perm[cut:].tolist()     # original labels kept
    again = CollabDataLoaders.from_df(df, valid_pct=0.3, seed=7, bs=4)
    assert again.valid_ds.index.equals(dls.valid_ds.index)
    assert np.array_equal(again.train.x, dls.train.x) and np.array_equal(again.valid.y, dls.valid.y)
    other = CollabDataLoaders.from_df(df, valid_pct=0.3, seed=8, bs=4)
    assert not other.valid_ds.index.equals(dls.valid_ds.index)


def test_cut_is_int_of_valid_pct_times_n():
    dls = CollabDataLoaders.from_df(small_df(19), valid_pct=0.2, seed=0, bs=2)
    assert (dls.train.n, dls.valid.n) == (16, 3)


def test_set_seed_makes_unseeded_split_and_shuffle_reproducible():
    df = small_df(40)
    set_seed(123)
    a = CollabDataLoaders.from_df(df, bs=4)
    oa = a.train.order()
    set_seed(123)
    b = CollabDataLoaders.from_df(df, bs=4)
    assert a.valid_ds.index.equals(b.valid_ds.index)
    assert np.array_equal(oa, b.train.order())


def test_split_keeps_non_range_index_labels():
    df = small_df(10).set_index(pd.Index(list('abcdefghij')))
    dls = CollabDataLoaders.from_df(df, valid_idx=[9, 0], bs=2)
    assert dls.valid_ds.index.tolist() == ['j', 'a']
    assert dls.train_ds.index.tolist() == list('bcdefghi')


def test_explicit_valid_idx_order():
    df = small_df(10)
    for idx in ([7, 2, 5], np.array([7, 2, 5], dtype=np.int32), pd.Series([7, 2, 5]), pd.Index([7, 2, 5])):
        dls = CollabDataLoaders.from_df(df, valid_idx=idx, bs=2, valid_pct=0.9, seed=3)   # pct/seed ignored
        assert dls.valid_ds['ts'].tolist() == [7, 2, 5]
        assert dls.train_ds['ts'].tolist() == [0, 1, 3, 4, 6, 8, 9]
    dls = CollabDataLoaders.from_df(df, valid_idx=range(8, 10), bs=2)
    assert dls.valid_ds['ts'].tolist() == [8, 9]


def test_valid_idx_boolean_mask():
    df = small_df(10)
    mask = np.zeros(10, dtype=bool)
    mask[[6, 1]] = True
    for m in (mask, mask.tolist(), pd.Series(mask)):
        dls = CollabDataLoaders.from_df(df, valid_idx=m, bs=2)
        assert dls.valid_ds['ts'].tolist() == [1, 6]
        assert dls.train_ds['ts'].tolist() == [0, 2, 3, 4, 5, 7, 8, 9]
    dls = CollabDataLoaders.from_df(df, valid_idx=df['ts'] >= 8, bs=2)
    assert dls.valid_ds['ts'].tolist() == [8, 9]


# ----------------------------------------------------------------------------------------------
# loaders

def test_batch_counts_and_drop_last():
    df = small_df(30)
    dls = CollabDataLoaders.from_df(df, valid_idx=range(20, 30), bs=8, val_bs=4)
    assert (dls.train.n, dls.valid.n) == (20, 10)
    assert dls.train.shuffle and dls.train.drop_last
    assert not dls.valid.shuffle and not dls.valid.drop_last
    assert len(dls.train) == 2                       # 20 // 8, partial batch dropped
    assert len(dls.valid) == 3                       # 4 + 4 + 2
    assert [len(yb) for _, yb in dls.train] == [8, 8]
    assert [len(yb) for _, yb in dls.valid] == [4, 4, 2]
    exact = CollabDataLoaders.from_df(df, valid_idx=range(20, 30), bs=5)
    assert (len(exact.train), len(exact.valid)) == (4, 2)
    noshuf = CollabDataLoaders.from_df(df, valid_idx=range(20, 30), bs=8, shuffle=False)
    assert not noshuf.train.shuffle and not noshuf.train.drop_last and len(noshuf.train) == 3


def test_dataloader_len_formula():
    x, y = np.zeros((10, 2), np.int32), np.zeros(10, np.float32)
    assert len(DataLoader(x, y, bs=3, shuffle=True)) == 3
    assert len(DataLoader(x, y, bs=3, shuffle=False)) == 4
    assert len(DataLoader(x, y, bs=3, shuffle=False, drop_last=True)) == 3
    assert len(DataLoader(x, y, bs=5, shuffle=False)) == 2
    assert len(DataLoader(x, y, bs=11, shuffle=True)) == 0
    with pytest.raises(ValueError, match="no batches"):
        DataLoader(x, y, bs=11, shuffle=True).one_batch()


def test_shuffle_changes_each_epoch_valid_is_fixed():
    dls = CollabDataLoaders.from_df(small_df(200), bs=16, seed=0)
    o1, o2 = dls.train.order(), dls.train.order()
    for o in (o1, o2):
        assert o.dtype == np.int64 and o.flags.c_contiguous
        assert np.array_equal(np.sort(o), np.arange(dls.train.n))
    assert not np.array_equal(o1, o2)
    v = dls.valid.order()
    assert v.dtype == np.int64 and v.flags.c_contiguous
    assert np.array_equal(v, np.arange(dls.valid.n)) and np.array_equal(dls.valid.order(), v)
    e1 = np.concatenate([yb for _, yb in dls.valid])
    e2 = np.concatenate([yb for _, yb in dls.valid])
    assert np.array_equal(e1[:, 0], dls.valid.y) and np.array_equal(e1, e2)
    t1 = np.concatenate([xb for xb, _ in dls.train])
    t2 = np.concatenate([xb for xb, _ in dls.train])
    assert not np.array_equal(t1, t2)


def test_loaders_have_independent_rngs():
    dls = CollabDataLoaders.from_df(small_df(50), bs=4, seed=0)
    assert isinstance(dls.train.rng, np.random.Generator) and dls.train.rng is not dls.valid.rng


def test_iteration_shapes_and_dtypes():
    dls = CollabDataLoaders.from_df(small_df(50), bs=8, seed=0)
    batches = list(dls.train)
    assert len(batches) == len(dls.train) == 5
    for xb, yb in batches:
        assert xb.shape == (8, 2) and xb.dtype == np.int64
        assert yb.shape == (8, 1) and yb.dtype == np.float32
    xb, yb = list(dls.valid)[-1]
    assert xb.shape == (2, 2) and yb.shape == (2, 1)
    xb, yb = dls.one_batch()
    assert xb.shape == (8, 2) and xb.dtype == np.int64 and yb.shape == (8, 1) and yb.dtype == np.float32


def test_x_y_arrays():
    dls = CollabDataLoaders.from_df(small_df(50), bs=8, seed=0)
    for dl in dls.loaders:
        assert dl.x.dtype == np.int32 and dl.x.flags.c_contiguous and dl.x.shape == (dl.n, 2)
        assert dl.y.dtype == np.float32 and dl.y.flags.c_contiguous and dl.y.shape == (dl.n,)
        assert dl.x[:, 0].max() < dls.n_users and dl.x[:, 1].max() < dls.n_items and dl.x.min() >= 0
        u, i = decode(dls, dl.x)
        assert (u == dl.df['user'].to_numpy()).all() and (i == dl.df['item'].to_numpy()).all()
        assert np.array_equal(dl.y, dl.df['rating'].to_numpy(np.float32))
    assert dls.train_ds is dls.train.df and dls.valid_ds is dls.valid.df


def test_batches_follow_order():
    dls = CollabDataLoaders.from_df(small_df(40), bs=8, seed=0)
    state = dls.train.rng.bit_generator.state
    order = dls.train.order()
    dls.train.rng.bit_generator.state = state
    xb, yb = next(iter(dls.train))
    assert np.array_equal(xb, dls.train.x[order[:8]]) and np.array_equal(yb[:, 0], dls.train.y[order[:8]])


def test_frame_is_copied_not_aliased():
    df = small_df(20)
    dls = CollabDataLoaders.from_df(df, valid_idx=[0, 1], bs=2)
    before = dls.train_ds.copy()
    dls.train_ds.loc[dls.train_ds.index[0], 'rating'] = 99.0
    assert df['rating'].max() < 6                    # the caller's frame is untouched
    assert dls.train.y[0] == before['rating'].iloc[0]


def test_one_batch_df_and_show_batch_decode(capsys):
    df = small_df(60)
    dls = CollabDataLoaders.from_df(df, bs=16, seed=0)
    b = dls.one_batch_df()
    assert list(b.columns) == ['user', 'item', 'rating'] and len(b) == 10
    triples = set(zip(df['user'], df['item'], df['rating']))
    assert all(t in triples for t in zip(b['user'], b['item'], b['rating']))
    assert set(b['item']) <= set('abcde')
    assert len(dls.one_batch_df(max_n=3)) == 3 and len(dls.one_batch_df(max_n=100)) == 16
    with pytest.raises(ValueError, match="max_n"):
        dls.one_batch_df(0)
    assert dls.show_batch(max_n=4) is None
    out = capsys.readouterr().out
    assert 'user' in out and 'item' in out and 'rating' in out
    assert len(out.strip().splitlines()) == 5


def test_one_batch_df_keeps_integer_rating_dtype():
    df = small_df(30).astype({'rating': np.int8})
    b = CollabDataLoaders.from_df(df, bs=8, seed=0).one_batch_df()
    assert b['rating'].dtype == np.int8


def test_pickle_roundtrip():
    dls = CollabDataLoaders.from_df(small_df(30), bs=4, seed=0)
    d2 = pickle.loads(pickle.dumps(dls))
    assert d2.classes == dls.classes and d2.classes['item'].o2i == dls.classes['item'].o2i
    assert np.array_equal(d2.train.x, dls.train.x) and d2.train_ds.equals(dls.train_ds)


def test_from_csv(tmp_path):
    df = small_df(25)
    p = tmp_path / 'ratings.csv'
    df.to_csv(p, index=False)
    dls = CollabDataLoaders.from_csv(p, bs=4, seed=5, valid_pct=0.2)
    ref = CollabDataLoaders.from_df(df, bs=4, seed=5, valid_pct=0.2)
    assert dls.classes == ref.classes
    assert np.array_equal(dls.train.x, ref.train.x) and np.array_equal(dls.valid.y, ref.valid.y)
    assert isinstance(dls, CollabDataLoaders)
    dls = CollabDataLoaders.from_csv(str(p), item_name='user', user_name='item', rating_name='rating', bs=4)
    assert dls.cat_names == ['item', 'user']


# ----------------------------------------------------------------------------------------------
# bad input

def _df():
    return pd.DataFrame({'user': [1, 2, 3, 1, 2], 'item': ['a', 'b', 'a', 'c', 'b'],
                         'rating': [1., 2, 3, 4, 5], 'ts': [0, 1, 2, 3, 4]})


def _with(col, values, dtype=None):
    df = _df()
    df[col] = pd.Series(values, dtype=dtype)
    return df


BAD = [
    ('not a frame', lambda: (_df().to_numpy(), {}), TypeError, r"ratings must be a pandas DataFrame, got ndarray"),
    ('series', lambda: (_df()['user'], {}), TypeError, r"ratings must be a pandas DataFrame"),
    ('empty', lambda: (_df().iloc[:0], {}), ValueError, r"ratings is empty"),
    ('too few columns', lambda: (_df()[['user', 'item']], {}), ValueError,
     r"rating_name defaults to ratings.columns\[2\].*only 2 column"),
    ('unknown item', lambda: (_df(), {'item_name': 'foo'}), KeyError,
     r"item_name='foo' is not a column of ratings; columns are \['user', 'item', 'rating', 'ts'\]"),
    ('unknown user', lambda: (_df(), {'user_name': 'usr'}), KeyError, r"user_name='usr' is not a column"),
    ('unknown rating', lambda: (_df(), {'rating_name': 5}), KeyError, r"rating_name=5 is not a column"),
    ('unhashable name', lambda: (_df(), {'user_name': ['user']}), KeyError, r"user_name=\['user'\] is not a column"),
    ('duplicate column', lambda: (_df().rename(columns={'ts': 'item'}), {}), ValueError,
     r"item_name='item' names several columns"),
    ('names not distinct', lambda: (_df(), {'item_name': 'user'}), ValueError,
     r"three different columns, got 'user', 'user', 'rating'"),
    ('rating same as user', lambda: (_df(), {'rating_name': 'user'}), ValueError, r"three different columns"),
    ('string ratings', lambda: (_with('rating', ['1', '2', '3', '4', '5'], object), {}), TypeError,
     r"rating_name='rating' must be a real numeric column, got dtype object"),
    ('complex ratings', lambda: (_with('rating', np.ones(5, complex)), {}), TypeError, r"rating_name='rating'"),
    ('nan ratings', lambda: (_with('rating', [1, np.nan, 3, np.nan, 5]), {}), ValueError,
     r"rating_name='rating' has 2 NaN, missing or infinite value\(s\).*first at row label 1"),
    ('inf ratings', lambda: (_with('rating', [1, 2, 3, 4, np.inf]), {}), ValueError,
     r"rating_name='rating' has 1 NaN.*row label 4"),
    ('float32 overflow', lambda: (_with('rating', [1, 2, 3, 4, 1e300]), {}), ValueError, r"beyond float32 range"),
    ('nan user', lambda: (_with('user', [1, np.nan, 3, 1, 2]), {}), ValueError,
     r"user_name='user' has 1 missing value\(s\).*row label 1"),
    ('none item', lambda: (_with('item', ['a', 'b', None, 'c', None], object), {}), ValueError,
     r"item_name='item' has 2 missing value\(s\).*row label 2"),
    ('reserved label', lambda: (_with('item', ['a', '#na#', 'a', 'b', 'a']), {}), ValueError,
     r"item_name='item' contains the label '#na#'"),
    ('bs zero', lambda: (_df(), {'bs': 0}), ValueError, r"bs must be an integer >= 1, got 0"),
    ('bs float', lambda: (_df(), {'bs': 2.0}), ValueError, r"bs must be an integer >= 1, got 2.0"),
    ('bs bool', lambda: (_df(), {'bs': True}), ValueError, r"bs must be an integer >= 1, got True"),
    ('val_bs negative', lambda: (_df(), {'val_bs': -1}), ValueError, r"val_bs must be an integer >= 1, got -1"),
    ('val_bs str', lambda: (_df(), {'val_bs': '8'}), ValueError, r"val_bs must be an integer >= 1"),
    ('valid_pct 0', lambda: (_df(), {'valid_pct': 0}), ValueError, r"valid_pct must be a number in the open interval \(0, 1\), got 0"),
    ('valid_pct 1', lambda: (_df(), {'valid_pct': 1.0}), ValueError, r"valid_pct must be .*got 1.0"),
    ('valid_pct nan', lambda: (_df(), {'valid_pct': float('nan')}), ValueError, r"valid_pct must be"),
    ('valid_pct str', lambda: (_df(), {'valid_pct': '0.2'}), ValueError, r"valid_pct must be"),
    ('empty valid', lambda: (_df(), {'valid_pct': 0.1}), ValueError, r"leaves the validation set empty"),
    ('bad seed', lambda: (_df(), {'seed': -1}), ValueError, r"seed must be a non-negative integer"),
    ('valid_idx out of range', lambda: (_df(), {'valid_idx': [1, 5]}), ValueError,
     r"valid_idx holds positions outside \[0, 5\)"),
    ('valid_idx negative', lambda: (_df(), {'valid_idx': [-1]}), ValueError, r"valid_idx holds positions outside"),
    ('valid_idx duplicate', lambda: (_df(), {'valid_idx': [1, 3, 1]}), ValueError,
     r"valid_idx has duplicated positions, e.g. 1"),
    ('valid_idx floats', lambda: (_df(), {'valid_idx': [1.0, 2.0]}), TypeError,
     r"valid_idx must hold integer row positions or booleans, got dtype float64"),
    ('valid_idx strings', lambda: (_df(), {'valid_idx': ['a']}), TypeError, r"valid_idx must hold integer"),
    ('valid_idx scalar', lambda: (_df(), {'valid_idx': 3}), TypeError, r"valid_idx must be a sequence .*got int"),
    ('valid_idx set', lambda: (_df(), {'valid_idx': {1, 2}}), TypeError, r"valid_idx must be a sequence .*got set"),
    ('valid_idx 2d', lambda: (_df(), {'valid_idx': [[1, 2]]}), ValueError, r"valid_idx must be one-dimensional"),
    ('valid_idx empty', lambda: (_df(), {'valid_idx': []}), ValueError, r"valid_idx is empty"),
    ('valid_idx all rows', lambda: (_df(), {'valid_idx': range(5)}), ValueError, r"training set would be empty"),
    ('mask wrong length', lambda: (_df(), {'valid_idx': [True, False]}), ValueError,
     r"boolean mask must have one entry per row \(5\), got 2"),
    ('mask selects none', lambda: (_df(), {'valid_idx': [False] * 5}), ValueError, r"selects no rows"),
    ('mask selects all', lambda: (_df(), {'valid_idx': [True] * 5}), ValueError, r"training set would be empty"),
    ('mask other index', lambda: (_df(), {'valid_idx': pd.Series([True] * 2 + [False] * 3, index=list('abcde'))}),
     ValueError, r"boolean Series must have the same index as ratings"),
    ('classes_from', lambda: (_df(), {'classes_from': 'valid'}), ValueError,
     r"classes_from must be one of \('auto', 'train', 'all'\), got 'valid'"),
    ('classes_from None', lambda: (_df(), {'classes_from': None}), ValueError, r"classes_from must be one of"),
    ('unhashable ids', lambda: (_with('item', [[1], [2], [1], [3], [2]], object), {}), TypeError,
     r"item_name='item': its values cannot be hashed"),
]


@pytest.mark.parametrize('make, exc, match', [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_input(make, exc, match):
    ratings, kwargs = make()
    kwargs.setdefault('bs', 2)
    with pytest.raises(exc, match=match):
        CollabDataLoaders.from_df(ratings, **kwargs)


def test_bad_dataloader_input():
    with pytest.raises(ValueError, match=r"x must have shape \(n, 2\)"):
        DataLoader(np.zeros((3, 3), np.int32), np.zeros(3))
    with pytest.raises(TypeError, match="x must hold integer indices"):
        DataLoader(np.zeros((3, 2)), np.zeros(3))
    with pytest.raises(ValueError, match=r"y must have shape \(3,\)"):
        DataLoader(np.zeros((3, 2), np.int32), np.zeros(4))
    with pytest.raises(ValueError, match="x indices must lie in"):
        DataLoader(-np.ones((3, 2), np.int64), np.zeros(3))
    with pytest.raises(ValueError, match="bs must be an integer >= 1"):
        DataLoader(np.zeros((3, 2), np.int32), np.zeros(3), bs=0)


# ----------------------------------------------------------------------------------------------
# MovieLens-100k

@pytest.fixture(scope='module')
def ml100k_dir():
    root = os.environ.get('COLLABC_DATA')
    if not root:
        pytest.skip("COLLABC_DATA is not set (it must point at a folder containing ml-100k/)")
    d = Path(root) / 'ml-100k'
    assert (d / 'u.data').is_file(), f"COLLABC_DATA={root!r} but {d / 'u.data'} does not exist"
    return d


@pytest.fixture(scope='module')
def ml100k_titles(ml100k_dir):
    return pd.read_csv(ml100k_dir / 'u.item', delimiter='|', encoding='latin-1', usecols=(0, 1),
                       names=('movie', 'title'), header=None)


@pytest.fixture(scope='module')
def ml100k(ml100k_dir, ml100k_titles):
    "u.data merged with u.item titles: columns user, movie, rating, timestamp, title (the lesson's frame)."
    ratings = pd.read_csv(ml100k_dir / 'u.data', delimiter='\t', header=None,
                          names=['user', 'movie', 'rating', 'timestamp'])
    return ratings.merge(ml100k_titles)


@pytest.fixture(scope='module')
def ml100k_fixed_split(ml100k_dir):
    "The shared fixed split: train rows then valid rows (user, movie, rating)."
    splits = ml100k_dir.parent / 'splits'
    names = ['user', 'movie', 'rating']
    train = pd.read_csv(splits / 'ml100k_train.tsv', sep='\t', header=None, names=names)
    valid = pd.read_csv(splits / 'ml100k_valid.tsv', sep='\t', header=None, names=names)
    assert (len(train), len(valid)) == (80000, 20000)
    return pd.concat([train, valid], ignore_index=True)


def test_ml100k_lesson_numbers(ml100k):
    dls = CollabDataLoaders.from_df(ml100k, item_name='title', bs=64)
    assert dls.cat_names == ['user', 'title'] and dls.rating_name == 'rating'
    assert len(dls.classes['user']) == 944 and dls.n_users == 944
    assert len(dls.classes['title']) == 1665 and dls.n_items == 1665
    assert (dls.train.n, dls.valid.n) == (80000, 20000)
    assert (len(dls.train), len(dls.valid)) == (1250, 313)
    assert len(list(dls.valid)[-1][1]) == 32
    cm = dls.classes['title']
    i = cm.o2i['Silence of the Lambs, The (1991)']
    assert cm[i] == 'Silence of the Lambs, The (1991)'
    assert cm[0] == '#na#' and cm[1:] == sorted(ml100k['title'].unique())
    assert (dls.valid.x[:, 1] > 0).all()             # every title has a class (full-frame rule)
    b = dls.one_batch_df()
    assert list(b.columns) == ['user', 'title', 'rating'] and len(b) == 10


def test_ml100k_fixed_split(ml100k_fixed_split, ml100k_titles):
    df = ml100k_fixed_split
    dls = CollabDataLoaders.from_df(df, valid_idx=range(80000, 100000), bs=64)
    assert (dls.train.n, dls.valid.n) == (80000, 20000)
    assert (len(dls.train), len(dls.valid)) == (1250, 313)
    train, valid = df.iloc[:80000], df.iloc[80000:]
    assert dls.classes['user'] == ['#na#'] + sorted(train['user'].unique().tolist())
    assert dls.classes['movie'] == ['#na#'] + sorted(train['movie'].unique().tolist())
    unseen = ~valid['movie'].isin(train['movie']).to_numpy()
    assert unseen.any() and ((dls.valid.x[:, 1] == 0) == unseen).all()
    assert np.array_equal(dls.valid.y, valid['rating'].to_numpy(np.float32))
    assert dls.valid_ds.index.tolist() == list(range(80000, 100000))

    titled = df.merge(ml100k_titles, how='left')     # keeps row order
    dls = CollabDataLoaders.from_df(titled, item_name='title', valid_idx=range(80000, 100000), bs=64)
    assert (dls.n_users, dls.n_items) == (len(dls.classes['user']), 1665)


def test_ml100k_seed42_reproduces_shared_split(ml100k_dir, ml100k_fixed_split):
    "The shared split files are collabc's seed=42 split of u.data (NumPy permutation, valid = head)."
    ratings = pd.read_csv(ml100k_dir / 'u.data', delimiter='\t', header=None,
                          names=['user', 'movie', 'rating', 'timestamp'])
    dls = CollabDataLoaders.from_df(ratings, seed=42)
    cols = ['user', 'movie', 'rating']
    got = pd.concat([dls.train_ds[cols], dls.valid_ds[cols]], ignore_index=True)
    assert got.equals(ml100k_fixed_split[cols])
