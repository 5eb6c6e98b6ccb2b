"""What a model file may not choose, and what loading one may cost."""

import os
import warnings
import zipfile

import numpy as np
import pytest
from sklearn.datasets import load_wine
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from model_file_forgery import forge, rebuilt_devices, state, tensors_edit  # noqa: F401
from sk_deepunsup import DeepAutoencoder, DeepEmbeddingClusterer, load, save


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


# -- parameters that name places on the machine --------------------------------------


def test_a_file_never_chooses_the_clusterers_cache_directory(X, tmp_path):
    plant = tmp_path / "planted"
    est = DeepEmbeddingClusterer(n_clusters=3, autoencoder=small_ae(), embedding="autoencoder",
                                 max_iter=2, random_state=0)
    quietly(est.fit, X)
    path = tmp_path / "m.skdu"
    save(est, path)
    forge(path, tree=lambda d: state(d).update(memory=str(plant)))
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


# -- what must fit the network -----------------------------------------------------------


def optimizer_key(doc, moment):
    pairs = doc["state"]["_optimizer_state"]["v"]
    return next(v["key"] for k, v in pairs if k == moment)


@pytest.fixture
def saved(ae, tmp_path):
    path = tmp_path / "m.skdu"
    save(ae, path)
    return path


@pytest.mark.parametrize("moment", ["exp_avg", "exp_avg_sq"])
def test_optimizer_state_of_another_network_is_refused_at_load(saved, moment):
    import torch

    def shrink(tensors, doc):
        tensors[optimizer_key(doc, moment)] = torch.zeros(3)

    forge(saved, blobs=tensors_edit(shrink))
    with pytest.raises(ValueError, match=rf"optimizer state of DeepAutoencoder does not fit its "
                                         rf"network \(its {moment} has shape \[3\] and dtype "
                                         r"float32, the network module_ has [0-9]+ trainable") as err:
        load(saved)
    assert not str(err.value).endswith("..")


def test_optimizer_step_must_be_a_count(saved):
    def edit(doc):
        pairs = doc["state"]["_optimizer_state"]["v"]
        for pair in pairs:
            if pair[0] == "step":
                pair[1] = -5

    forge(saved, tree=edit)
    with pytest.raises(ValueError, match=r"its step is -5, not a count of steps\); the file is "
                                         r"corrupt or was edited\.$"):
        load(saved)


def test_integer_weights_are_refused_naming_their_dtype(saved):
    def to_int(tensors, doc):
        key = doc["modules"]["module_"]["encoder.linears.0.weight"]
        tensors[key] = tensors[key].to(dtype=__import__("torch").int32)

    forge(saved, blobs=tensors_edit(to_int))
    with pytest.raises(ValueError, match=r"encoder.linears.0.weight has dtype int32 in the file, "
                                         r"the network's is float32\)") as err:
        load(saved)
    assert not str(err.value).endswith("..")


def test_a_module_attribute_in_a_pickle_does_not_skip_the_size_check(ae, rebuilt_devices):
    from torch import nn

    crafted = ae.__getstate__()
    crafted["hidden_layer_sizes"] = (100000, 100000)
    crafted["extra_"] = nn.Linear(2, 2)  # any module attribute once skipped the dry build
    est = DeepAutoencoder.__new__(DeepAutoencoder)
    with pytest.raises(ValueError, match="do not fit the network rebuilt from its parameters"):
        est.__setstate__(crafted)
    assert set(rebuilt_devices) <= {"meta"}


# -- loading costs what the file is worth ---------------------------------------------------


def test_thousands_of_declared_layers_are_refused_before_any_build(saved, monkeypatch):
    # the 3 KB file: a dry build of 20 000 layers took 30 s
    forge(saved, tree=lambda d: d["state"]["hidden_layer_sizes"].update(v=[8] * 20000))
    assert os.path.getsize(saved) < 5000
    builds = []
    monkeypatch.setattr(DeepAutoencoder, "_rebuild_module",
                        lambda self, name: builds.append(name))
    with pytest.raises(ValueError, match=r"hidden_layer_sizes declares 20000 layers of 160000 "
                                         r"units, more than 8 stored tensors"):
        load(saved)
    assert builds == []


def test_compressible_padding_is_refused_before_anything_is_unpacked(saved, monkeypatch):
    # unpacks to about 40 times the file's size: past the bound, under the old one
    padding = np.random.default_rng(0).bytes(2_500_000) + bytes(100_000_000)
    forge(saved, blobs=lambda b: b.update({"arrays.npz": b["arrays.npz"] + padding}))
    del padding
    size = os.path.getsize(saved)
    assert 20 * size < 100_000_000 < 100 * size
    opened = []
    real_open = zipfile.ZipFile.open
    monkeypatch.setattr(zipfile.ZipFile, "open",
                        lambda self, name, *a, **k: opened.append(name) or real_open(self, name, *a, **k))
    with pytest.raises(ValueError, match=r"would unpack 10[0-9]{7} bytes from a [0-9]+-byte file"):
        load(saved)
    assert opened == []


def test_members_are_read_in_bounded_chunks(saved, monkeypatch):
    import sk_deepunsup._model_file as model_file

    reads = []
    real_open = zipfile.ZipFile.open

    def open_member(self, name, *args, **kwargs):
        member = real_open(self, name, *args, **kwargs)
        real_read = member.read
        member.read = lambda n=-1: reads.append(n) or real_read(n)
        return member

    monkeypatch.setattr(model_file, "READ_CHUNK", 4096)
    monkeypatch.setattr(zipfile.ZipFile, "open", open_member)
    load(saved)
    assert reads and all(0 < n <= 4096 for n in reads)


# -- saving ----------------------------------------------------------------------------------


@pytest.mark.skipif(os.name != "posix", reason="symbolic links")
def test_saving_through_a_symlink_replaces_its_target_and_keeps_the_link(ae, X, tmp_path):
    target = tmp_path / "models" / "v1.skdu"
    target.parent.mkdir()
    save(ae, target)
    link = tmp_path / "current.skdu"
    link.symlink_to(target)
    other = quietly(DeepAutoencoder(hidden_layer_sizes=(8,), max_iter=3, random_state=1).fit, X)
    save(other, link)
    assert link.is_symlink() and os.readlink(link) == str(target)
    np.testing.assert_array_equal(load(target).transform(X), other.transform(X))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["current.skdu", "models"]


@pytest.mark.skipif(os.name != "posix", reason="fcntl locks")
def test_the_next_save_removes_what_a_killed_save_left(ae, saved):
    import fcntl

    folder = saved.parent
    dead = folder / f".{saved.name}.0123456789ab.tmp"  # as a save killed by kill -9 leaves it
    live = folder / f".{saved.name}.ba9876543210.tmp"  # a save in progress elsewhere
    fresh = folder / f".{saved.name}.aaaaaaaaaaaa.tmp"  # just created: maybe not locked yet
    other = folder / ".other.skdu.0123456789ab.tmp"  # another target's
    for path in (dead, live, fresh, other):
        path.write_bytes(b"PK partial")
    for path in (dead, live, other):
        os.utime(path, (0, 0))
    with open(live, "rb") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        save(ae, saved)
    assert not dead.exists()
    assert live.exists() and fresh.exists() and other.exists()
    np.testing.assert_array_equal(load(saved).transform(np.zeros((2, 13))),
                                  ae.transform(np.zeros((2, 13))))
