"""Safe persistence: ``save(estimator, path)`` and ``load(path)`` without pickle.

A saved model is one zip file holding

- ``manifest.json``: the format name and version and a SHA-256 of every other
  member (a file edited after saving is refused);
- ``estimator.json``: the estimator tree: class names, parameters, fitted
  scalars and lists, with arrays and tensors referenced by key;
- ``arrays.npz``: the numpy arrays (read with ``allow_pickle=False``);
- ``weights.safetensors``: every torch tensor (network weights, optimizer
  moments).

Loading never unpickles and never calls ``torch.load``. Classes are looked up
by name only inside ``sk_deepunsup`` and ``sklearn`` and must be scikit-learn
estimators; networks are rebuilt from the estimator's parameters (the
estimator's ``_rebuild_module`` hook) and then given the saved weights.
"""

from __future__ import annotations

import hashlib
import importlib
import io
import json
import os
import warnings
import zipfile

import numpy as np
import torch
from sklearn.base import BaseEstimator
from torch import nn

from ._base import device_available
from ._nn import distributed

__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "load", "save"]

#: Written into every file; ``load`` refuses files without it.
FORMAT_NAME = "sk_deepunsup.model"
#: Bumped when the layout changes; ``load`` refuses versions it does not know.
FORMAT_VERSION = 1

_MEMBERS = ("estimator.json", "arrays.npz", "weights.safetensors")
#: Modules whose classes ``load`` may instantiate.
_ALLOWED_ROOTS = ("sk_deepunsup", "sklearn")


def _safetensors():
    try:
        import safetensors.torch as st
    except ImportError as exc:  # pragma: no cover - a core dependency
        raise ImportError(
            "sk_deepunsup.save/load need the 'safetensors' package: pip install safetensors"
        ) from exc
    return st


class _Writer:
    def __init__(self):
        self.arrays: dict[str, np.ndarray] = {}
        self.tensors: dict[str, torch.Tensor] = {}

    def array(self, value: np.ndarray) -> str:
        key = f"a{len(self.arrays)}"
        self.arrays[key] = value
        return key

    def tensor(self, value: torch.Tensor) -> str:
        key = f"t{len(self.tensors)}"
        self.tensors[key] = value.detach().to("cpu").contiguous()
        return key

    # -- values ------------------------------------------------------------------

    def encode(self, value, where: str):
        if value is None or isinstance(value, (bool, str)):
            return value
        if isinstance(value, (int, float)) and type(value) in (int, float):
            return value
        if isinstance(value, np.generic):
            return {"$t": "npscalar", "dtype": value.dtype.str, "v": value.item()}
        if isinstance(value, np.ndarray):
            if value.dtype == object:
                if not all(isinstance(v, str) for v in value.ravel()):
                    raise TypeError(
                        f"cannot save {where}: an object array holding non-strings."
                    )
                return {"$t": "strarray", "shape": list(value.shape), "v": value.ravel().tolist()}
            return {"$t": "ndarray", "key": self.array(value)}
        if isinstance(value, torch.Tensor):
            return {"$t": "tensor", "key": self.tensor(value)}
        if isinstance(value, torch.device):
            return {"$t": "device", "v": str(value)}
        if isinstance(value, tuple):
            return {"$t": "tuple", "v": [self.encode(v, f"{where}[{i}]") for i, v in enumerate(value)]}
        if isinstance(value, list):
            return [self.encode(v, f"{where}[{i}]") for i, v in enumerate(value)]
        if isinstance(value, dict):
            return {
                "$t": "dict",
                "v": [
                    [self.encode(k, f"{where} key"), self.encode(v, f"{where}[{k!r}]")]
                    for k, v in value.items()
                ],
            }
        if isinstance(value, np.random.RandomState):
            return {"$t": "random_state", "v": self.encode(value.get_state(), where)}
        if isinstance(value, type) and issubclass(value, np.generic):
            return {"$t": "nptype", "v": np.dtype(value).str}
        if isinstance(value, np.dtype):
            return {"$t": "dtype", "v": value.str}
        if isinstance(value, BaseEstimator):
            return self.estimator(value, where)
        raise TypeError(
            f"cannot save {where} of type {type(value).__name__}: sk_deepunsup.save "
            "stores numbers, strings, arrays, tensors, lists, dicts and scikit-learn "
            "estimators. Set it to a plain value (e.g. memory=None) before saving, or "
            "use pickle/joblib if the file will only be read by trusted code."
        )

    def estimator(self, est, where: str):
        cls = type(est)
        _check_class_allowed(cls.__module__, cls.__qualname__)
        state, modules = {}, {}
        for name, value in vars(est).items():
            if isinstance(value, nn.Module):
                _check_module_rebuildable(value, f"{where}.{name}")
                modules[name] = {
                    k: self.tensor(t) for k, t in value.state_dict().items()
                }
            else:
                state[name] = self.encode(value, f"{where}.{name}")
        return {
            "$t": "estimator",
            "class": f"{cls.__module__}:{cls.__qualname__}",
            "state": state,
            "modules": modules,
        }


def _check_module_rebuildable(module: nn.Module, where: str) -> None:
    """Refuse a user's torch module: load could only rebuild it by running code."""
    cls = type(module)
    if not cls.__module__.startswith("sk_deepunsup."):
        raise TypeError(
            f"cannot save {where}: it is a {cls.__module__}.{cls.__qualname__}, a torch "
            "module from outside sk_deepunsup (e.g. a custom encoder/decoder), which "
            "load could not rebuild without running code from the file. Pickle the "
            "estimator instead (pickle or joblib.dump; load such files only from "
            "trusted sources), or keep the module's weights with torch.save."
        )


def save(estimator, path) -> None:
    """Save a scikit-learn estimator of this package to ``path``, without pickle.

    Works for every estimator of ``sk_deepunsup``, fitted or not, and for
    scikit-learn estimators and pipelines around them (e.g. a scaler then an
    autoencoder). Network weights go to safetensors, everything else to JSON
    and ``.npz``, in one zip file that :func:`load` reads back without
    executing code from the file.

    Parameters
    ----------
    estimator : estimator
        The (fitted) estimator or pipeline.
    path : str or path-like
        File to write (by convention ending in ``.skdu``); overwritten. In a
        ``torch.distributed`` job only rank 0 writes it (every rank holds the
        same fitted model), so every rank may call ``save``.

    Raises
    ------
    TypeError
        When the estimator holds a value that is not plain data (a callable,
        a ``joblib.Memory``, a custom object); the message names it.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> from sk_deepunsup import DeepAutoencoder, load, save
    >>> X = np.random.RandomState(0).normal(size=(50, 4))
    >>> ae = DeepAutoencoder(hidden_layer_sizes=(8,), max_iter=5, random_state=0).fit(X)
    >>> path = os.path.join(tempfile.mkdtemp(), "ae.skdu")
    >>> save(ae, path)
    >>> bool(np.array_equal(load(path).transform(X), ae.transform(X)))
    True
    """
    if not isinstance(estimator, BaseEstimator):
        raise TypeError(
            f"save expects a scikit-learn estimator, got {type(estimator).__name__}."
        )
    if not distributed.writes_files():  # data-parallel ranks hold the same model
        return
    st = _safetensors()
    from . import __version__

    writer = _Writer()
    tree = writer.estimator(estimator, "estimator")
    members = {"estimator.json": json.dumps(tree).encode()}
    buf = io.BytesIO()
    np.savez(buf, **writer.arrays)
    members["arrays.npz"] = buf.getvalue()
    members["weights.safetensors"] = st.save(writer.tensors)
    manifest = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "library_version": __version__,
        "sha256": {k: hashlib.sha256(v).hexdigest() for k, v in members.items()},
    }
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("manifest.json", json.dumps(manifest, indent=1))
        for name, data in members.items():
            zf.writestr(name, data)


# -- loading -------------------------------------------------------------------------


class _Reader:
    def __init__(self, arrays, tensors):
        self.arrays = arrays
        self.tensors = tensors
        self.unavailable: set[str] = set()

    def _array(self, key):
        if key not in self.arrays:
            raise ValueError(f"the file refers to a missing array {key!r}; it is corrupt.")
        return self.arrays[key]

    def _tensor(self, key):
        if key not in self.tensors:
            raise ValueError(f"the file refers to a missing tensor {key!r}; it is corrupt.")
        return self.tensors[key]

    def decode(self, value):
        if value is None or isinstance(value, (bool, str, int, float)):
            return value
        if isinstance(value, list):
            return [self.decode(v) for v in value]
        if not isinstance(value, dict) or "$t" not in value:
            raise ValueError("unexpected value in estimator.json; the file is corrupt.")
        tag = value["$t"]
        if tag == "npscalar":
            return np.dtype(value["dtype"]).type(value["v"])
        if tag == "strarray":
            return np.array(value["v"], dtype=object).reshape(value["shape"])
        if tag == "ndarray":
            return self._array(value["key"])
        if tag == "tensor":
            return self._tensor(value["key"])
        if tag == "device":
            return torch.device(value["v"])
        if tag == "tuple":
            return tuple(self.decode(v) for v in value["v"])
        if tag == "dict":
            return {_hashable(self.decode(k)): self.decode(v) for k, v in value["v"]}
        if tag == "random_state":
            rs = np.random.RandomState()
            rs.set_state(self.decode(value["v"]))
            return rs
        if tag == "nptype":
            return np.dtype(value["v"]).type
        if tag == "dtype":
            return np.dtype(value["v"])
        if tag == "estimator":
            return self.estimator(value)
        raise ValueError(f"unknown value tag {tag!r} in estimator.json; the file is corrupt.")

    def estimator(self, node):
        module_name, _, qualname = str(node.get("class", "")).partition(":")
        cls = _resolve_class(module_name, qualname)
        est = cls.__new__(cls)
        state = {str(k): self.decode(v) for k, v in node.get("state", {}).items()}
        fitted_on = state.get("device_")
        target = None
        if isinstance(fitted_on, str):
            target = torch.device(fitted_on)
            if not device_available(target):
                self.unavailable.add(fitted_on)
                target = torch.device("cpu")
                state["device_"] = "cpu"
        est.__dict__.update(state)
        for name, weights in node.get("modules", {}).items():
            rebuild = getattr(est, "_rebuild_module", None)
            module = rebuild(name) if rebuild is not None else None
            if module is None:
                raise ValueError(
                    f"{cls.__name__} cannot rebuild its network {name!r} from its "
                    "parameters; give the class a _rebuild_module(name) method that "
                    "returns an untrained network of the fitted shape."
                )
            state_dict = {k: self._tensor(key) for k, key in weights.items()}
            try:
                module.load_state_dict(state_dict, strict=True)
            except RuntimeError as exc:
                raise ValueError(
                    f"the saved weights of {cls.__name__}.{name} do not fit the network "
                    f"rebuilt from its parameters ({exc}); the file is corrupt or was "
                    "edited."
                ) from None
            if target is not None:
                module.to(target)
            setattr(est, name, module)
        return est


def _hashable(key):
    return tuple(key) if isinstance(key, list) else key


def _check_class_allowed(module_name: str, qualname: str) -> None:
    root = module_name.split(".")[0]
    if root not in _ALLOWED_ROOTS or "<" in qualname:
        raise TypeError(
            f"cannot save or load class {module_name}.{qualname}: only estimators "
            "defined in sk_deepunsup or scikit-learn are supported."
        )


def _resolve_class(module_name: str, qualname: str):
    _check_class_allowed(module_name, qualname)
    try:
        obj = importlib.import_module(module_name)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError):
        raise ValueError(
            f"the file names class {module_name}.{qualname}, which this installation "
            "does not have; it was saved by a different version or is corrupt."
        ) from None
    if not (isinstance(obj, type) and issubclass(obj, BaseEstimator)):
        raise TypeError(f"{module_name}.{qualname} is not a scikit-learn estimator class.")
    return obj


def load(path):
    """Load an estimator written by :func:`save`.

    Nothing in the file is executed: no pickle, no ``torch.load``. Classes
    are looked up by name in ``sk_deepunsup`` and scikit-learn only, and
    networks are rebuilt from the estimator's parameters before their
    weights are read from safetensors. A model fitted on a GPU loads on a
    CPU-only machine: its networks go to the CPU and ``device_`` becomes
    ``"cpu"``, with a warning.

    Parameters
    ----------
    path : str or path-like
        A file written by :func:`save`.

    Returns
    -------
    estimator : estimator
        Gives the same outputs as the saved one.

    Raises
    ------
    ValueError
        When the file is not an sk_deepunsup model, has an unknown format
        version, or was altered after saving.
    """
    st = _safetensors()
    name = os.fspath(path)
    try:
        with zipfile.ZipFile(name) as zf:
            names = set(zf.namelist())
            if "manifest.json" not in names:
                raise ValueError("no manifest.json")
            manifest = json.loads(zf.read("manifest.json"))
            blobs = {m: zf.read(m) for m in _MEMBERS if m in names}
    except (zipfile.BadZipFile, ValueError, KeyError, UnicodeDecodeError) as exc:
        raise ValueError(
            f"{name!r} is not an sk_deepunsup model file (written by "
            f"sk_deepunsup.save): {exc}."
        ) from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        raise ValueError(
            f"{name!r} is not an sk_deepunsup model file (written by sk_deepunsup.save)."
        )
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise ValueError(
            f"{name!r} has format version {version!r}; this sk_deepunsup reads version "
            f"{FORMAT_VERSION}. Load it with the sk_deepunsup version that saved it "
            f"({manifest.get('library_version')})."
        )
    hashes = manifest.get("sha256", {})
    for member in _MEMBERS:
        if member not in blobs or hashlib.sha256(blobs[member]).hexdigest() != hashes.get(member):
            raise ValueError(
                f"{name!r}: {member} is missing or was changed after saving (checksum "
                "mismatch); the file is corrupt or was tampered with."
            )
    try:
        with np.load(io.BytesIO(blobs["arrays.npz"]), allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
        tensors = st.load(blobs["weights.safetensors"])
        tree = json.loads(blobs["estimator.json"])
    except (ValueError, OSError) as exc:
        raise ValueError(f"{name!r} could not be read: {exc}") from None
    reader = _Reader(arrays, tensors)
    if not isinstance(tree, dict) or tree.get("$t") != "estimator":
        raise ValueError(f"{name!r} holds no estimator; the file is corrupt.")
    estimator = reader.estimator(tree)
    if reader.unavailable:
        warnings.warn(
            f"{type(estimator).__name__} was fitted on {', '.join(sorted(reader.unavailable))}, "
            "which is not available here; it was loaded on the CPU.",
            UserWarning,
        )
    return estimator
