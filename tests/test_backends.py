"""The shared model check on Keras' JAX and PyTorch backends: train there, ship through TensorFlow.

Each backend trains its models in one subprocess (`backend_worker.py`; the backends' workers run side
by side): output shape, one `fit` epoch with a finite loss and moved weights, a `.keras` file. Here,
under TensorFlow, every file reloads in safe mode and exports to TFLite and ONNX, with outputs equal to
the training backend's to 1e-5. The default suite checks one small model of every family; `-m slow`
checks every registered model. Under TensorFlow itself, each family's tests run the same checks
through `model_checks.check_model`.
"""

import pytest
from backend_checks import ATOL, WorkerRun, assert_trained, check_shipped
from model_cases import BACKENDS, CASES, DEFAULT, EXCLUDED

import keras_models

EVERY_MODEL = tuple(sorted(CASES))


@pytest.fixture(scope="module")
def trained(request, tmp_path_factory):
    """`trained(test, backend, name)` -> (the worker's result for `name`, the worker's folder).

    The first call for a test function starts one worker per backend among its selected tests, each
    training the models selected for it, so the backends train side by side while this process checks
    each model as soon as its worker has saved it.
    """
    runs = {}

    def get(test, backend, name):
        if (test, backend) not in runs:
            selected = {}
            for item in request.session.items:
                if getattr(item, "originalname", None) == test:
                    params = item.callspec.params
                    selected.setdefault(params["backend"], []).append(params["name"])
            for other, names in sorted(selected.items()):
                if (test, other) not in runs:
                    runs[test, other] = WorkerRun(other, names, tmp_path_factory.mktemp(f"{other}_worker"))
        run = runs[test, backend]
        return run.result(name, timeout=3000), run.out_dir

    yield get
    for run in runs.values():
        run.close()


def _params(names):
    """(backend, name) pairs, name by name, so that checks here follow both workers as they train."""
    params = []
    for name in names:
        for backend in BACKENDS:
            reason = EXCLUDED.get((backend, name))
            marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
            params.append(pytest.param(backend, name, marks=marks, id=f"{backend}-{name}"))
    return params


def _check(request, trained, backend, name, tmp_path):
    result, out_dir = trained(request.node.originalname, backend, name)
    assert_trained(result, name)
    differences = check_shipped(name, out_dir, tmp_path)
    assert set(differences) == {"keras", "tflite", "onnx"}
    assert max(differences.values()) <= ATOL


def test_every_registered_model_has_a_case():
    assert set(CASES) == {info.name for info in keras_models.list_models()}


def test_default_suite_covers_every_family():
    families = {info.family for info in keras_models.list_models()}
    assert {keras_models.get_model_info(name).family for name in DEFAULT} == families


def test_exclusions_are_few_and_explained():
    assert len(EXCLUDED) <= 4, f"{len(EXCLUDED)} models are excluded from the backend check; fix them"
    for (backend, name), reason in EXCLUDED.items():
        assert backend in BACKENDS and name in CASES, (backend, name)
        assert isinstance(reason, str) and reason.strip(), f"no reason given for excluding {name} on {backend}"


@pytest.mark.parametrize("backend, name", _params(DEFAULT))
def test_small_model_trains_on_backend_and_ships_through_tensorflow(backend, name, request, trained, tmp_path):
    _check(request, trained, backend, name, tmp_path)


@pytest.mark.slow
@pytest.mark.timeout(1800)  # a test waits for its model: JAX compiles the deepest steps for minutes
@pytest.mark.parametrize("backend, name", _params(EVERY_MODEL))
def test_every_model_trains_on_backend_and_ships_through_tensorflow(backend, name, request, trained, tmp_path):
    _check(request, trained, backend, name, tmp_path)
