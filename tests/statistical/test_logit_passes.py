"""The Logit engine's pass (`_logit_passes`): chunked sums equal the same sums formed in one piece."""

import numpy as np
import pytest
import scipy.special

from keras_models.statistical import LogisticRegression, _logit_passes
from keras_models.statistical._logit_passes import binary_statistics, multinomial_statistics, newton_pass


@pytest.fixture
def binary_data():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(1001, 5))  # 1001 rows: every chunk size below leaves a partial last chunk
    y = (rng.uniform(size=1001) < scipy.special.expit(X @ [0.9, -0.4, 0.2, 0.0, 0.6] - 0.3)).astype(float)
    return X, y, np.array([-0.25, 0.8, -0.5, 0.3, 0.1, 0.45])  # intercept first


def _one_piece(design, y, beta):
    """The sums of a binary Logit formed at once from the whole (n, p) design."""
    eta = design @ beta
    p = scipy.special.expit(eta)
    loglik = np.sum(y * eta - np.logaddexp(0.0, eta))
    return loglik, design.T @ (y - p), design.T @ (design * (p * (1 - p))[:, None]), np.max(np.abs(y - p))


def _relative(a, b):
    return float(np.max(np.abs(np.asarray(a) - b)) / np.max(np.abs(b)))


@pytest.mark.parametrize("chunk_rows", [1, 7, 64, 333, 1000, 1001, 5000])
def test_chunked_binary_sums_equal_one_piece(binary_data, chunk_rows):
    X, y, beta = binary_data
    design = np.column_stack([np.ones(len(X)), X])
    loglik, score, information, worst = _one_piece(design, y, beta)
    for sums in (binary_statistics(X, y, beta, constant=True, chunk_rows=chunk_rows),  # the ones column implied
                 binary_statistics(design, y, beta, chunk_rows=chunk_rows)):  # stored
        assert _relative(sums[0], loglik) < 1e-13
        assert _relative(sums[1], score) < 1e-13
        assert _relative(sums[2], information) < 1e-13
        assert np.array_equal(sums[2], sums[2].T)
        assert abs(sums[3] - worst) < 1e-15 and sums[4] == 1001.0


def test_lanes_and_batches_add_up_to_one_piece(binary_data):
    X, y, beta = binary_data
    loglik, score, information, _ = _one_piece(np.column_stack([np.ones(len(X)), X]), y, beta)
    assert [len(block[0]) for block in _logit_passes._lanes(X, y, 100)] == [500, 501]  # two threads
    assert len(_logit_passes._lanes(X, y, 501)) == 1  # too few rows to share
    whole = newton_pass([(X, y)], binary_statistics, beta, constant=True, chunk_rows=100)
    streamed = newton_pass(((X[a:b], y[a:b]) for a, b in [(0, 10), (10, 640), (640, 1001)]), binary_statistics,
                           beta, constant=True, chunk_rows=64)
    for sums in (whole, streamed):
        assert _relative(sums[0], loglik) < 1e-13 and _relative(sums[1], score) < 1e-13
        assert _relative(sums[2], information) < 1e-13 and sums[4] == 1001.0


def test_log_likelihood_survives_probabilities_that_underflow():
    X = np.array([[800.0], [-900.0], [1.0]])
    y = np.array([0.0, 1.0, 1.0])  # the first two outcomes have probability exp(-800), exp(-900)
    loglik, score, _, worst, _ = binary_statistics(X, y, np.array([1.0]))
    np.testing.assert_allclose(loglik, -800.0 - 900.0 - np.log1p(np.exp(-1.0)), rtol=1e-15)
    np.testing.assert_allclose(score, [-800.0 - 900.0 + (1 - scipy.special.expit(1.0))], rtol=1e-15)
    assert worst == 1.0


def test_chunked_multinomial_sums_equal_one_piece():
    rng = np.random.default_rng(5)
    X = rng.normal(size=(301, 3))
    design = np.column_stack([np.ones(len(X)), X])
    classes = rng.integers(0, 3, size=301)
    Y = np.eye(3)[classes][:, 1:]  # (n, J), class 0 the reference
    beta = rng.normal(scale=0.5, size=(2, 4))
    eta = np.column_stack([np.zeros(301), design @ beta.T])
    P = scipy.special.softmax(eta, axis=1)[:, 1:]
    W = np.einsum("nj,jl->njl", P, np.eye(2)) - P[:, :, None] * P[:, None, :]
    information = np.einsum("njl,na,nb->jalb", W, design, design)
    loglik = np.sum(eta[np.arange(301), classes] - scipy.special.logsumexp(eta, axis=1))
    for chunk_rows in (1, 50, 301, 1000):
        sums = multinomial_statistics(X, Y, beta, constant=True, chunk_rows=chunk_rows)
        assert _relative(sums[0], loglik) < 1e-13
        assert _relative(sums[1], (Y - P).T @ design) < 1e-13
        assert _relative(sums[2], information) < 1e-13 and sums[4] == 301.0


def test_fit_uses_float64_features_in_place(binary_data):
    X, y, _ = binary_data
    model = LogisticRegression().fit(X, y)
    assert np.shares_memory(model.design_.X, X)  # the intercept is implied, not prepended to a copy
    explicit = LogisticRegression(fit_intercept=False, batch_size=100).fit(np.column_stack([np.ones(len(X)), X]), y)
    np.testing.assert_allclose(explicit.params_.to_numpy(), model.params_.to_numpy(), rtol=1e-12)
    np.testing.assert_allclose(explicit.bse_.to_numpy(), model.bse_.to_numpy(), rtol=1e-12)


def test_warm_start_from_a_sample_gives_the_fit_from_zero(monkeypatch):
    from keras_models.statistical import logistic

    rng = np.random.default_rng(9)
    X = rng.normal(size=(6000, 4))
    y = (rng.uniform(size=6000) < scipy.special.expit(X @ [0.7, -0.3, 0.2, 0.5] + 0.4)).astype(float)
    from_zero = LogisticRegression().fit(X, y)  # 6000 rows: below _SAMPLE_FROM_ROWS
    monkeypatch.setattr(logistic, "_SAMPLE_FROM_ROWS", 1000)
    monkeypatch.setattr(logistic, "_SAMPLE_EVERY", 8)
    warm = LogisticRegression().fit(X, y)
    assert warm.n_iter_ < from_zero.n_iter_
    assert "started from the fit on 1 row in 8" in str(warm.summary())
    assert "started from" not in str(from_zero.summary())
    np.testing.assert_allclose(warm.params_, from_zero.params_, rtol=1e-13)
    np.testing.assert_allclose(warm.bse_, from_zero.bse_, rtol=1e-9)
    np.testing.assert_allclose(warm.llf_, from_zero.llf_, rtol=1e-14)
    # A separated sample (every 8th row has y = 1 exactly where x1 > 0) gives no start: Newton starts from zero.
    y_separated = y.copy()
    y_separated[::8] = (X[::8, 0] > 0).astype(float)
    separated = LogisticRegression().fit(X, y_separated)
    assert "started from" not in str(separated.summary())
    monkeypatch.setattr(logistic, "_SAMPLE_FROM_ROWS", 10**9)
    np.testing.assert_allclose(separated.params_, LogisticRegression().fit(X, y_separated).params_, rtol=1e-13)


def test_newton_drops_a_start_worse_than_zero(binary_data):
    from keras_models.statistical.logistic import newton

    X, y, _ = binary_data
    names = [f"c{j}" for j in range(6)]

    def sums(beta):
        return newton_pass([(X, y)], binary_statistics, beta, constant=True)

    from_zero = newton(sums, np.zeros(6), names, max_iter=35, tol=1e-10, verbose=False)
    far = newton(sums, np.full(6, 30.0), names, max_iter=35, tol=1e-10, verbose=False, zero_loglik=-1001 * np.log(2))
    assert from_zero["from_start"] and not far["from_start"]
    assert far["iterations"] == from_zero["iterations"]
    np.testing.assert_array_equal(far["beta"], from_zero["beta"])


def _pass_in_child(X, y, beta, queue):
    queue.put(newton_pass([(X, y)], binary_statistics, beta, constant=True, chunk_rows=100)[0])


def test_a_forked_process_gets_its_own_threads(binary_data):
    import multiprocessing

    X, y, beta = binary_data
    loglik = newton_pass([(X, y)], binary_statistics, beta, constant=True, chunk_rows=100)[0]  # the pool starts here
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_pass_in_child, args=(X, y, beta, queue))
    child.start()
    child.join(timeout=120)
    assert child.exitcode == 0  # the child must not wait on threads of its parent's pool, which it does not have
    assert queue.get(timeout=1) == loglik
