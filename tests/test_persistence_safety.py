"""load and unpickling of hostile files; atomic save; keyed signatures.

Each tampered file is built here from a real saved model, edited as a forger
would (the SHA-256 digests recomputed), so only the reader's own checks stand
between the file and the machine.
"""

import hashlib
import io
import json
import os
import pickle
import pickletools
import sys
import time
import warnings
import zipfile

import joblib
import numpy as np
import pytest
import safetensors.torch as st
import torch
from sklearn.cluster import KMeans
from sklearn.datasets import load_wine
from sklearn.decomposition import PCA, TruncatedSVD
from sklearn.feature_extraction.text import TfidfTransformer
from sklearn.feature_selection import VarianceThreshold
from sklearn.impute import SimpleImputer
from sklearn.pipeline import make_pipeline, make_union
from sklearn.preprocessing import (
    MaxAbsScaler,
    MinMaxScaler,
    Normalizer,
    PowerTransformer,
    QuantileTransformer,
    RobustScaler,
    StandardScaler,
)
from torch import nn

from model_file_forgery import forge, members, rebuilt_devices, state  # noqa: F401 - a fixture
from sk_deepunsup import DeepAutoencoder, load, save


@pytest.fixture(scope="module")
def X():
    return StandardScaler().fit_transform(load_wine().data)


def small_ae(seed=0, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return DeepAutoencoder(hidden_layer_sizes=(8,), max_iter=3, random_state=seed, **kw)


@pytest.fixture(scope="module")
def ae(X):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return small_ae().fit(X)


@pytest.fixture
def saved(ae, tmp_path):
    path = tmp_path / "m.skdu"
    save(ae, path)
    return path


# -- classes ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "sk_deepunsup.__main__:main",  # used to run the command line
        "sk_deepunsup._autoencoder:AutoencoderBase",
        "sklearn.cluster:KMeans",
        "os:system",
        "builtins:eval",
        7,
    ],
)
def test_class_outside_registry_is_refused_without_importing(saved, name, monkeypatch):
    forge(saved, tree=lambda d: d.update({"class": name}))
    before = set(sys.modules)
    monkeypatch.setattr("importlib.import_module", pytest.fail)
    with pytest.raises(TypeError, match="which sk_deepunsup.load does not load.*Nothing was"):
        load(saved)
    assert set(sys.modules) == before


def test_save_refuses_classes_load_would_refuse(tmp_path):
    with pytest.raises(TypeError, match="cannot save sklearn.cluster._kmeans.KMeans"):
        save(KMeans(3), tmp_path / "k.skdu")
    assert not os.listdir(tmp_path)


@pytest.mark.parametrize(
    "step",
    [StandardScaler(), MinMaxScaler(), MaxAbsScaler(), RobustScaler(), Normalizer(),
     QuantileTransformer(n_quantiles=20), PowerTransformer(), PCA(3), TruncatedSVD(3),
     TfidfTransformer(), VarianceThreshold(), SimpleImputer()],
    ids=lambda s: type(s).__name__,
)
def test_allowed_scikit_learn_classes_round_trip(step, X, tmp_path):
    data = np.abs(X)  # TfidfTransformer needs non-negative input
    est = make_union(step, MinMaxScaler()).fit(data)
    save(est, tmp_path / "s.skdu")
    dense = lambda a: a.toarray() if hasattr(a, "toarray") else a  # noqa: E731
    again = load(tmp_path / "s.skdu")
    np.testing.assert_array_equal(dense(again.transform(data)), dense(est.transform(data)))


# -- sizes -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "edit",
    [
        # the 3 KB file asking for 2.3 GB
        lambda s: s["hidden_layer_sizes"].update(v=[100000, 100000]),
        lambda s: s.update(n_features_in_=10**12),
        lambda s: s.update(n_components=10**30),
    ],
    ids=["wide-layers", "huge-n_features_in_", "huge-n_components"],
)
def test_parameters_describing_a_large_network_allocate_nothing(saved, edit, rebuilt_devices):
    forge(saved, tree=lambda d: edit(state(d)))
    assert os.path.getsize(saved) < 10_000
    with pytest.raises(ValueError, match="do not fit the network rebuilt from its parameters"
                       "|cannot rebuild its network 'module_' from the stored parameters"):
        load(saved)
    assert set(rebuilt_devices) <= {"meta"}  # only the dry build ran, if any


def test_padded_json_is_refused_before_it_is_parsed(ae, tmp_path, monkeypatch):
    huge, padded = tmp_path / "huge.skdu", tmp_path / "padded.skdu"
    for path, pad in ((huge, b" " * (40 << 20)), (padded, b"\n" * (2 << 20))):
        save(ae, path)
        forge(path, blobs=lambda b: b.update({"estimator.json": b["estimator.json"] + pad}))
        assert os.path.getsize(path) < 200_000
    parsed = []
    monkeypatch.setattr(json, "loads", lambda *a, **k: parsed.append(a))
    with pytest.raises(ValueError, match="estimator.json is 4[0-9]+ bytes, over the limit"):
        load(huge)
    with pytest.raises(ValueError, match=r"unpacks 2[0-9]+ bytes from [0-9]+ \(padding\)"):
        load(padded)
    assert not parsed


def test_members_that_unpack_far_beyond_the_file_are_refused(saved):
    forge(saved, blobs=lambda b: b.update({"arrays.npz": bytes(80 << 20)}))
    assert os.path.getsize(saved) < 200_000
    with pytest.raises(ValueError, match="would unpack [0-9]+ bytes from a [0-9]+-byte file"):
        load(saved)


def npz_with_header(shape, payload=b"\0" * 16):
    npy = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        npy, {"descr": "<f8", "fortran_order": False, "shape": shape}
    )
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        zf.writestr("a0.npy", npy.getvalue() + payload)
    return out.getvalue()


def object_npz():
    out = io.BytesIO()
    np.savez(out, a0=np.array([{"x": 1}], dtype=object))
    return out.getvalue()


def nan_weights(blobs):
    tensors = st.load(blobs["weights.safetensors"])
    first = next(k for k, t in tensors.items() if t.is_floating_point())
    tensors[first] = torch.full_like(tensors[first], float("nan"))
    blobs["weights.safetensors"] = st.save(tensors)


def extra_tensor(blobs):
    tensors = st.load(blobs["weights.safetensors"])
    tensors["t999"] = torch.zeros(3)
    blobs["weights.safetensors"] = st.save(tensors)


def nested(depth):
    return b'{"$t":"tuple","v":[' * depth + b"1" + b"]}" * depth


def with_state_entry(name, value):
    def edit(blobs):
        doc = blobs["estimator.json"]
        blobs["estimator.json"] = doc.replace(b'"state":{', b'"state":{"%s":%s,' % (name, value), 1)
    return edit


# Each reproducer: (edit of the tree, edit of the members, edit of the manifest, message).
MALFORMED = {
    "nan-weights": (None, nan_weights, None, "NaN or infinite"),
    "state-shadows-transform": (lambda d: state(d).update(transform="x"), None, None,
                                "'transform' in the state of DeepAutoencoder would shadow its "
                                "function"),
    "network-shadows-transform": (
        lambda d: d["modules"].update(transform=d["modules"].pop("module_")), None, None,
        "would shadow its function"),
    "dunder-entry": (lambda d: state(d).update(__class__="x"), None, None,
                     "attribute named '__class__'"),
    "unknown-node-key": (lambda d: d.update(extra=1), None, None, r"unexpected keys \['extra'\]"),
    "unknown-value-key": (lambda d: state(d)["hidden_layer_sizes"].update(x=1), None, None,
                          r"unexpected keys \['x'\] in a 'tuple' value"),
    "unknown-tag": (lambda d: state(d).update(max_iter={"$t": "pickle", "v": ""}), None, None,
                    "unknown value tag 'pickle'"),
    "missing-parameter": (lambda d: state(d).pop("max_iter"), None, None,
                          r"lacks its parameters \['max_iter'\]"),
    "invalid-parameter": (lambda d: state(d).update(activation="sudo"), None, None,
                          "invalid parameter of DeepAutoencoder"),
    "wrong-type-fitted": (lambda d: state(d).update(n_features_in_="abc"), None, None,
                          "cannot rebuild its network 'module_' from the stored parameters"),
    "wrong-type-state": (lambda d: d.update(state=[]), None, None, "state has type list"),
    "wrong-type-device": (lambda d: state(d).update(device_="warp:9"), None, None,
                          "corrupt or was edited"),
    "deep-nesting-json": (None, with_state_entry(b"deep_", nested(200_000)), None,
                          "nested too deeply"),
    "deep-nesting-values": (None, with_state_entry(b"deep_", nested(100)), None,
                            "nested deeper than 64 levels"),
    "huge-int-scalar": (lambda d: state(d).update(
        best_loss_={"$t": "npscalar", "dtype": "<f4", "v": 10**400}), None, None,
        "corrupt or was edited"),
    "huge-int-literal": (None, with_state_entry(b"big_", b"9" * 5000), None, "not valid JSON"),
    "object-dtype-scalar": (lambda d: state(d).update(
        best_loss_={"$t": "npscalar", "dtype": "|O", "v": 1}), None, None, "unexpected dtype"),
    "missing-tensor": (
        lambda d: d["modules"]["module_"].update({"encoder.linears.0.weight": "t999"}), None, None,
        "missing tensor 't999'"),
    "unreferenced-tensor": (None, extra_tensor, None, "1 arrays or tensors nothing refers to"),
    "extra-member": (None, lambda b: b.update({"evil.py": b"import os"}), None,
                     "holds the members"),
    "manifest-extra-key": (None, None, lambda m: m.update(run="x"), "unexpected entries"),
    "object-array": (None, lambda b: b.update({"arrays.npz": object_npz()}), None,
                     "dtype object, which a model never holds"),
    "array-larger-than-data": (None, lambda b: b.update({"arrays.npz": npz_with_header((10**10,))}),
                               None, "declares shape .10000000000,., larger than its data"),
    "garbage-weights": (None, lambda b: b.update({"weights.safetensors": b"\xff" * 100}), None,
                        "could not be read"),
    "no-estimator": (lambda d: d.update({"$t": "tuple"}), None, None, "holds no estimator"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_files_are_refused_with_value_error(saved, case):
    tree, blobs, manifest, message = MALFORMED[case]
    forge(saved, tree=tree, blobs=blobs, manifest=manifest, stored=case.startswith("deep"))
    start = time.perf_counter()
    with pytest.raises(ValueError, match=message):
        load(saved)
    assert time.perf_counter() - start < 10


@pytest.mark.parametrize("fraction", [0.3, 0.6, 0.95])
def test_truncated_file_is_refused(saved, fraction):
    data = saved.read_bytes()
    saved.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(ValueError, match="is not an sk_deepunsup model file"):
        load(saved)


def test_save_refuses_non_finite_weights(X, tmp_path):
    est = small_ae().fit(X)
    with torch.no_grad():
        next(est.module_.parameters())[0, 0] = float("inf")
    with pytest.raises(ValueError, match=r"cannot save estimator.module_: it holds NaN or inf"):
        save(est, tmp_path / "m.skdu")


# -- checksums and keyed signatures ---------------------------------------------------------


def swapped_weights(other):
    weights = members(other)["weights.safetensors"]
    return lambda blobs: blobs.update({"weights.safetensors": weights})


def test_checksums_do_not_stop_a_forger_but_a_key_does(X, ae, tmp_path):
    key = b"a secret of 32 bytes, not in git"
    other = tmp_path / "other.skdu"
    save(small_ae(seed=1).fit(X), other)

    unsigned = tmp_path / "u.skdu"
    save(ae, unsigned)
    forge(unsigned, blobs=swapped_weights(other))
    edited = load(unsigned)  # well-formed edit, digests recomputed: the digests cannot tell
    assert not np.array_equal(edited.transform(X), ae.transform(X))
    with pytest.raises(ValueError, match="is not signed .it was saved without key="):
        load(unsigned, key=key)

    signed = tmp_path / "s.skdu"
    save(ae, signed, key=key)
    np.testing.assert_array_equal(load(signed, key=key).transform(X), ae.transform(X))
    with pytest.raises(ValueError, match="signature does not match this key"):
        load(signed, key=b"another secret of at least 16 bytes")
    forge(signed, blobs=swapped_weights(other))
    with pytest.raises(ValueError, match="signature does not match this key: the file was edited"):
        load(signed, key=key)
    forge(signed, manifest=lambda m: m["signature"].update(
        hmac_sha256=hashlib.sha256(b"guess").hexdigest()))
    with pytest.raises(ValueError, match="signature does not match"):
        load(signed, key=key)


def test_key_is_checked(ae, tmp_path):
    with pytest.raises(ValueError, match="key must be at least 16 bytes long, got 5"):
        save(ae, tmp_path / "m.skdu", key="short")
    with pytest.raises(TypeError, match="key must be bytes or str, got int"):
        load(tmp_path / "m.skdu", key=1234)
    assert not os.listdir(tmp_path)


# -- atomic save ------------------------------------------------------------------------


@pytest.mark.parametrize("error", [OSError(28, "No space left on device"), KeyboardInterrupt()])
def test_failed_save_keeps_the_previous_file(X, ae, saved, monkeypatch, error):
    good = saved.read_bytes()
    real = zipfile.ZipFile.writestr
    calls = []

    def fails_midway(self, *args, **kwargs):
        calls.append(args[0])
        if len(calls) == 3:
            raise error
        return real(self, *args, **kwargs)

    monkeypatch.setattr(zipfile.ZipFile, "writestr", fails_midway)
    with pytest.raises(type(error)):
        save(small_ae(seed=2).fit(X), saved)
    assert len(calls) == 3
    assert saved.read_bytes() == good
    assert os.listdir(saved.parent) == [saved.name]  # no temporary file left
    monkeypatch.undo()
    np.testing.assert_array_equal(load(saved).transform(X), ae.transform(X))


def test_save_flushes_to_disk_before_replacing(X, saved, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: events.append("fsync") or real_fsync(fd))
    monkeypatch.setattr(os, "replace", lambda a, b: events.append(("replace", os.path.dirname(a)))
                        or real_replace(a, b))
    new = small_ae(seed=3).fit(X)
    save(new, saved)
    assert events[0] == "fsync" and events[1] == ("replace", str(saved.parent))
    np.testing.assert_array_equal(load(saved).transform(X), new.transform(X))
    assert os.listdir(saved.parent) == [saved.name]


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_save_keeps_the_permissions_of_the_file_it_replaces(ae, saved, tmp_path):
    os.chmod(saved, 0o600)
    save(ae, saved)
    assert os.stat(saved).st_mode & 0o777 == 0o600
    umask = os.umask(0o022)
    try:
        save(ae, tmp_path / "new.skdu")
    finally:
        os.umask(umask)
    assert os.stat(tmp_path / "new.skdu").st_mode & 0o777 == 0o644


# -- pickling ---------------------------------------------------------------------------


class _WritesMarker:
    """Unpickled by an unsafe torch.load, it creates ``path``."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


class _Carrier:
    """Pickles as ``cls()`` then ``__setstate__(state)``: one global, ``cls``."""

    def __init__(self, cls, state):
        self.cls, self.state = cls, state

    def __reduce__(self):
        return (self.cls, (), self.state)


class _AllowOnly(pickle.Unpickler):
    """An allow-list unpickler that admits only DeepAutoencoder."""

    def find_class(self, module, name):
        if (module, name) == ("sk_deepunsup._autoencoder", "DeepAutoencoder"):
            return DeepAutoencoder
        raise pickle.UnpicklingError(f"{module}.{name} is not allowed")


def globals_of(data):
    found = []
    for op, arg, _ in pickletools.genops(data):
        if op.name == "STACK_GLOBAL":
            found.append("stack")
        elif op.name == "GLOBAL":
            found.append(arg)
    return found


def evil_bytes(marker):
    buf = io.BytesIO()
    torch.save(_WritesMarker(marker), buf)
    return buf.getvalue()


@pytest.mark.parametrize("slot", ["_torch_modules", "_torch_payload"])
def test_crafted_pickle_of_our_estimator_cannot_run_code(ae, tmp_path, slot):
    marker = tmp_path / "marker"
    crafted = ae.__getstate__()
    crafted[slot] = evil_bytes(marker)
    data = pickle.dumps(_Carrier(DeepAutoencoder, crafted))
    assert globals_of(data) == ["stack"] and b"DeepAutoencoder" in data
    (tmp_path / "crafted.pkl").write_bytes(data)
    for unpickle in (lambda: _AllowOnly(io.BytesIO(data)).load(),
                     lambda: pickle.loads(data),
                     lambda: joblib.load(tmp_path / "crafted.pkl")):
        with pytest.raises((ValueError, pickle.UnpicklingError),
                           match="only an unsafe torch.load could read|Weights only load failed"):
            unpickle()
        assert not marker.exists()


def test_crafted_pickle_cannot_allocate_a_network_its_weights_do_not_describe(ae, rebuilt_devices):
    crafted = ae.__getstate__()
    crafted["hidden_layer_sizes"] = (100000, 100000)
    data = pickle.dumps(_Carrier(DeepAutoencoder, crafted))
    with pytest.raises(ValueError, match="do not fit the network rebuilt from its parameters"):
        _AllowOnly(io.BytesIO(data)).load()
    assert set(rebuilt_devices) <= {"meta"}  # refused before any build, or after a dry one


class _Tied(nn.Module):
    """A user's encoder with a module used twice and a weight shared by two layers."""

    def __init__(self):
        super().__init__()
        self.inp = nn.Linear(13, 8)
        self.hidden = nn.Linear(8, 8)
        self.other = nn.Linear(8, 8)
        self.other.weight = self.hidden.weight
        self.out = nn.Linear(8, 2)
        self.register_buffer("scale", torch.tensor(0.5))

    def forward(self, x):
        h = torch.relu(self.inp(x))
        h = torch.relu(self.hidden(h))
        h = torch.relu(self.other(h))
        return self.out(self.hidden(h) * self.scale)


def test_custom_modules_pickle_without_unsafe_torch_load(X, monkeypatch):
    est = small_ae(encoder=_Tied(), decoder=nn.Sequential(nn.Linear(2, 8), nn.ReLU(),
                                                          nn.Linear(8, 13)))
    est.fit(X)
    data = pickle.dumps(est)
    assert not any("_load_from_bytes" in str(g) for g in globals_of(data))
    assert b"_load_from_bytes" not in data
    calls = []
    real_load = torch.load
    monkeypatch.setattr(torch, "load", lambda *a, **k: calls.append(k.get("weights_only"))
                        or real_load(*a, **k))
    again = pickle.loads(data)
    assert calls and all(c is True for c in calls)
    np.testing.assert_array_equal(again.transform(X), est.transform(X))
    assert again.encoder.other.weight is again.encoder.hidden.weight
    assert isinstance(again.encoder.hidden.weight, nn.Parameter)
    torch.testing.assert_close(again.encoder.scale, torch.tensor(0.5))
    again.partial_fit(X)  # the rebuilt parameters still train
