"""What a model file may not choose, and what loading one may cost."""

import hashlib
import json
import os
import warnings
import zipfile

import numpy as np
import pytest
from sklearn.datasets import load_wine
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sk_deepunsup import DeepAutoencoder, DeepEmbeddingClusterer, load, save

MEMBERS = ("estimator.json", "arrays.npz", "weights.safetensors")


@pytest.fixture(scope="module")
def X():
    return StandardScaler().fit_transform(load_wine().data).astype(np.float32)


def quietly(fit, *args):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fit(*args)


def small_ae(**kw):
    return DeepAutoencoder(hidden_layer_sizes=(8,), max_iter=3, random_state=0, **kw)


@pytest.fixture(scope="module")
def ae(X):
    return quietly(small_ae().fit, X)


def forge_state(path, edit):
    """Edit estimator.json of a saved file and recompute its digests, as anyone can."""
    with zipfile.ZipFile(path) as zf:
        parts = {n: zf.read(n) for n in zf.namelist()}
    doc = json.loads(parts["estimator.json"])
    edit(doc["state"])
    parts["estimator.json"] = json.dumps(doc).encode()
    manifest = json.loads(parts["manifest.json"])
    manifest["sha256"] = {m: hashlib.sha256(parts[m]).hexdigest() for m in MEMBERS}
    parts["manifest.json"] = json.dumps(manifest).encode()
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in parts.items():
            zf.writestr(name, data)


# -- parameters that name places on the machine --------------------------------------


def test_a_file_never_chooses_the_clusterers_cache_directory(X, tmp_path):
    plant = tmp_path / "planted"
    est = DeepEmbeddingClusterer(n_clusters=3, autoencoder=small_ae(), embedding="autoencoder",
                                 max_iter=2, random_state=0)
    quietly(est.fit, X)
    path = tmp_path / "m.skdu"
    save(est, path)
    forge_state(path, lambda s: s.update(memory=str(plant)))
    with pytest.warns(UserWarning, match=r"memory='.*planted'.*never takes from a file.*"
                                         r"loads as memory=None"):
        loaded = load(path)
    assert loaded.memory is None
    np.testing.assert_array_equal(loaded.predict(X), est.predict(X))
    quietly(loaded.fit, X)  # the next fit caches nowhere
    assert not plant.exists()


def test_a_file_never_chooses_a_pipelines_cache_directory(X, ae, tmp_path):
    pipe = make_pipeline(StandardScaler().fit(X), ae)
    pipe.set_params(memory=str(tmp_path / "cache"))
    path = tmp_path / "p.skdu"
    save(pipe, path)
    with pytest.warns(UserWarning, match=r"Pipeline's memory=.* loads as memory=None"):
        loaded = load(path)
    assert loaded.memory is None
    np.testing.assert_array_equal(loaded.transform(X), pipe.transform(X))


def test_default_memory_loads_without_warning(X, ae, tmp_path):
    path = tmp_path / "p.skdu"
    save(make_pipeline(StandardScaler().fit(X), ae), path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load(path).memory is None
