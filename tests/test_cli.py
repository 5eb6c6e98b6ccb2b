"""The sk-deepunsup command: it clusters files, and refuses bad ones on one line."""

import io
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.base import BaseEstimator, ClusterMixin
from sklearn.datasets import make_blobs

import sk_deepunsup
from sk_deepunsup import AutoencoderRecommender, DeepAutoencoder, DeepEmbeddingClusterer
from sk_deepunsup import _cli
from sk_deepunsup._cli import main

PRODUCT_CLUSTERER = _cli.make_clusterer  # before the fixture swaps it for a small one
PRODUCT_RECOMMENDER = _cli.make_recommender


@pytest.fixture(autouse=True)
def small_clusterer(monkeypatch):
    """Fit a tiny network instead of the default (500, 500) one, so tests stay fast."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: threads only add overhead on a busy CPU
    built = []

    def make(n_clusters, seed, verbose, **options):
        built.append(dict(n_clusters=n_clusters, seed=seed, verbose=verbose))
        options.pop("n_samples")
        if any(v is not None for v in options.values()):
            built.append(options)
        return DeepEmbeddingClusterer(
            n_clusters=n_clusters,
            autoencoder=DeepAutoencoder(hidden_layer_sizes=(16,), max_iter=20),
            n_init=2,
            max_iter=10,
            random_state=seed,
            verbose=verbose,
        )

    def make_recommender(seed, verbose, **options):
        built.append(dict(seed=seed, verbose=verbose, **options))
        return AutoencoderRecommender(n_components=8, hidden_layer_sizes=(32,), max_iter=30,
                                      random_state=seed, verbose=verbose,
                                      threshold=options["threshold"])

    monkeypatch.setattr(_cli, "make_clusterer", make)
    monkeypatch.setattr(_cli, "make_recommender", make_recommender)
    yield built
    torch.set_num_threads(threads)


@pytest.fixture
def blobs():
    X, _ = make_blobs(n_samples=60, n_features=3, centers=3, random_state=0)
    return pd.DataFrame(X, columns=["a", "b", "c"])


@pytest.fixture
def csv(tmp_path, blobs):
    path = tmp_path / "blobs.csv"
    blobs.to_csv(path, index=False)
    return path


def labels_of(text, n_rows, k, id_column="row"):
    out = pd.read_csv(io.StringIO(text))
    assert list(out.columns) == [id_column, "cluster"]
    if id_column == "row":
        assert out["row"].tolist() == list(range(n_rows))
    assert len(out) == n_rows
    assert out["cluster"].dtype.kind == "i"
    assert out["cluster"].between(0, k - 1).all()
    return out["cluster"].to_numpy()


def fails(capsys, argv, code=2):
    """Run argv, expect exit status code and a one-line error; return the message."""
    assert main(argv) == code
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("sk-deepunsup: error: ")
    assert "Traceback" not in captured.err
    return lines[0]


# -- it clusters --------------------------------------------------------------------


def test_clusters_csv_to_stdout_quietly(capsys, csv, small_clusterer):
    assert main(["cluster", str(csv), "--n-clusters", "3", "--seed", "1"]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""  # no progress, status or warnings without --verbose
    labels = labels_of(captured.out, 60, 3)
    assert len(np.unique(labels)) > 1
    assert small_clusterer == [dict(n_clusters=3, seed=1, verbose=False)]


def test_default_k_is_8_with_data_and_seed_0(capsys, csv, small_clusterer):
    assert main(["cluster", str(csv)]) == 0
    labels_of(capsys.readouterr().out, 60, 8)
    assert small_clusterer == [dict(n_clusters=8, seed=0, verbose=False)]


def test_parquet_and_output_file_give_the_same_labels_as_csv(capsys, tmp_path, csv, blobs):
    for ext in ["PARQUET", "pq"]:  # extensions are case-insensitive
        blobs.to_parquet(tmp_path / f"blobs.{ext}")
    out = tmp_path / "labels.csv"
    assert main(["cluster", str(csv), "-k", "3"]) == 0
    from_csv = labels_of(capsys.readouterr().out, 60, 3)
    assert main(["cluster", str(tmp_path / "blobs.PARQUET"), "-k", "3", "-o", str(out)]) == 0
    assert capsys.readouterr() == ("", "")
    np.testing.assert_array_equal(labels_of(out.read_text(), 60, 3), from_csv)
    assert main(["cluster", str(tmp_path / "blobs.pq"), "-k", "3"]) == 0
    np.testing.assert_array_equal(labels_of(capsys.readouterr().out, 60, 3), from_csv)


def test_drop_leaves_columns_out(capsys, tmp_path, blobs):
    path = tmp_path / "mixed.csv"
    blobs.assign(name=[f"row{i}" for i in range(60)], id=range(60)).to_csv(path, index=False)
    assert main(["cluster", str(path), "-k", "3", "--drop", "name", "id"]) == 0
    labels_of(capsys.readouterr().out, 60, 3)
    assert main(["cluster", str(path), "-k", "3", "--drop", "name", "--drop", "id"]) == 0
    labels_of(capsys.readouterr().out, 60, 3)
    assert main(["cluster", "-k", "3", "--drop", "name", "id", str(path)]) == 0
    labels_of(capsys.readouterr().out, 60, 3)


def test_verbose_shows_progress_and_status_on_stderr(capsys, csv, tmp_path):
    out = tmp_path / "labels.csv"
    assert main(["cluster", str(csv), "-k", "3", "--verbose", "--output", str(out)]) == 0
    captured = capsys.readouterr()
    assert captured.out == ""
    assert f"read 60 rows x 3 columns from '{csv}'" in captured.err
    assert "fitting DeepEmbeddingClusterer(n_clusters=3) ..." in captured.err
    assert f"wrote 60 labels to {out}" in captured.err
    assert "DeepAutoencoder:" in captured.err  # the progress bars
    assert "DeepEmbeddingClusterer:" in captured.err
    labels_of(out.read_text(), 60, 3)


def test_without_data_compares_with_kmeans_on_digits(capsys, tmp_path, small_clusterer):
    out = tmp_path / "digits.csv"
    assert main(["cluster", "--output", str(out)]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    assert small_clusterer == [dict(n_clusters=10, seed=0, verbose=False)]
    lines = captured.out.splitlines()
    assert lines[1].split() == ["method", "ACC", "NMI", "fit", "s"]
    assert lines[2].startswith("DeepEmbeddingClusterer") and lines[3].startswith("KMeans")
    for line in lines[2:]:
        acc, nmi, seconds = map(float, line.split()[1:])
        assert 0 < acc <= 1 and 0 < nmi <= 1 and seconds >= 0
    assert float(lines[3].split()[1]) > 0.6  # k-means on digits
    labels_of(out.read_text(), 1797, 10)


def test_the_product_fits_the_default_clusterer():
    clusterer = PRODUCT_CLUSTERER(3, 5, True)
    expected = DeepEmbeddingClusterer(n_clusters=3, random_state=5, verbose=True)
    assert clusterer.get_params() == expected.get_params()


def test_version_and_help(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"sk-deepunsup {sk_deepunsup.__version__}"
    assert main(["cluster", "--help"]) == 0
    help_text = capsys.readouterr().out
    for option in ["DATA", "--n-clusters", "--output", "--seed", "--verbose", "--drop",
                   "--max-iter", "--hidden-layer-sizes", "--n-components", "--quiet"]:
        assert option in help_text
    assert main(["recommend", "--help"]) == 0
    help_text = capsys.readouterr().out
    for option in ["RATINGS", "--user-col", "--item-col", "--rating-col", "--n",
                   "--threshold", "most popular"]:
        assert option in help_text


def test_python_m_runs_the_command():
    result = subprocess.run(
        [sys.executable, "-m", "sk_deepunsup", "--help"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: sk-deepunsup")
    assert "cluster" in result.stdout


def python_prints(code):
    """What a fresh Python process running ``code`` prints (it must exit 0)."""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_help_version_and_usage_errors_load_neither_torch_nor_scikit_learn():
    # the estimators are imported by the commands that fit them, so the shell
    # answers --help, --version and a typo at once
    code = (
        "import sys\n"
        "from sk_deepunsup._cli import main\n"
        "codes = [main(['--help']), main(['--version']), main(['cluster', '--bogus'])]\n"
        "heavy = sorted(m for m in ('torch', 'sklearn', 'pandas') if m in sys.modules)\n"
        "print(codes, heavy)\n"
    )
    assert python_prints(code).splitlines()[-1] == "[0, 0, 2] []"


def test_the_package_imports_its_public_names_on_first_use():
    code = (
        "import sys, sk_deepunsup\n"
        "before = 'torch' in sys.modules\n"
        "from sk_deepunsup import DeepAutoencoder, metrics\n"
        "print(before, 'torch' in sys.modules, DeepAutoencoder.__module__, metrics.__name__)\n"
    )
    assert python_prints(code).split() == [
        "False", "True", "sk_deepunsup._autoencoder", "sk_deepunsup.metrics"
    ]
    assert set(sk_deepunsup.__all__) <= set(dir(sk_deepunsup))
    for name in sk_deepunsup.__all__:
        assert getattr(sk_deepunsup, name) is not None
    with pytest.raises(AttributeError, match="has no attribute 'DeepAutoEncoder'"):
        sk_deepunsup.DeepAutoEncoder


# -- it refuses bad input on one line ------------------------------------------------


def test_non_numeric_columns_are_named(capsys, tmp_path, blobs):
    path = tmp_path / "mixed.csv"
    blobs.assign(species="x", colour="red").to_csv(path, index=False)
    message = fails(capsys, ["cluster", str(path), "-k", "3"])
    assert "'species'" in message and "'colour'" in message and "--drop" in message
    assert "'a'" not in message


def test_dropping_an_unknown_column_names_it(capsys, csv):
    message = fails(capsys, ["cluster", str(csv), "--drop", "a", "nope"])
    assert "'nope'" in message and "its columns are 'a', 'b', 'c'" in message


def test_missing_file(capsys, tmp_path):
    message = fails(capsys, ["cluster", str(tmp_path / "absent.csv")])
    assert "absent.csv" in message and "does not exist" in message


@pytest.mark.parametrize("name, content", [
    ("empty.csv", b""), ("empty.parquet", b""), ("header_only.csv", b"a,b\n"),
])
def test_empty_file(capsys, tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    assert str(path) in fails(capsys, ["cluster", str(path)])


def test_unreadable_file(capsys, tmp_path):
    path = tmp_path / "broken.csv"
    path.write_bytes(b"a,b\n1,2\n3,4,5,6\n")
    assert "cannot read DATA" in fails(capsys, ["cluster", str(path), "-k", "1"])


def test_too_few_rows_for_k(capsys, tmp_path, blobs):
    path = tmp_path / "few.csv"
    blobs.head(5).to_csv(path, index=False)
    message = fails(capsys, ["cluster", str(path)])  # default K = 8
    assert "5 row(s)" in message and "--n-clusters 8" in message


def test_unknown_extension_lists_the_supported_ones(capsys, tmp_path, blobs):
    path = tmp_path / "blobs.txt"
    blobs.to_csv(path, index=False)
    message = fails(capsys, ["cluster", str(path)])
    assert "'.txt'" in message and ".csv, .parquet, .pq" in message


def test_missing_values_are_named(capsys, tmp_path, blobs):
    path = tmp_path / "nan.csv"
    blobs.assign(b=blobs["b"].where(blobs.index != 3)).to_csv(path, index=False)
    message = fails(capsys, ["cluster", str(path), "-k", "3"])
    assert "NaN" in message and "'b'" in message and "'a'" not in message


def test_output_into_a_missing_directory_is_refused_before_fitting(capsys, csv, tmp_path):
    message = fails(capsys, ["cluster", str(csv), "-o", str(tmp_path / "no" / "out.csv")])
    assert "does not exist" in message


def test_usage_errors_exit_2(capsys):
    assert main([]) == 2
    assert main(["cluster", "--n-clusters", "0"]) == 2
    assert "--n-clusters" in capsys.readouterr().err


def test_fit_errors_exit_1_and_interrupts_exit_130(capsys, csv, monkeypatch):
    def broken(*args, **options):
        raise ValueError("bad\nthing")

    monkeypatch.setattr(_cli, "make_clusterer", broken)
    assert fails(capsys, ["cluster", str(csv)], code=1) == "sk-deepunsup: error: bad thing"

    def interrupted(*args, **options):
        raise KeyboardInterrupt

    monkeypatch.setattr(_cli, "make_clusterer", interrupted)
    assert main(["cluster", str(csv)]) == 130
    assert capsys.readouterr().err == "sk-deepunsup: interrupted\n"


def test_a_fit_that_ctrl_c_ended_writes_nothing_and_exits_130(capsys, csv, monkeypatch, tmp_path):
    class Stopped(ClusterMixin, BaseEstimator):
        """A clusterer whose fit Ctrl-C ended: usable, with interrupted_ set."""

        def fit(self, X, y=None):
            self.labels_ = np.zeros(len(X), dtype=np.int64)
            self.interrupted_ = True
            return self

    monkeypatch.setattr(_cli, "make_clusterer", lambda *args, **options: Stopped())
    out = tmp_path / "labels.csv"
    assert main(["cluster", str(csv), "-o", str(out)]) == 130
    assert capsys.readouterr().err.endswith("sk-deepunsup: interrupted\n")
    assert not out.exists()


# -- issue 14: ids, delimiters, network options, time estimates -----------------------


def test_pandas_index_column_is_an_id_not_a_feature(capsys, tmp_path, blobs):
    path = tmp_path / "indexed.csv"
    blobs.set_axis([f"s{i}" for i in range(60)]).to_csv(path)  # header starts with ""
    assert main(["cluster", str(path), "-k", "3", "--verbose"]) == 0
    captured = capsys.readouterr()
    assert "read 60 rows x 3 columns" in captured.err
    out = pd.read_csv(io.StringIO(captured.out))
    assert out["index"].tolist() == [f"s{i}" for i in range(60)]
    labels_of(captured.out, 60, 3, id_column="index")
    blobs.to_csv(path)  # the default RangeIndex: "Unnamed: 0" when read back
    assert main(["cluster", str(path), "-k", "3"]) == 0
    out = pd.read_csv(io.StringIO(capsys.readouterr().out))
    assert out.columns.tolist() == ["index", "cluster"] and out["index"].tolist() == list(range(60))


def test_id_like_first_column_is_written_beside_the_labels(capsys, tmp_path, blobs):
    path = tmp_path / "ids.csv"
    blobs.insert(0, "sample_id", np.arange(100, 160))
    blobs.to_csv(path, index=False)
    assert main(["cluster", str(path), "-k", "3"]) == 0
    out = pd.read_csv(io.StringIO(capsys.readouterr().out))
    assert out["sample_id"].tolist() == list(range(100, 160))
    labels_of(out.to_csv(index=False), 60, 3, id_column="sample_id")


def test_semicolon_and_tab_separated_files_are_sniffed(capsys, tmp_path, csv, blobs):
    assert main(["cluster", str(csv), "-k", "3"]) == 0
    expected = labels_of(capsys.readouterr().out, 60, 3)
    semicolon = tmp_path / "semi.csv"
    blobs.to_csv(semicolon, sep=";", decimal=",", index=False)  # European style
    assert main(["cluster", str(semicolon), "-k", "3"]) == 0
    np.testing.assert_array_equal(labels_of(capsys.readouterr().out, 60, 3), expected)
    tab = tmp_path / "tab.csv"
    blobs.to_csv(tab, sep="\t", index=False)
    assert main(["cluster", str(tab), "-k", "3"]) == 0
    np.testing.assert_array_equal(labels_of(capsys.readouterr().out, 60, 3), expected)


def test_network_options_reach_the_clusterer(capsys, csv, small_clusterer):
    argv = ["cluster", str(csv), "-k", "3", "--max-iter", "7", "--hidden-layer-sizes",
            "32,16", "--n-components", "4"]
    assert main(argv) == 0
    labels_of(capsys.readouterr().out, 60, 3)
    assert small_clusterer[1] == dict(max_iter=7, hidden_layer_sizes=(32, 16), n_components=4)
    product = PRODUCT_CLUSTERER(3, 0, False, max_iter=7, hidden_layer_sizes=(32, 16),
                                n_components=4, n_samples=60)
    assert product.max_iter == 7
    emb = product.embedding  # the default (neighbour) route, reshaped
    assert (emb.max_iter, emb.hidden_layer_sizes, emb.n_components) == (7, (32, 16), 4)
    assert emb.loss == "umap" and emb.min_dist == 0.0
    assert main(["cluster", str(csv), "--hidden-layer-sizes", "32,x"]) == 2
    assert "positive integers separated by commas" in capsys.readouterr().err


@pytest.fixture
def ratings(tmp_path):
    """Two taste groups over 20 films; user 'z' rated only two films, badly."""
    rng = np.random.RandomState(0)
    rows = []
    for u in range(60):
        block = np.arange(10) if u % 2 else np.arange(10, 20)
        for film in rng.choice(block, 5, replace=False):
            rows.append((f"u{u}", f"film{film}", rng.choice([4, 5])))
    rows += [("z", "film0", 1), ("z", "film11", 2)]
    path = tmp_path / "ratings.csv"
    pd.DataFrame(rows, columns=["who", "what", "stars"]).to_csv(path, index=False)
    return path


def test_recommend_writes_user_rank_item(capsys, ratings, small_clusterer):
    argv = ["recommend", str(ratings), "--user-col", "who", "--item-col", "what",
            "--rating-col", "stars", "--threshold", "4", "--n", "3"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    out = pd.read_csv(io.StringIO(captured.out))
    assert out.columns.tolist() == ["user", "rank", "item"]
    assert len(out) == 61 * 3 and out["rank"].tolist()[:3] == [1, 2, 3]
    table = pd.read_csv(ratings)
    for user, group in out.groupby("user"):
        seen = set(table.loc[(table.who == user) & (table.stars >= 4), "what"])
        assert not seen & set(group["item"])
    liked = table[table.stars >= 4]["what"].value_counts()
    z = out[out.user == "z"]["item"].tolist()  # no positive: the most popular films
    assert z == sorted(liked.index, key=lambda f: (-liked[f], sorted(liked.index).index(f)))[:3]
    assert small_clusterer == [dict(seed=0, verbose=False, threshold=4.0, max_iter=None,
                                    hidden_layer_sizes=None, n_components=None)]


def test_recommend_refuses_unknown_columns_and_too_many_items(capsys, ratings):
    message = fails(capsys, ["recommend", str(ratings), "--user-col", "user",
                             "--item-col", "what"])
    assert "--user-col 'user'" in message and "'who'" in message
    message = fails(capsys, ["recommend", str(ratings), "--user-col", "who",
                             "--item-col", "what", "--n", "21"])
    assert "--n 21" in message and "20 items" in message


def test_the_product_recommender_has_the_defaults():
    rec = PRODUCT_RECOMMENDER(3, False, threshold=None, max_iter=None,
                              hidden_layer_sizes=None, n_components=None)
    assert rec.get_params() == AutoencoderRecommender(random_state=3).get_params()
    rec = PRODUCT_RECOMMENDER(3, False, threshold=4.0, max_iter=5,
                              hidden_layer_sizes=(64,), n_components=None)
    assert (rec.threshold, rec.max_iter, rec.hidden_layer_sizes) == (4.0, 5, (64,))


def test_embedding_settings_start_from_the_clusterers_neighbor_embedding():
    from sk_deepunsup._pretraining import clustering_embedding

    chosen = PRODUCT_CLUSTERER(3, 0, False, n_components=5).embedding
    assert chosen.get_params() == clustering_embedding().set_params(n_components=5).get_params()


def test_explain_prints_each_cluster_and_writes_its_table(capsys, tmp_path, blobs):
    """--explain names the columns that set each cluster apart and its typical row ids."""
    path = tmp_path / "blobs.csv"
    blobs.to_csv(path, index=False)
    out = tmp_path / "labels.csv"
    assert main(["cluster", str(path), "-k", "3", "-o", str(out), "-q", "--explain"]) == 0
    printed = capsys.readouterr().out.strip().splitlines()
    assert len(printed) == 3
    assert all(line.startswith(f"cluster {c}: ") and "typical row" in line
               for c, line in enumerate(printed))
    table = pd.read_csv(tmp_path / "labels.clusters.csv")
    assert list(table.columns) == ["cluster", "rank", "feature", "direction", "score",
                                   "mean_in", "mean_out", "typical_row"]
    assert set(table["feature"]) == {"a", "b", "c"}
    labels = pd.read_csv(out)["cluster"]
    for _, row in table[table["rank"] == 1].iterrows():  # the direction matches the data
        inside = blobs.loc[labels == row["cluster"], row["feature"]].mean()
        outside = blobs.loc[labels != row["cluster"], row["feature"]].mean()
        assert (inside > outside) == (row["direction"] == "higher")
    for cluster, rows in table.groupby("cluster")["typical_row"].first().items():
        assert all(labels[int(i)] == cluster for i in rows.split())


def test_explain_with_labels_on_stdout_prints_the_summary_on_stderr(capsys, csv):
    assert main(["cluster", str(csv), "-k", "3", "-q", "--explain"]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("row,cluster")
    assert "cluster 0:" not in captured.out
    assert captured.err.count("typical row") == 3
