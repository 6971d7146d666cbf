"""Streaming Logit: tf.data datasets and directories of .npz / .csv files give the in-memory numbers."""

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
import tensorflow as tf

from keras_models.statistical import LogisticRegression


@pytest.fixture
def logit_data():
    rng = np.random.default_rng(7)
    X = rng.normal(size=(1000, 4))
    p = 1 / (1 + np.exp(-(X @ [0.8, -0.5, 0.3, 0.0] + 0.4)))
    return X, (rng.uniform(size=1000) < p).astype(float)


def _write_npz(folder, X, y, cuts):
    folder.mkdir()
    for index, (start, stop) in enumerate(zip(cuts[:-1], cuts[1:])):
        np.savez(folder / f"part{index:03d}.npz", X=X[start:stop], y=y[start:stop])
    return folder


def _assert_same_fit(streamed, reference):
    np.testing.assert_allclose(streamed.params_, reference.params, rtol=1e-9)
    np.testing.assert_allclose(streamed.bse_, reference.bse, rtol=1e-9)
    np.testing.assert_allclose([streamed.llf_, streamed.llnull_], [reference.llf, reference.llnull], rtol=1e-9)
    assert streamed.nobs_ == reference.nobs


def test_npz_directory_matches_statsmodels(logit_data, tmp_path):
    X, y = logit_data
    folder = _write_npz(tmp_path / "parts", X, y, [0, 137, 500, 501, 1000])  # uneven files
    streamed = LogisticRegression(batch_size=256).fit_stream(folder)  # chunks cut across files
    _assert_same_fit(streamed, sm.Logit(y, sm.add_constant(X)).fit(disp=0))
    assert list(streamed.params_.index) == ["const", "x1", "x2", "x3", "x4"]
    assert streamed.converged_


def test_csv_files_and_tf_data_match_in_memory_fit(logit_data, tmp_path):
    X, y = logit_data
    columns = ["age", "dose", "score", "noise"]
    folder = tmp_path / "csv"
    folder.mkdir()
    for index, part in enumerate(np.array_split(np.arange(len(y)), 3)):
        frame = pd.DataFrame(X[part], columns=columns).assign(event=y[part])
        frame.to_csv(folder / f"rows{index}.csv", index=False)
    in_memory = LogisticRegression().fit(pd.DataFrame(X, columns=columns), pd.Series(y, name="event"))
    from_csv = LogisticRegression(batch_size=300).fit_stream(folder, target="event")
    assert list(from_csv.params_.index) == ["const", *columns]
    np.testing.assert_allclose(from_csv.params_, in_memory.params_, rtol=1e-10)
    np.testing.assert_allclose(from_csv.bse_, in_memory.bse_, rtol=1e-10)
    dataset = tf.data.Dataset.from_tensor_slices((X, y)).batch(128)
    from_dataset = LogisticRegression(batch_size=200).fit_stream(dataset)
    np.testing.assert_allclose(from_dataset.params_.to_numpy(), in_memory.params_.to_numpy(), rtol=1e-10)
    assert "Logit Regression Results" in str(from_dataset.summary())


def test_bad_stream_sources_are_named(logit_data, tmp_path):
    X, y = logit_data
    with pytest.raises(ValueError, match="does not exist"):
        LogisticRegression().fit_stream(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no .npz or .csv files"):
        LogisticRegression().fit_stream(tmp_path / "empty")
    folder = _write_npz(tmp_path / "parts", X, y, [0, 500, 1000])
    (folder / "part999.npz").write_bytes(b"not a zip archive")
    with pytest.raises(ValueError, match=r"part999.npz' is not a readable .npz file"):
        LogisticRegression().fit_stream(folder)
    broken = tmp_path / "broken"
    broken.mkdir()
    X_bad = X.copy()
    X_bad[520, 2] = np.nan
    np.savez(broken / "a.npz", X=X[:500], y=y[:500])
    np.savez(broken / "b.npz", X=X_bad[500:], y=y[500:])
    with pytest.raises(ValueError, match=r"X of 'b.npz' \(stream rows from 500\) contains NaN in column 'x3' at row 20"):
        LogisticRegression().fit_stream(broken)
    labels = tmp_path / "labels"
    labels.mkdir()
    np.savez(labels / "a.npz", X=X, y=np.where(np.arange(1000) == 3, 2.0, y))
    with pytest.raises(ValueError, match=r"y must be binary .* row 3 of 'a.npz' \(stream row 3\) has 2"):
        LogisticRegression().fit_stream(labels)
    csv = tmp_path / "c.csv"
    pd.DataFrame(X, columns=list("abcd")).assign(y=y).to_csv(csv, index=False)
    with pytest.raises(ValueError, match="no target column 'event'"):
        LogisticRegression().fit_stream(csv, target="event")


def test_csv_with_a_header_and_no_rows_says_so(logit_data, tmp_path):
    X, y = logit_data
    empty = tmp_path / "empty.csv"
    empty.write_text("a,b,c,d,y\n")
    with pytest.raises(ValueError, match=r"empty.csv' has a header \(a, b, c, d, y\) but no rows"):
        LogisticRegression().fit_stream(empty)
    # In a folder, the empty file is named even when others hold data.
    folder = tmp_path / "parts"
    folder.mkdir()
    pd.DataFrame(X, columns=list("abcd")).assign(y=y).to_csv(folder / "a.csv", index=False)
    (folder / "b.csv").write_text("a,b,c,d,y\n")
    with pytest.raises(ValueError, match=r"b.csv' has a header .* but no rows"):
        LogisticRegression().fit_stream(folder)
