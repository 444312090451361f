"""The `collabc` command line, run as a user runs it (a fresh process, `python -m collabc`, from a
scratch folder so the installed package is imported): help and defaults, `--version`, usage errors
(exit 2, one line), data and file errors (exit 1, one line, no traceback), and train -> recommend ->
evaluate agreeing with the Python API; MovieLens-100k too when COLLABC_DATA is set."""
import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

import collabc
from collabc import load_learner

from conftest import ml100k_path


def run(*args, cwd, env=None, extra_code=None):
    "Run the command line in a new process; returns (exit status, stdout, stderr)."
    e = dict(os.environ)
    e.setdefault("COLLABC_HOME", str(cwd / "collabc-home"))
    e.update(env or {})
    if extra_code is None:
        cmd = [sys.executable, "-m", "collabc", *map(str, args)]
    else:   # set something up inside the process first (e.g. hide a module)
        cmd = [sys.executable, "-c", f"{extra_code}\nimport sys\nfrom collabc.__main__ import main\n"
                                     f"sys.exit(main({[str(a) for a in args]!r}))"]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, env=e, timeout=300)
    return r.returncode, r.stdout, r.stderr


_DRIVER = """
import contextlib, io, json, sys
from collabc.__main__ import main
results = []
for argv in json.loads(sys.argv[1]):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as e:          # argparse's exits (usage errors, --help, --version)
            code = e.code
    results.append([code, out.getvalue(), err.getvalue()])
print(json.dumps(results))
"""


def run_many(argvs, cwd, env=None):
    """Many command lines in one new process (one interpreter start-up for all): each goes through
    `main` exactly as `collabc ...` does, with its own stdout, stderr and exit status."""
    e = dict(os.environ)
    e.setdefault("COLLABC_HOME", str(cwd / "collabc-home"))
    e.update(env or {})
    r = subprocess.run([sys.executable, "-c", _DRIVER, json.dumps([[str(a) for a in v] for v in argvs])],
                       capture_output=True, text=True, cwd=cwd, env=e, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return [tuple(x) for x in json.loads(r.stdout.splitlines()[-1])]


def one_line_error(r, status, prog, *needles):
    code, out, err = r
    assert code == status, (code, out, err)
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{prog}: error: "), err
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    "A scratch folder with a small ratings CSV (string item ids, own column names) and a model."
    d = tmp_path_factory.mktemp("cli")
    rng = np.random.default_rng(3)
    nu, ni, n = 60, 40, 3000
    u, i = rng.integers(1, nu + 1, n), rng.integers(1, ni + 1, n)
    pu, qi = rng.normal(size=(nu + 1, 2)), rng.normal(size=(ni + 1, 2))
    r = np.clip(np.rint(3 + (pu[u] * qi[i]).sum(1) + rng.normal(0, 0.3, n)), 1, 5).astype(int)
    df = pd.DataFrame({"uid": u, "movie": [f"m{k:02d}" for k in i], "stars": r, "when": np.arange(n)})
    df = df.drop_duplicates(["uid", "movie"]).reset_index(drop=True)
    df.to_csv(d / "ratings.csv", index=False)
    df.iloc[:300].to_csv(d / "test.csv", index=False)
    code, out, err = train_seeded(d, "ratings.csv", "model.npz")
    assert code == 0, err
    return d, df, out


def train_seeded(d, src, dest):
    "The fixture's training run: seed 0, 3 epochs, bs 32, y_range (0, 5.5)."
    return run("train", src, "-o", dest, "--seed", "0", "--epochs", "3", "--bs", "32", "--y-range", "0", "5.5",
               cwd=d)


def assert_same_model(a, b):
    sa, sb = load_learner(a).model.state_dict(), load_learner(b).model.state_dict()
    assert sorted(sa) == sorted(sb)
    for k, v in sa.items():
        np.testing.assert_array_equal(v, sb[k])


# ----------------------------------------------------------------------------- help and version
def test_bare_command_prints_help(tmp_path):
    code, out, err = run(cwd=tmp_path)
    assert code == 0 and err == ""
    assert out.startswith("usage: collabc")
    for cmd in ("lesson", "train", "recommend", "evaluate", "datasets"):
        assert f"\n    {cmd}" in out


def test_version(tmp_path):
    code, out, _ = run("--version", cwd=tmp_path)
    assert code == 0 and out.strip() == f"collabc {collabc.__version__}"


HELP = [
    ("lesson", ["--data DIR", "--epochs EPOCHS", "(default: 5)", "(default: 0.005)", "(default: 0.1)",
                "(default: 64)"]),
    ("train", ["--user-col NAME", "--valid-pct", "(default: 0.2)", "--y-range LOW HIGH", "--use-nn",
               "--layers N", "(default: export.npz)", "needs pyarrow"]),
    ("recommend", ["--all-users", "items per user (default: 10)", "--include-seen", "--csv PATH"]),
    ("evaluate", ["cut-off of the ranking metrics (default: 10)", "--threshold", "--unknown {skip,error}", "--json"]),
    ("datasets", ["{list,fetch}", "(default: list)", "ml-100k, ml-1m"]),
]


def test_subcommand_help_shows_text_and_defaults(tmp_path):
    results = run_many([[cmd, "--help"] for cmd, _ in HELP], cwd=tmp_path)
    for (cmd, needles), (code, out, err) in zip(HELP, results):
        assert code == 0 and err == ""
        assert out.startswith(f"usage: collabc {cmd}")
        text = " ".join(out.split())
        for n in needles:
            assert " ".join(n.split()) in text, (n, out)
        assert "(default: None)" not in text and "(default: False)" not in text


# ----------------------------------------------------------------------------- usage errors: exit 2
USAGE_ERRORS = [
    (["lesson", "--epochs", "0"], "collabc lesson", ["--epochs", "an integer >= 1", "'0'"]),
    (["lesson", "--bs", "0"], "collabc lesson", ["--bs", "an integer >= 1"]),
    (["lesson", "--lr", "nan"], "collabc lesson", ["--lr", "a number > 0"]),
    (["lesson", "--wd", "-1"], "collabc lesson", ["--wd"]),
    (["lesson", "--frobnicate"], "collabc", ["unrecognized arguments: --frobnicate"]),
    (["frob"], "collabc", ["invalid choice: 'frob'"]),
    (["train"], "collabc train", ["the following arguments are required: ratings"]),
    (["train", "x.csv", "--valid-pct", "1"], "collabc train", ["--valid-pct", "between 0 and 1"]),
    (["train", "x.csv", "--y-range", "5", "1"], "collabc train", ["--y-range: LOW must be below HIGH"]),
    (["train", "x.csv", "--y-range", "1"], "collabc train", ["--y-range: expected 2 arguments"]),
    (["train", "x.csv", "--layers", "8"], "collabc train", ["--layers needs --use-nn"]),
    (["train", "x.csv", "--use-nn", "--layers", "0"], "collabc train", ["--layers"]),
    (["train", "x.csv", "--format", "xlsx"], "collabc train", ["--format", "invalid choice"]),
    (["recommend", "m.npz"], "collabc recommend", ["give one or more user ids, or --all-users"]),
    (["recommend", "m.npz", "1", "--all-users"], "collabc recommend", ["not both"]),
    (["recommend", "m.npz", "1", "-n", "0"], "collabc recommend", ["-n"]),
    (["evaluate", "m.npz"], "collabc evaluate", ["required: ratings"]),
    (["evaluate", "m.npz", "r.csv", "--unknown", "ignore"], "collabc evaluate", ["--unknown"]),
    (["datasets", "fetch"], "collabc datasets", ["name the data sets to fetch"]),
    (["datasets", "fetch", "ml-5k"], "collabc datasets", ["unknown data set 'ml-5k'", "ml-100k"]),
    (["datasets", "list", "ml-100k"], "collabc datasets", ["'list' takes no names"]),
]


def test_usage_errors_exit_2_with_one_line(tmp_path):
    # one of them as the real command, the rest through main() in a single process
    line = one_line_error(run("lesson", "--epochs", "0", cwd=tmp_path), 2, "collabc lesson", "--epochs")
    assert line.endswith("(see 'collabc lesson --help')")
    results = run_many([args for args, _, _ in USAGE_ERRORS], cwd=tmp_path)
    for (args, prog, needles), r in zip(USAGE_ERRORS, results):
        line = one_line_error(r, 2, prog, *needles)
        assert line.endswith(f"(see '{prog} --help')"), args


# ----------------------------------------------------------------------------- data errors: exit 1
def test_file_and_data_errors_exit_1_with_one_line(work):
    d, df, _ = work
    (d / "bad.csv").write_text("a,b,c\n1,2,x\n1,3,4\n")
    (d / "empty.csv").write_text("")
    (d / "few.csv").write_text("u,i,r\n1,1,5\n2,2,3\n")
    cases = [
        (["train", "nope.csv"], "collabc train", ["nope.csv: no such file"]),
        (["train", "bad.csv"], "collabc train", ["bad.csv", "'c' must be a real numeric column"]),
        (["train", "empty.csv"], "collabc train", ["empty.csv: cannot be read as csv"]),
        (["train", "few.csv"], "collabc train", ["validation set empty"]),
        (["train", "ratings.csv", "--user-col", "user"], "collabc train",
         ["--user-col 'user' is not a column of ratings.csv", "['uid', 'movie', 'stars', 'when']"]),
        (["train", "ratings.csv", "--bs", "5000"], "collabc train", ["make no batch of --bs 5000"]),
        (["train", "ratings.csv", "--lr", "1e6", "--epochs", "1", "-o", "diverged.npz"], "collabc train",
         ["training diverged", "(--lr)"]),
        (["recommend", "ratings.csv", "1"], "collabc recommend", ["ratings.csv", "not a collabc file"]),
        (["recommend", "missing.npz", "1"], "collabc recommend", ["missing.npz: no such file"]),
        (["recommend", "model.npz", "999"], "collabc recommend", ["not in the training classes", "[999]"]),
        (["recommend", "model.npz", "abc"], "collabc recommend", ["user id 'abc' is not an integer"]),
        (["evaluate", "model.npz", "bad.csv"], "collabc evaluate",
         ["bad.csv: none of its rows has a user and an item the model knows"]),
        (["lesson", "--data", "nowhere"], "collabc lesson", ["--data nowhere: holds neither ml-100k/u.data"]),
    ]
    one_line_error(run(*cases[0][0], cwd=d), 1, *cases[0][1:2], *cases[0][2])   # the real command
    for (args, prog, needles), r in zip(cases, run_many([c[0] for c in cases], cwd=d)):
        one_line_error(r, 1, prog, *needles)
    assert not (d / "diverged.npz").exists()


def test_parquet_without_pyarrow_says_what_to_install(work):
    d, df, _ = work
    (d / "r.parquet").write_bytes(b"PAR1")
    hide = "import sys\nsys.modules['pyarrow'] = None\nsys.modules['fastparquet'] = None"
    line = one_line_error(run("train", "r.parquet", cwd=d, extra_code=hide), 1, "collabc train")
    assert "reading Parquet needs pyarrow, which is not installed; pip install pyarrow" in line


def test_parquet_with_pyarrow(work):
    pytest.importorskip("pyarrow")
    d, df, _ = work
    df.to_parquet(d / "ratings.parquet")
    code, out, err = train_seeded(d, "ratings.parquet", "pq.npz")
    assert code == 0, err
    assert_same_model(d / "model.npz", d / "pq.npz")   # the same data, seed and options as the CSV run


# ----------------------------------------------------------------------------- train / recommend / evaluate
def test_train_prints_the_table_and_exports(work):
    d, df, out = work
    lines = out.splitlines()
    assert lines[0] == (f"{len(df):,} ratings: 60 users, 40 items; {len(df) - int(0.2 * len(df)):,} train / "
                        f"{int(0.2 * len(df)):,} valid rows, {(len(df) - int(0.2 * len(df))) // 32} batches of 32")
    assert lines[1].split() == ["epoch", "train_loss", "valid_loss", "_rmse", "time"]
    assert [ln.split()[0] for ln in lines[2:5]] == ["0", "1", "2"]
    assert lines[5].startswith("trained in ") and lines[5].endswith(f"exported to {d / 'model.npz'}")
    learn = load_learner(d / "model.npz")
    assert (learn.dls.user_name, learn.dls.item_name, learn.dls.rating_name) == ("uid", "movie", "stars")
    assert learn.model.y_range == (0.0, 5.5)


def test_train_is_reproducible_with_a_seed(work):
    d, _, _ = work
    code, _, err = train_seeded(d, "ratings.csv", "again.npz")
    assert code == 0, err
    assert_same_model(d / "model.npz", d / "again.npz")


def test_train_neural_model(work):
    d, _, _ = work
    code, out, err = run("train", "ratings.csv", "-o", "nn.npz", "--use-nn", "--layers", "8", "4",
                         "--epochs", "2", "--seed", "1", "--user-col", "uid", "--item-col", "movie",
                         "--rating-col", "stars", cwd=d)
    assert code == 0, err
    learn = load_learner(d / "nn.npz")
    assert type(learn.model).__name__ == "EmbeddingNN"
    assert [k for k in learn.model.state_dict() if k.endswith("0.weight") and k.startswith("layers")] == \
        ["layers.0.0.weight", "layers.1.0.weight", "layers.2.0.weight"]
    assert learn.model.state_dict()["layers.1.0.weight"].shape == (4, 8)


def test_recommend_matches_the_python_api(work):
    d, _, _ = work
    expected = load_learner(d / "model.npz").recommend_many([3, 7], n=4)
    code, out, err = run("recommend", "model.npz", "3", "7", "-n", "4", "--csv", "-", cwd=d)
    assert code == 0, err
    got = pd.read_csv(pd.io.common.StringIO(out))
    assert list(got.columns) == ["uid", "rank", "movie", "score"] and len(got) == 8
    assert got["movie"].tolist() == expected["movie"].tolist()
    np.testing.assert_allclose(got["score"], expected["score"].astype(float), rtol=1e-6)
    # as a table
    code, out, _ = run("recommend", "model.npz", "3", "-n", "2", cwd=d)
    assert code == 0 and out.split()[:4] == ["uid", "rank", "movie", "score"] and len(out.splitlines()) == 3
    # to a file, every user
    code, out, _ = run("recommend", "model.npz", "--all-users", "-n", "1", "--csv", "all.csv", cwd=d)
    assert code == 0 and out.strip() == "wrote 60 rows to all.csv"
    assert pd.read_csv(d / "all.csv")["uid"].tolist() == list(range(1, 61))
    # the items user 3 rated in training are left out unless asked for (40 items in all)
    code, out, _ = run("recommend", "model.npz", "3", "-n", "40", "--csv", "-", cwd=d)
    unseen = pd.read_csv(pd.io.common.StringIO(out))["movie"].tolist()
    assert unseen == load_learner(d / "model.npz").recommend_many([3], n=40)["movie"].tolist()
    code, out, _ = run("recommend", "model.npz", "3", "-n", "40", "--include-seen", "--csv", "-", cwd=d)
    assert len(pd.read_csv(pd.io.common.StringIO(out))) == 40 > len(unseen) > 0


def test_evaluate_matches_the_python_api(work):
    d, df, _ = work
    code, out, err = run("evaluate", "model.npz", "test.csv", "--json", "-k", "5", cwd=d)
    assert code == 0, err
    got = json.loads(out)
    learn = load_learner(d / "model.npz")
    test = df.iloc[:300]
    preds, targs = learn.get_preds(dl=learn.dls.test_dl(test[["uid", "movie", "stars"]]))
    assert got["rows"] == 300 and got["skipped_unknown"] == 0
    assert got["mse"] == pytest.approx(float(np.mean((preds - targs[:, 0]) ** 2)), rel=1e-6)
    assert got["rmse"] == pytest.approx(got["mse"] ** 0.5)
    assert got["mae"] == pytest.approx(float(np.mean(np.abs(preds - targs[:, 0]))), rel=1e-6)
    for key in ("precision@5", "recall@5", "ndcg@5", "map@5"):
        assert 0 <= got[key] <= 1
    assert 0 < got["ranked_users"] <= 60
    # plain text, no ranking
    code, out, _ = run("evaluate", "model.npz", "test.csv", "--no-ranking", cwd=d)
    assert code == 0 and [ln.split()[0] for ln in out.splitlines()] == ["rows", "skipped_unknown", "mse",
                                                                        "rmse", "mae"]


def test_evaluate_unknown_ids(work):
    d, df, _ = work
    extra = pd.concat([df.iloc[:50], pd.DataFrame({"uid": [999], "movie": ["m01"], "stars": [4], "when": [0]})])
    extra.to_csv(d / "extra.csv", index=False)
    code, out, err = run("evaluate", "model.npz", "extra.csv", "--json", cwd=d)
    assert code == 0, err
    assert json.loads(out)["rows"] == 50 and json.loads(out)["skipped_unknown"] == 1
    one_line_error(run("evaluate", "model.npz", "extra.csv", "--unknown", "error", cwd=d), 1,
                   "collabc evaluate", "1 row(s) have a user or item the model does not know", "user 999")


def test_evaluate_refuses_an_implicit_model_with_a_pointer_to_ranking(work):
    "An ALS/BPR export scores, it does not predict ratings: a loss on a ratings file would be a wrong answer."
    from collabc import CollabDataLoaders, implicit_learner
    d, df, _ = work
    dls = CollabDataLoaders.from_df(df[["uid", "movie"]], implicit=True, seed=0)
    learn = implicit_learner(dls, "als", n_factors=4, seed=0)
    learn.fit(1)
    learn.export(d / "als.npz")
    one_line_error(run("evaluate", "als.npz", "ratings.csv", cwd=d), 1, "collabc evaluate",
                   "implicit-feedback model", "ranking_metrics()")


# ----------------------------------------------------------------------------- data sets
def test_datasets_list(tmp_path):
    code, out, err = run("datasets", cwd=tmp_path, env={"COLLABC_DATA": str(tmp_path / "none")})
    assert code == 0, err
    rows = out.splitlines()
    assert rows[0].split() == ["name", "size", "where", "url"]
    assert [r.split()[0] for r in rows[1:]] == ["ml-100k", "ml-1m", "ml-10m", "ml-20m", "ml-25m", "ml-latest-small"]
    assert all("not downloaded" in r for r in rows[1:])
    assert "4.9 MB" in rows[1] and "https://files.grouplens.org/datasets/movielens/ml-100k.zip" in rows[1]


# ----------------------------------------------------------------------------- MovieLens-100k
def test_movielens_lesson_train_and_evaluate(tmp_path):
    ml = ml100k_path()
    env = {"COLLABC_DATA": str(ml.parent)}
    code, out, err = run("datasets", cwd=tmp_path, env=env)
    assert code == 0 and f"COLLABC_DATA: {ml}" in out.splitlines()[1]
    code, out, err = run("datasets", "fetch", "ml-100k", cwd=tmp_path, env=env)
    assert code == 0 and out.strip() == str(ml)

    code, out, err = run("lesson", "--data", ml.parent, "--epochs", "1", "--seed", "42", cwd=tmp_path,
                         env={"COLLABC_DATA": ""})
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == "100,000 ratings: 944 users, 1665 titles (with '#na#'); 1250 train batches of 64"
    assert lines[1].split() == ["epoch", "train_loss", "valid_loss", "time"]
    assert lines[-1].startswith("fit_one_cycle(1, 0.005, wd=0.1) took ")

    code, out, err = run("train", ml / "u1.base", "--format", "movielens", "-o", "ml.npz", "--epochs", "2",
                         "--seed", "0", "--y-range", "0", "5.5", cwd=tmp_path)
    assert code == 0, err
    assert out.startswith("80,000 ratings: 943 users, ")
    code, out, err = run("evaluate", "ml.npz", ml / "u1.test", "--format", "movielens", "--json", cwd=tmp_path)
    assert code == 0, err
    got = json.loads(out)
    assert got["rows"] + got["skipped_unknown"] == 20_000
    assert 0.8 < got["rmse"] < 1.1 and got["ranked_users"] > 400
