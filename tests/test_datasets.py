"""Tests for collabc.datasets (MovieLens loaders, synthetic ratings) and the MovieLens registry entries.

The loaders are tested on small files in every MovieLens format that the tests write themselves (and on
$COLLABC_DATA/ml-100k when it is set); one test goes through untar_data's archive path (a verified local zip,
no network)."""
import hashlib
import io
import os
import pathlib
import re
import zipfile

import numpy as np
import pandas as pd
import pytest

from collabc import CollabDataLoaders, collab_learner, set_seed
from collabc import datasets
from collabc.datasets import (MOVIELENS, RATING_DTYPES, load_movielens, movies, read_ratings, synthetic)
from collabc.external import ENV_DATA, URLs, dataset_info, register_dataset, registered_urls, unregister_dataset

DTYPES = {'user': np.int32, 'item': np.int32, 'rating': np.float32, 'timestamp': np.int64}

# ML-1M style: integer stars; movies.dat is latin-1
ML1M_RATINGS = b"1::1193::5::978300760\n1::661::3::978302109\n2::1193::4::978298413\n3::3408::4::978297655\n"
ML1M_MOVIES = ("1193::One Flew Over the Cuckoo's Nest (1975)::Drama\n"
               "661::James and the Giant Peach (1996)::Animation|Children's|Musical\n"
               "3408::Mis\u00e9rables, Les (1995)::Drama\n").encode('latin-1')
# ML-10M style: half stars; movies.dat is UTF-8
ML10M_RATINGS = b"1::122::5::838985046\n1::185::4.5::838983525\n7::122::0.5::1049764227\n"
ML10M_MOVIES = "122::Boomerang (1992)::Comedy|Romance\n185::Net, The (1995)::Action|Crime|Thriller\n".encode()
# ML-20M/25M/latest style
CSV_RATINGS = b"userId,movieId,rating,timestamp\n1,296,5.0,1147880044\n1,306,3.5,1147868817\n2,296,0.5,1141415820\n"
CSV_MOVIES = ('movieId,title,genres\n296,Pulp Fiction (1994),Comedy|Crime|Drama|Thriller\n'
              '306,"Three Colors: Red (Trois couleurs: Rouge) (1994)",Drama\n').encode()
# ML-100k style
U_DATA = b"196\t242\t3\t881250949\n186\t302\t3\t891717742\n22\t242\t1\t878887116\n"
U_ITEM = ("242|Kolya (1996)|24-Jan-1997||http://us.imdb.com/M/title-exact?Kolya%20(1996)|0|0|0|0|0|1|0|0|0|0|0|0|0|0"
          "|0|0|0|0|0\n302|L.A. Confidential (1997)|01-Jan-1997||http://x|0|0|0|0|0|0|1|0|0|0|1|0|0|1|0|0|1|0|0\n"
          ).encode('latin-1')


def write(folder, files):
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return folder


def check_frame(df, expected):
    "dtypes, columns, index and values of a ratings frame against a list of (user, item, rating, timestamp)."
    assert list(df.columns[:4]) == list(DTYPES)
    for c, t in DTYPES.items():
        assert df[c].dtype == t, c
    assert isinstance(df.index, pd.RangeIndex) and df.index.start == 0
    got = list(zip(df['user'].tolist(), df['item'].tolist(), df['rating'].tolist(), df['timestamp'].tolist()))
    assert got == expected


# ---------------------------------------------------------------- registry
REGISTERED = {  # url: (size, md5, sha256, folder) -- the cross-checked values documented in collabc/external.py
    URLs.ML_1M: (5_917_549, 'c4d9eecfca2ab87c1945afe126590906',
                 'a6898adb50b9ca05aa231689da44c217cb524e7ebd39d264c56e2832f2c54e20', 'ml-1m'),
    URLs.ML_10M: (65_566_137, 'ce571fd55effeba0271552578f2648bd',
                  '813c411ccb6122564edfe752e7f80c4dcc5aa25fa94c93622f6877a7ba252862', 'ml-10M100K'),
    URLs.ML_20M: (198_702_078, 'cd245b17a1ae2cc31bb14903e1204af3',
                  '96f243c338a8665f6bcc89c53edf6ee39162a846940de6b7c8c48aeada765ff3', 'ml-20m'),
    URLs.ML_25M: (261_978_986, '6b51fb2759a8657d3bfcbfc42b592ada',
                  '8b21cfb7eb1706b4ec0aac894368d90acf26ebdfb6aced3ebd4ad5bd1eb9c6aa', 'ml-25m'),
    URLs.ML_LATEST_SMALL: (978_202, None,
                           '696d65a3dfceac7c45750ad32df2c259311949efec81f0f144fdfb91ebc9e436', 'ml-latest-small'),
}


@pytest.mark.parametrize('url', list(REGISTERED))
def test_registry_entries(url):
    size, md5, sha256, folder = REGISTERED[url]
    assert url.startswith('https://files.grouplens.org/datasets/movielens/ml-') and url.endswith('.zip')
    assert url in registered_urls()
    info = dataset_info(url)
    assert (info.size, info.md5, info.sha256, info.folder) == (size, md5, sha256, folder)
    assert info.fname == url.rsplit('/', 1)[1]
    assert info.sha256 is not None      # every MovieLens archive has a whole-file digest


def test_names_map_to_registered_urls():
    assert set(MOVIELENS) == {'ml-100k', 'ml-1m', 'ml-10m', 'ml-20m', 'ml-25m', 'ml-latest-small'}
    for url in MOVIELENS.values():
        assert url in registered_urls()
    assert MOVIELENS['ml-10m'] == URLs.ML_10M and MOVIELENS['ml-100k'] == URLs.ML_100k


# ---------------------------------------------------------------- loaders, each format
def test_dat_ml1m_format(tmp_path):
    d = write(tmp_path / 'ml-1m', {'ratings.dat': ML1M_RATINGS, 'movies.dat': ML1M_MOVIES})
    expected = [(1, 1193, 5.0, 978300760), (1, 661, 3.0, 978302109), (2, 1193, 4.0, 978298413),
                (3, 3408, 4.0, 978297655)]
    check_frame(load_movielens(d), expected)
    check_frame(load_movielens(str(d / 'ratings.dat')), expected)
    check_frame(read_ratings(d / 'ratings.dat'), expected)
    m = movies(d)
    assert m['item'].dtype == np.int32 and list(m.columns) == ['item', 'title', 'genres']
    assert m['title'].tolist()[2] == 'Mis\u00e9rables, Les (1995)'        # latin-1 decoded
    assert m['genres'].tolist()[1] == "Animation|Children's|Musical"
    t = load_movielens(d, titles=True)
    assert t['title'].tolist() == ["One Flew Over the Cuckoo's Nest (1975)", 'James and the Giant Peach (1996)',
                                   "One Flew Over the Cuckoo's Nest (1975)", 'Mis\u00e9rables, Les (1995)']
    check_frame(t, expected)


def test_dat_ml10m_format_half_stars_utf8(tmp_path):
    d = write(tmp_path / 'ml-10M100K', {'ratings.dat': ML10M_RATINGS, 'movies.dat': ML10M_MOVIES})
    check_frame(load_movielens(d), [(1, 122, 5.0, 838985046), (1, 185, 4.5, 838983525), (7, 122, 0.5, 1049764227)])
    assert movies(d / 'movies.dat')['title'].tolist() == ['Boomerang (1992)', 'Net, The (1995)']


def test_csv_format(tmp_path):
    d = write(tmp_path / 'ml-25m', {'ratings.csv': CSV_RATINGS, 'movies.csv': CSV_MOVIES})
    expected = [(1, 296, 5.0, 1147880044), (1, 306, 3.5, 1147868817), (2, 296, 0.5, 1141415820)]
    check_frame(load_movielens(d), expected)
    m = movies(d)
    assert m['item'].tolist() == [296, 306] and m['item'].dtype == np.int32
    assert m['title'].tolist()[1] == 'Three Colors: Red (Trois couleurs: Rouge) (1994)'
    assert load_movielens(d, titles=True)['title'].tolist()[1] == 'Three Colors: Red (Trois couleurs: Rouge) (1994)'


def test_u_data_format(tmp_path):
    d = write(tmp_path / 'ml-100k', {'u.data': U_DATA, 'u.item': U_ITEM})
    check_frame(load_movielens(d), [(196, 242, 3.0, 881250949), (186, 302, 3.0, 891717742),
                                    (22, 242, 1.0, 878887116)])
    m = movies(d)
    assert m['title'].tolist() == ['Kolya (1996)', 'L.A. Confidential (1997)']
    assert m['genres'].tolist() == ['Comedy', 'Crime|Film-Noir|Mystery|Thriller']


def test_folder_search_order_and_explicit_format(tmp_path):
    d = write(tmp_path / 'both', {'ratings.dat': ML10M_RATINGS, 'ratings.csv': CSV_RATINGS})
    assert load_movielens(d)['item'].tolist() == [122, 185, 122]          # ratings.dat first
    p = write(tmp_path / 'x', {'my_ratings.txt': ML1M_RATINGS}) / 'my_ratings.txt'
    with pytest.raises(ValueError, match="format"):
        read_ratings(p)
    assert len(read_ratings(p, format='dat')) == 4
    with pytest.raises(ValueError, match="format must be one of"):
        read_ratings(p, format='xls')


def test_no_trailing_newline_and_crlf(tmp_path):
    d = write(tmp_path / 'a', {'ratings.dat': ML10M_RATINGS.rstrip(b'\n')})
    assert len(load_movielens(d)) == 3
    d = write(tmp_path / 'b', {'ratings.csv': CSV_RATINGS.replace(b'\n', b'\r\n')})
    check_frame(load_movielens(d), [(1, 296, 5.0, 1147880044), (1, 306, 3.5, 1147868817),
                                    (2, 296, 0.5, 1141415820)])


def test_chunked_parse_blank_lines_and_row_numbers(tmp_path, monkeypatch):
    "Files are parsed in chunks into preallocated columns; errors name the row across chunk boundaries."
    monkeypatch.setattr(datasets, '_PARSE_CHUNK', 3)
    d = write(tmp_path / 'a', {'ratings.dat': ML1M_RATINGS + b"\n" + ML10M_RATINGS})
    df = load_movielens(d)
    assert len(df) == 7 and df['rating'].tolist() == [5.0, 3.0, 4.0, 4.0, 5.0, 4.5, 0.5]
    assert df['timestamp'].tolist()[-1] == 1049764227 and df['user'].dtype == np.int32
    d = write(tmp_path / 'b', {'ratings.dat': ML1M_RATINGS * 2 + b"1:5:2::3::4\n"})
    with pytest.raises(ValueError, match=r"data row 9 \(line 9,.* single ':'"):
        load_movielens(d)
    d = write(tmp_path / 'c', {'ratings.csv': CSV_RATINGS + b"1,2,3,4\n" * 5 + b"3,4,,5\n"})
    with pytest.raises(ValueError, match=r"data row 9 \(line 10,.*non-finite rating"):
        load_movielens(d)


def test_name_resolution_through_collabc_data(tmp_path, monkeypatch):
    "A MovieLens name goes through untar_data, which reads $COLLABC_DATA/<folder> without network."
    write(tmp_path / 'ml-1m', {'ratings.dat': ML1M_RATINGS, 'movies.dat': ML1M_MOVIES})
    write(tmp_path / 'ml-10M100K', {'ratings.dat': ML10M_RATINGS})
    write(tmp_path / 'ml-latest-small', {'ratings.csv': CSV_RATINGS})
    monkeypatch.setenv(ENV_DATA, str(tmp_path))
    monkeypatch.chdir(tmp_path / 'ml-1m')               # so that 'ml-1m' is not also a relative path
    assert len(load_movielens('ml-1m')) == 4
    assert len(datasets.ml_1m()) == 4
    assert len(load_movielens('1M')) == 4
    assert len(load_movielens(URLs.ML_1M)) == 4
    assert len(load_movielens('ml-10m')) == 3 and len(datasets.ml_10m()) == 3
    assert len(datasets.ml_latest_small()) == 3
    assert datasets.ml_25m.__name__ == 'ml_25m' and 'ml-25m' in datasets.ml_25m.__doc__


def test_untar_data_archive_path(tmp_path):
    "A registered archive in the cache is verified, unpacked and loaded (untar_data's local path, no download)."
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, 'w') as zf:
        zf.writestr('mini-ml/ratings.csv', CSV_RATINGS)
        zf.writestr('mini-ml/movies.csv', CSV_MOVIES)
    data = buf.getvalue()
    url = 'https://example.org/collabc-tests/mini-ml.zip'
    register_dataset(url, size=len(data), sha256=hashlib.sha256(data).hexdigest(), folder='mini-ml')
    try:
        (tmp_path / 'archive').mkdir()
        (tmp_path / 'archive' / 'mini-ml.zip').write_bytes(data)
        df = load_movielens(url, titles=True, base=tmp_path, progress=False)
        assert len(df) == 3 and df['title'].tolist()[0] == 'Pulp Fiction (1994)'
        assert (tmp_path / 'data' / 'mini-ml' / 'ratings.csv').is_file()
    finally:
        unregister_dataset(url)


def test_real_ml100k_if_available():
    root = os.environ.get(ENV_DATA)
    p = pathlib.Path(root or '.') / 'ml-100k'
    if not root or not (p / 'u.data').is_file():
        pytest.skip("COLLABC_DATA is not set to a folder holding ml-100k/")
    df = load_movielens(p, titles=True)
    assert len(df) == 100_000 and df['user'].nunique() == 943 and df['item'].nunique() == 1682
    assert set(df['rating'].unique().tolist()) == {1.0, 2.0, 3.0, 4.0, 5.0}
    assert 'Star Wars (1977)' in set(df['title'].tolist())
    for c, t in DTYPES.items():
        assert df[c].dtype == t
    assert len(movies(p)) == 1682


def test_loader_frames_feed_from_df(tmp_path):
    d = write(tmp_path / 'ml-1m', {'ratings.dat': ML1M_RATINGS * 5})
    dls = CollabDataLoaders.from_df(load_movielens(d), bs=4, seed=0, valid_pct=0.25)
    assert dls.user_name == 'user' and dls.item_name == 'item' and dls.rating_name == 'rating'
    assert dls.train.x.dtype == np.int32 and dls.train.y.dtype == np.float32


def test_memmap_frames_are_used_in_place(tmp_path):
    "Ratings saved as .npy and memory-mapped read-only make a frame without copies that from_df accepts."
    u, i, r = synthetic(200, 100, 5_000, seed=4, as_frame=False)
    for name, a in (('user', u), ('item', i), ('rating', r)):
        assert a.flags.c_contiguous
        np.save(tmp_path / f'{name}.npy', a)
    mm = {name: np.load(tmp_path / f'{name}.npy', mmap_mode='r') for name in ('user', 'item', 'rating')}
    df = pd.DataFrame(mm, copy=False)
    for name, a in mm.items():
        assert np.shares_memory(df[name].to_numpy(), a)
    dls = CollabDataLoaders.from_df(df, bs=64, seed=0)
    assert dls.train.n + dls.valid.n == 5_000
    np.testing.assert_array_equal(np.load(tmp_path / 'rating.npy'), r)       # nothing written through the map


# ---------------------------------------------------------------- loader errors
def test_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match='neither an existing file or folder nor a MovieLens name'):
        load_movielens(str(tmp_path / 'nope'))
    with pytest.raises(FileNotFoundError, match='does not exist'):
        load_movielens(tmp_path / 'nope')
    (tmp_path / 'empty').mkdir()
    with pytest.raises(FileNotFoundError, match=r'no MovieLens ratings file .*ratings\.dat, ratings\.csv, u\.data'):
        load_movielens(tmp_path / 'empty')
    with pytest.raises(FileNotFoundError, match='no MovieLens movies file'):
        movies(tmp_path / 'empty')
    write(tmp_path / 'r', {'ratings.dat': ML1M_RATINGS})
    with pytest.raises(FileNotFoundError, match='movies'):
        load_movielens(tmp_path / 'r', titles=True)
    with pytest.raises(FileNotFoundError):
        read_ratings(tmp_path / 'r' / 'missing.dat')


@pytest.mark.parametrize('name, data, match', [
    ('ratings.dat', CSV_RATINGS, r"not a '::'-separated ratings\.dat.*line 1"),
    ('ratings.dat', b"1::2::3\n", r"line 1 is b'1::2::3'"),
    ('ratings.dat', b"1::2::3::4\n1:2::3::4\n", r"line 2"),
    ('ratings.dat', b"", r"is empty"),
    ('ratings.csv', b"user,item,rating,timestamp\n1,2,3,4\n", r"not a ratings\.csv with the header"),
    ('ratings.csv', ML1M_RATINGS, r"not a ratings\.csv"),
    ('ratings.csv', b"userId,movieId,rating,timestamp\n1,x,3,4\n", r"line 2"),
    ('u.data', b"1,2,3,4\n", r"tab-separated u\.data"),
    ('u.data', b"1\t2\t3\t4\n" * 10 + b"1\t2\t\t4\n", r"data row 11 \(line 11, .*missing or non-finite rating"),
    ('u.data', b"1\t2\t3\t4\n" * 10 + b"1\tx\t3\t4\n", r"not a valid tab-separated"),
    ('u.data', b"1\t2\t3\t4\n" * 10 + b"3000000000\t2\t3\t4\n", r"not a valid tab-separated"),
    ('ratings.dat', b"1::2::3::4\n" * 10 + b"1::2::3::4::5\n", r"not a valid '::'-separated"),
    ('ratings.dat', b"1::2::3::4\n" * 10 + b"1:5:2::3::4\n", r"data row 11 .* has a single ':'"),
    ('ratings.dat', b"1::2::3::4\n" * 10 + b"1::2::::4\n", r"missing or non-finite rating"),
])
def test_wrong_format(tmp_path, name, data, match):
    d = write(tmp_path / 'bad', {name: data})
    with pytest.raises(ValueError, match=match) as e:
        load_movielens(d)
    assert str(d / name) in str(e.value)


def test_bad_sources(tmp_path):
    with pytest.raises(TypeError, match='source must be'):
        load_movielens(42)
    with pytest.raises(ValueError, match='unknown data set URL'):
        load_movielens('https://example.org/unregistered.zip')
    write(tmp_path / 'ok', {'ratings.dat': ML1M_RATINGS})
    with pytest.raises(TypeError, match='only apply when downloading'):
        load_movielens(tmp_path / 'ok', base=tmp_path)
    bad = write(tmp_path / 'm', {'movies.dat': b'1|Toy Story|x\n'})
    with pytest.raises(ValueError, match="not a valid MovieLens movies file"):
        movies(bad)
    bad = write(tmp_path / 'm2', {'movies.csv': b'id,name\n1,x\n'})
    with pytest.raises(ValueError, match="movieId,title,genres"):
        movies(bad)
    d = write(tmp_path / 'untitled', {'ratings.dat': ML1M_RATINGS, 'movies.dat': b'1193::A (1975)::Drama\n'})
    with pytest.raises(ValueError, match=r"2 rated item id\(s\) have no title"):
        load_movielens(d, titles=True)


# ---------------------------------------------------------------- synthetic
def test_synthetic_shape_dtypes_and_scale():
    df = synthetic(300, 200, 20_000, seed=3)
    assert list(df.columns) == ['user', 'item', 'rating'] and len(df) == 20_000
    assert [df[c].dtype for c in df.columns] == [np.int32, np.int32, np.float32]
    assert df['user'].min() >= 1 and df['user'].max() <= 300 and df['item'].min() >= 1 and df['item'].max() <= 200
    assert df['user'].nunique() == 300                      # everyone rates when n_ratings >= n_users
    r = df['rating'].to_numpy()
    assert r.min() >= 0.5 and r.max() <= 5.0 and np.all(r * 2 == np.round(r * 2))   # half stars
    assert 2.5 < r.mean() < 4.5 and 0.6 < r.std() < 1.4
    assert not df.duplicated(['user', 'item']).any()
    key = df['user'].to_numpy().astype(np.int64) * 1000 + df['item'].to_numpy()
    assert np.all(np.diff(key) > 0)                        # sorted by user, then item

    whole = synthetic(50, 40, 1000, rating_scale=(1, 5), seed=0)['rating'].to_numpy()
    assert set(np.unique(whole).tolist()) <= {1.0, 2.0, 3.0, 4.0, 5.0}
    cont = synthetic(50, 40, 1000, rating_scale=(1, 5), step=None, seed=0)['rating'].to_numpy()
    assert cont.min() >= 1 and cont.max() <= 5 and len(np.unique(cont)) > 100
    tenths = synthetic(50, 40, 1000, rating_scale=(0.0, 1.0), step=0.1, seed=0)['rating'].to_numpy()
    assert tenths.min() >= 0 and tenths.max() <= 1 and np.allclose(tenths * 10, np.round(tenths * 10), atol=1e-5)


def test_synthetic_deterministic():
    a = synthetic(500, 300, 30_000, seed=11)
    b = synthetic(500, 300, 30_000, seed=11)
    c = synthetic(500, 300, 30_000, seed=12)
    pd.testing.assert_frame_equal(a, b)
    assert not a.equals(c)
    set_seed(5)
    d = synthetic(100, 50, 2000, seed=None)
    set_seed(5)
    pd.testing.assert_frame_equal(d, synthetic(100, 50, 2000, seed=None))


def test_synthetic_heavy_tailed():
    df = synthetic(5_000, 2_000, 200_000, seed=0)
    items = np.sort(np.bincount(df['item'].to_numpy(), minlength=2001)[1:])[::-1]
    assert items[:200].sum() / items.sum() > 0.4             # top 10% of items hold > 40% of the ratings
    users = np.bincount(df['user'].to_numpy())[1:]
    assert users.max() > 8 * np.median(users)                 # a long tail of very active users
    assert users.mean() > 1.3 * np.median(users)              # right-skewed activity
    flat = synthetic(5_000, 2_000, 200_000, seed=0, user_skew=0, item_skew=0)
    flat_items = np.sort(np.bincount(flat['item'].to_numpy(), minlength=2001)[1:])[::-1]
    assert flat_items[:200].sum() / flat_items.sum() < 0.15


def test_synthetic_dense_and_tiny_cases():
    df = synthetic(30, 20, 540, seed=1)                       # 90% dense: unique pairs still found
    assert len(df) == 540 and not df.duplicated(['user', 'item']).any()
    full = synthetic(7, 5, 35, seed=2)                         # every pair
    assert len(full.drop_duplicates(['user', 'item'])) == 35
    few = synthetic(100, 10, 20, seed=0)                       # fewer ratings than users
    assert len(few) == 20 and few['user'].nunique() <= 20
    one = synthetic(1, 1, 1, rank=1, seed=0)
    assert one[['user', 'item']].values.tolist() == [[1, 1]]
    extreme = synthetic(1_000, 500, 20_000, user_skew=500, item_skew=50, seed=0)   # weights underflow to 0
    assert len(extreme) == 20_000 and not extreme.duplicated(['user', 'item']).any()
    assert np.bincount(extreme['user'].to_numpy()).max() <= 250                   # half the items at most


def test_synthetic_redraws_in_chunks(monkeypatch):
    # duplicates are redrawn chunk by chunk; with tiny chunks a user's redraws span many chunks, and a pair
    # drawn in one chunk must not be drawn again in the next
    import collabc.datasets as ds
    whole = synthetic(40, 25, 800, seed=5, item_skew=3)
    monkeypatch.setattr(ds, '_CHUNK', 3)
    for seed in range(5):
        df = synthetic(40, 25, 800, seed=seed, item_skew=3)           # 80% dense, steep popularity: many redraws
        assert len(df) == 800 and not df.duplicated(['user', 'item']).any()
        assert df['item'].between(1, 25).all()
        assert (np.diff(df['user'].to_numpy().astype(np.int64) * 25 + df['item'].to_numpy()) > 0).all()
        if seed == 5:   # the same users' counts as in whole chunks (only which items are redrawn differs)
            assert (df['user'].value_counts().sort_index() == whole['user'].value_counts().sort_index()).all()


def test_synthetic_non_unique_arrays_and_truth():
    u, i, r = synthetic(40, 10, 2_000, seed=0, unique=False, as_frame=False)
    assert u.dtype == np.int32 and i.dtype == np.int32 and r.dtype == np.float32 and len(u) == 2_000
    assert pd.DataFrame({'u': u, 'i': i}).duplicated().any()   # duplicates allowed (and likely) here
    (df, truth) = synthetic(60, 30, 900, rank=3, seed=0, return_truth=True)
    assert truth['user_factors'].shape == (60, 3) and truth['item_factors'].shape == (30, 3)
    assert truth['user_bias'].shape == (60,) and truth['item_bias'].shape == (30,)
    assert truth['mean'] == pytest.approx(0.5 + 0.675 * 4.5)


def test_synthetic_is_learnable():
    "A quick dot-product fit recovers the planted model far better than the global mean."
    df, truth = synthetic(400, 300, 30_000, rank=4, noise=0.3, seed=1, return_truth=True)
    set_seed(0)
    dls = CollabDataLoaders.from_df(df, bs=256, seed=0)
    learn = collab_learner(dls, n_factors=8, y_range=(0, 5.5))
    learn.logger = lambda *a: None
    learn.fit_one_cycle(8, 1e-2, wd=0.05)
    valid_mse = learn.validate()[0]
    global_mean_mse = float(((dls.valid.y - dls.train.y.mean()) ** 2).mean())
    assert valid_mse < 0.5 * global_mean_mse, (valid_mse, global_mean_mse)
    u, i = df['user'].to_numpy() - 1, df['item'].to_numpy() - 1
    oracle = np.clip(truth['mean'] + truth['user_bias'][u] + truth['item_bias'][i]
                     + (truth['user_factors'][u] * truth['item_factors'][i]).sum(1), 0.5, 5.0)
    assert float(((oracle - df['rating'].to_numpy()) ** 2).mean()) < valid_mse   # the truth is better still


@pytest.mark.parametrize('kwargs, match', [
    (dict(n_ratings=0), 'n_ratings must be an integer >= 1'),
    (dict(n_ratings=-5), 'n_ratings must be an integer >= 1'),
    (dict(n_users=0), 'n_users must be'),
    (dict(n_items=2.0), 'n_items must be'),
    (dict(n_users=True), 'n_users must be'),
    (dict(rank=0), 'rank must be an integer >= 1'),
    (dict(noise=-0.1), 'noise must be'),
    (dict(noise=float('nan')), 'noise must be'),
    (dict(seed=-1), 'seed must be'),
    (dict(seed=1.5), 'seed must be'),
    (dict(rating_scale=(5, 1)), 'low < high'),
    (dict(rating_scale=5), 'pair'),
    (dict(rating_scale=(0, float('inf'))), 'finite'),
    (dict(step=0), 'step must be'),
    (dict(step='half'), "step must be 'auto'"),
    (dict(step=10), 'larger than the rating scale'),
    (dict(user_skew=-1), 'user_skew must be'),
    (dict(item_skew=float('inf')), 'item_skew must be'),
    (dict(n_users=3, n_items=3, n_ratings=10), r'exceeds the 9 distinct'),
])
def test_synthetic_bad_arguments(kwargs, match):
    args = dict(n_users=10, n_items=10, n_ratings=50)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        synthetic(**args)


def test_rating_dtypes_constant():
    assert {k: v.type for k, v in RATING_DTYPES.items()} == DTYPES
    assert re.search(r'\d', datasets.ml_10m.__doc__)
