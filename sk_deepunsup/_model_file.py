"""The model file format of :func:`sk_deepunsup.save` and its safe reader.

Everything in a file is treated as hostile until checked: classes come from
an explicit registry and no module a file names is imported; every member's
unpacked size is bounded before it is read; JSON nesting, value types and
references are checked; arrays are read only after their headers were
checked against their sizes; networks are built only after a dry build on
the ``meta`` device matched the stored weights. Any malformed file gives a
``ValueError``, a class outside the registry a ``TypeError``.

SHA-256 digests in the manifest detect accidental corruption. They do not
detect a deliberate edit (anyone can recompute them); a file saved with a
``key`` carries an HMAC-SHA256 signature that does.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import inspect
import io
import json
import math
import os
import struct
import warnings
import zipfile
import zlib

import numpy as np
import torch
from safetensors import SafetensorError
from sklearn.utils._param_validation import InvalidParameterError

from ._devices import device_available
from ._torch_state import TorchStateMixin
from ._nn import all_finite
from ._torch_state import check_optimizer_state, rebuild_checked, tensor_layout

__all__ = [
    "FORMAT_NAME", "FORMAT_VERSION", "check_key", "class_name", "read_file",
    "safetensors_module", "signature",
]

#: Written into every file; ``load`` refuses files without it.
FORMAT_NAME = "sk_deepunsup.model"
#: Bumped when the layout changes; ``load`` refuses versions it does not know.
FORMAT_VERSION = 1

_MEMBERS = ("estimator.json", "arrays.npz", "weights.safetensors")
#: Unpacked-size limits: the manifest, the estimator tree, and all members
#: together (the larger of a floor and a multiple of the file's own size:
#: real weights and arrays barely compress, a padded or crafted member does).
MAX_MANIFEST_BYTES = 1 << 16
MAX_JSON_BYTES = 1 << 24
MAX_UNPACKED_FLOOR = 1 << 26
MAX_UNPACK_RATIO = 32
#: Bytes decompressed at once while a member is read.
READ_CHUNK = 1 << 20
#: estimator.json compresses about 6:1 (long lists of names); padding 1000:1.
MAX_JSON_RATIO = 50
#: Parameters that name a place on the loading machine (a cache directory, a
#: path, an executable): a file never chooses them. ``memory`` (the
#: clusterer's and Pipeline's joblib cache) is where a later ``fit`` writes
#: and unpickles, so a file naming it could make ``fit`` run planted code.
MACHINE_PARAMETERS = frozenset({"memory"})
#: Nesting of values and estimators in estimator.json.
MAX_DEPTH = 64
_ARRAY_KINDS = "biufcUSMm"  # numbers, booleans, strings, dates: never objects

_PUBLIC_CLASSES = {
    "sk_deepunsup": (
        "AutoencoderOutlierDetector", "AutoencoderRecommender", "DeepAutoencoder",
        "DeepEmbeddingClusterer", "NeighborEmbedding", "VariationalAutoencoder",
    ),
    "sk_deepunsup._code_embedding": ("CodeNeighborEmbedding",),
    "sklearn.pipeline": ("FeatureUnion", "Pipeline"),
    "sklearn.preprocessing": (
        "MaxAbsScaler", "MinMaxScaler", "Normalizer", "PowerTransformer",
        "QuantileTransformer", "RobustScaler", "StandardScaler",
    ),
    "sklearn.decomposition": ("PCA", "TruncatedSVD"),
    "sklearn.feature_extraction.text": ("TfidfTransformer",),
    "sklearn.feature_selection": ("VarianceThreshold",),
    "sklearn.impute": ("SimpleImputer",),
}


class _ForeignClassError(TypeError):
    """A class outside the registry: refused before anything is imported or built."""


@functools.cache
def _registry():
    """``(name -> class, class -> name)`` for every class save/load handle.

    Imported here, by this package, from the fixed list above; a file's
    class name is only ever looked up in the mapping. A class is found
    under its public name (written by ``save``) and under the name of the
    module that defines it (files of earlier versions).
    """
    import importlib

    by_name, name_of = {}, {}
    for module_name, names in _PUBLIC_CLASSES.items():
        module = importlib.import_module(module_name)
        for qualname in names:
            cls = getattr(module, qualname)
            name_of[cls] = f"{module_name}:{qualname}"
            by_name[f"{module_name}:{qualname}"] = cls
            by_name[f"{cls.__module__}:{cls.__qualname__}"] = cls
    return by_name, name_of


def class_name(cls) -> str:
    name = _registry()[1].get(cls)
    if name is None:
        raise _ForeignClassError(
            f"cannot save {cls.__module__}.{cls.__qualname__}: sk_deepunsup.save stores "
            "this package's estimators and the scikit-learn pipelines, unions, scalers, "
            "PCA/TruncatedSVD, TfidfTransformer, SimpleImputer and VarianceThreshold "
            "around them. Use pickle or joblib for other estimators (trusted files only)."
        )
    return name


def _resolve_class(name) -> type:
    cls = _registry()[0].get(name) if isinstance(name, str) else None
    if cls is None:
        raise _ForeignClassError(
            f"the file names class {name!r}, which sk_deepunsup.load does not load: only "
            "this package's estimators and the scikit-learn classes listed in "
            "sk_deepunsup.save's documentation. Nothing was imported."
        )
    return cls


def safetensors_module():
    try:
        import safetensors.torch as st
    except ImportError as exc:  # pragma: no cover - a core dependency
        raise ImportError(
            "sk_deepunsup.save/load need the 'safetensors' package: pip install safetensors"
        ) from exc
    return st


def check_key(key):
    if key is None:
        return None
    if isinstance(key, str):
        key = key.encode()
    if not isinstance(key, (bytes, bytearray)):
        raise TypeError(f"key must be bytes or str, got {type(key).__name__}.")
    if len(key) < 16:
        raise ValueError(
            f"key must be at least 16 bytes long, got {len(key)}; use e.g. "
            "secrets.token_bytes(32) and keep it apart from the files."
        )
    return bytes(key)


def signature(key: bytes, manifest: dict) -> str:
    """HMAC-SHA256 of the manifest's content (format, versions, member digests)."""
    signed = {k: manifest[k] for k in ("format", "format_version", "library_version", "sha256")}
    message = b"sk_deepunsup.model signature 1\n" + json.dumps(
        signed, sort_keys=True, separators=(",", ":")
    ).encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()




# -- reading --------------------------------------------------------------------------


def _not_a_model(name: str, detail: str = "") -> ValueError:
    return ValueError(
        f"{name!r} is not an sk_deepunsup model file (written by sk_deepunsup.save)"
        + (f": {detail.rstrip('.')}." if detail else ".")
    )


def _read_members(name: str) -> dict:
    """Each member's bytes, every size checked against its limit before unpacking."""
    with open(name, "rb") as fh:  # a missing file raises FileNotFoundError as usual
        file_size = os.fstat(fh.fileno()).st_size
        try:
            with zipfile.ZipFile(fh) as zf:
                infos = zf.infolist()
                names = sorted(info.filename for info in infos)
                if "manifest.json" not in names:
                    raise _not_a_model(name, "no manifest.json")
                if names != sorted(("manifest.json", *_MEMBERS)):
                    raise ValueError(
                        f"{name!r} holds the members {names[:8]}; a model file holds "
                        f"exactly manifest.json and {', '.join(_MEMBERS)}. It is corrupt "
                        "or was edited."
                    )
                unpacked = sum(info.file_size for info in infos)
                limit = max(MAX_UNPACKED_FLOOR, MAX_UNPACK_RATIO * file_size)
                if unpacked > limit:
                    raise ValueError(
                        f"{name!r} would unpack {unpacked} bytes from a {file_size}-byte "
                        f"file (limit {limit}); it is not a file sk_deepunsup.save wrote."
                    )
                for info in infos:
                    bound = {"manifest.json": MAX_MANIFEST_BYTES,
                             "estimator.json": MAX_JSON_BYTES}.get(info.filename)
                    if bound is not None and info.file_size > bound:
                        raise ValueError(
                            f"{name!r}: {info.filename} is {info.file_size} bytes, over "
                            f"the limit of {bound}; it is not a file sk_deepunsup.save wrote."
                        )
                    if (bound is not None and info.file_size > MAX_JSON_BYTES >> 6  # 256 KiB
                            and info.file_size > MAX_JSON_RATIO * info.compress_size):
                        raise ValueError(
                            f"{name!r}: {info.filename} unpacks {info.file_size} bytes "
                            f"from {info.compress_size} (padding); it is not a file "
                            "sk_deepunsup.save wrote."
                        )
                blobs, budget = {}, limit
                for info in infos:  # the declared sizes are checked; the bytes are counted too
                    blobs[info.filename] = _read_bounded(zf, info, min(budget, info.file_size), name)
                    budget -= len(blobs[info.filename])
                return blobs
        except (zipfile.BadZipFile, zlib.error, EOFError, struct.error, NotImplementedError,
                RuntimeError) as exc:
            raise _not_a_model(name, str(exc)) from None


def _read_bounded(zf, info, bound: int, name: str) -> bytes:
    """A member's bytes, read in chunks and refused as soon as it yields more than ``bound``."""
    chunks, size = [], 0
    with zf.open(info) as member:
        while chunk := member.read(min(READ_CHUNK, bound + 1 - size)):
            chunks.append(chunk)
            size += len(chunk)
            if size > bound:
                raise ValueError(
                    f"{name!r}: {info.filename} unpacks to more than {bound} bytes, more than "
                    "its header or the file's size allows; it is not a file sk_deepunsup.save wrote."
                )
    return b"".join(chunks)


def _json(blob: bytes, what: str):
    try:
        return json.loads(blob)
    except RecursionError:
        raise ValueError(f"{what} is nested too deeply; the file is corrupt.") from None
    except ValueError as exc:
        raise ValueError(f"{what} is not valid JSON ({exc}); the file is corrupt.") from None


def _check_manifest(name: str, manifest, blobs: dict, key) -> None:
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        raise _not_a_model(name)
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise ValueError(
            f"{name!r} has format version {version!r}; this sk_deepunsup reads version "
            f"{FORMAT_VERSION}. Load it with the sk_deepunsup version that saved it "
            f"({manifest.get('library_version')!r})."
        )
    required = {"format", "format_version", "library_version", "sha256"}
    digests = manifest.get("sha256")
    if (not required <= set(manifest) <= required | {"signature"}
            or not isinstance(digests, dict) or set(digests) != set(_MEMBERS)):
        raise ValueError(
            f"{name!r}: the manifest has missing or unexpected entries; the file is corrupt."
        )
    for member in _MEMBERS:
        if not hmac.compare_digest(hashlib.sha256(blobs[member]).hexdigest(), str(digests[member])):
            raise ValueError(
                f"{name!r}: {member} was changed after saving (checksum mismatch); the "
                "file is corrupt."
            )
    if key is None:
        return
    signed = manifest.get("signature")
    mac = signed.get("hmac_sha256") if isinstance(signed, dict) else None
    if not isinstance(mac, str):
        raise ValueError(
            f"{name!r} is not signed (it was saved without key=); it cannot be verified "
            "with this key."
        )
    if not hmac.compare_digest(mac, signature(key, manifest)):
        raise ValueError(
            f"{name!r}: the signature does not match this key: the file was edited after "
            "saving, or signed with another key."
        )


def _read_npz(blob: bytes) -> dict:
    """The arrays of ``arrays.npz``; each header's size is checked before reading it."""
    fmt = np.lib.format
    arrays = {}
    with zipfile.ZipFile(io.BytesIO(blob)) as zf:
        if sum(info.file_size for info in zf.infolist()) > len(blob):
            raise ValueError("arrays.npz unpacks to more than its size")
        for info in zf.infolist():
            key = info.filename.removesuffix(".npy")
            if key == info.filename or key in arrays:
                raise ValueError(f"unexpected member {info.filename!r} in arrays.npz")
            with zf.open(info) as fh:
                version = fmt.read_magic(fh)
                if version not in ((1, 0), (2, 0)):
                    raise ValueError(f"array {key!r} has .npy version {version}")
                if version == (1, 0):
                    shape, _, dtype = fmt.read_array_header_1_0(fh)
                else:
                    shape, _, dtype = fmt.read_array_header_2_0(fh)
            if dtype.hasobject or dtype.kind not in _ARRAY_KINDS:
                raise ValueError(f"array {key!r} has dtype {dtype}, which a model never holds")
            if math.prod(shape) * dtype.itemsize > info.file_size:
                raise ValueError(f"array {key!r} declares shape {shape}, larger than its data")
            with zf.open(info) as fh:
                arrays[key] = fmt.read_array(fh, allow_pickle=False)
    return arrays


def _fields(value: dict, *names: str) -> list:
    """The values of exactly the keys ``names`` (besides the tag) of a tagged value."""
    extra, missing = set(value) - {"$t", *names}, set(names) - set(value)
    if extra or missing:
        which = f"unexpected keys {sorted(extra)}" if extra else f"missing keys {sorted(missing)}"
        raise ValueError(f"{which} in a {value['$t']!r} value")
    return [value[n] for n in names]


def _typed(value, types, what: str):
    if not isinstance(value, types) or isinstance(value, bool) and bool not in types:
        raise ValueError(f"{what} has type {type(value).__name__}")
    return value


def _numeric_dtype(text) -> np.dtype:
    dtype = np.dtype(_typed(text, str, "a dtype"))
    if dtype.kind not in "biufcU":
        raise ValueError(f"unexpected dtype {dtype}")
    return dtype


class _Reader:
    """Decodes estimator.json; every reference, key and type is checked."""

    def __init__(self, arrays, tensors):
        self.arrays = arrays
        self.tensors = tensors
        self.used: set = set()
        self.unavailable: set[str] = set()

    def _ref(self, store, key, what):
        if not isinstance(key, str) or key not in store or (what, key) in self.used:
            raise ValueError(f"a reference to a missing {what} {key!r}")
        self.used.add((what, key))
        return store[key]

    def decode(self, value, depth: int):
        if depth > MAX_DEPTH:
            raise ValueError(f"values nested deeper than {MAX_DEPTH} levels")
        if value is None or isinstance(value, (bool, str, int, float)):
            return value
        if isinstance(value, list):
            return [self.decode(v, depth + 1) for v in value]
        if not isinstance(value, dict) or "$t" not in value:
            raise ValueError("a JSON object without a type tag")
        tag = value["$t"]
        if tag == "npscalar":
            dtype, v = _fields(value, "dtype", "v")
            dtype = _numeric_dtype(dtype)
            kinds = str if dtype.kind == "U" else (bool, int, float)
            return dtype.type(_typed(v, kinds, "a scalar"))
        if tag == "strarray":
            shape, v = _fields(value, "shape", "v")
            shape = [_typed(s, int, "a shape") for s in _typed(shape, list, "a shape")]
            if len(shape) > 32 or min(shape, default=0) < 0 or math.prod(shape) != len(v):
                raise ValueError(f"a string array of shape {shape} holding {len(v)} strings")
            return np.array([_typed(s, str, "a string") for s in v], dtype=object).reshape(shape)
        if tag in ("ndarray", "tensor"):
            (key,) = _fields(value, "key")
            if tag == "ndarray":
                return self._ref(self.arrays, key, "array")
            return self._ref(self.tensors, key, "tensor")
        if tag in ("device", "nptype", "dtype", "tuple", "random_state"):
            (v,) = _fields(value, "v")
            if tag == "device":
                return torch.device(_typed(v, str, "a device"))
            if tag == "nptype":
                return _numeric_dtype(v).type
            if tag == "dtype":
                return np.dtype(_typed(v, str, "a dtype"))
            if tag == "tuple":
                return tuple(self.decode(x, depth + 1) for x in _typed(v, list, "a tuple"))
            rs = np.random.RandomState()
            rs.set_state(self.decode(v, depth + 1))
            return rs
        if tag == "dict":
            (items,) = _fields(value, "v")
            out = {}
            for pair in _typed(items, list, "a dict"):
                k, v = _typed(pair, list, "a dict item")
                k = self.decode(k, depth + 1)
                if not isinstance(k, (str, int, float, bool, tuple, type(None))):
                    raise ValueError(f"a dict key of type {type(k).__name__}")
                out[k] = self.decode(v, depth + 1)
            return out
        if tag == "estimator":
            return self.estimator(value, depth + 1)
        raise ValueError(f"an unknown value tag {tag!r}")

    def estimator(self, node, depth: int):
        if depth > MAX_DEPTH:
            raise ValueError(f"estimators nested deeper than {MAX_DEPTH} levels")
        class_name, state_node, modules = _fields(node, "class", "state", "modules")
        cls = _resolve_class(class_name)
        _typed(state_node, dict, "an estimator's state")
        for attr in [*state_node, *_typed(modules, dict, "an estimator's networks")]:
            _check_attribute(cls, attr)
        state = {attr: self.decode(v, depth + 1) for attr, v in state_node.items()}
        _drop_machine_parameters(cls, state)
        missing = sorted(set(cls._get_param_names()) - set(state))
        if missing:
            raise ValueError(
                f"{cls.__name__} lacks its parameters {missing} (written by another "
                "version of its library, or edited)"
            )
        fitted_on = state.get("device_")
        target = None
        if isinstance(fitted_on, str):
            target = torch.device(fitted_on)
            if not device_available(target):
                self.unavailable.add(fitted_on)
                target = torch.device("cpu")
                state["device_"] = "cpu"
        est = cls.__new__(cls)
        est.__dict__.update(state)
        if hasattr(cls, "_parameter_constraints"):
            try:
                est._validate_params()
            except InvalidParameterError as exc:
                raise ValueError(f"an invalid parameter of {cls.__name__} ({exc})") from None
        if modules and not isinstance(est, TorchStateMixin):
            raise ValueError(f"networks stored for {cls.__name__}, which has none")
        for attr, weights in modules.items():
            if attr in state:
                raise ValueError(f"{cls.__name__}.{attr} stored twice")
            state_dict = {
                str(k): self._ref(self.tensors, ref, "tensor")
                for k, ref in _typed(weights, dict, "a network's weights").items()
            }
            module = rebuild_checked(est, attr, tensor_layout(state_dict))
            module.load_state_dict(state_dict, strict=True)
            if target is not None:
                module.to(target)
            setattr(est, attr, module)
        check_optimizer_state(est)
        return est


def _drop_machine_parameters(cls, state: dict) -> None:
    """Reset the parameters of :data:`MACHINE_PARAMETERS` in ``state`` to their defaults, warning."""
    for param in MACHINE_PARAMETERS & set(cls._get_param_names()) & set(state):
        default = inspect.signature(cls.__init__).parameters[param].default
        if state[param] is not default and state[param] != default:
            warnings.warn(
                f"the file sets {cls.__name__}'s {param}={state[param]!r}, a place on this "
                f"machine, which sk_deepunsup.load never takes from a file; it loads as "
                f"{param}={default!r}. Set it after loading if you want it "
                f"(model.set_params({param}=...)).",
                UserWarning,
                stacklevel=2,
            )
            state[param] = default


def _check_attribute(cls, attr) -> None:
    """An entry of a file's state may not shadow the class (``transform``, ``__class__``)."""
    if not isinstance(attr, str) or not attr.isidentifier() or attr.startswith("__"):
        raise ValueError(f"{cls.__name__} has an attribute named {attr!r}")
    if hasattr(cls, attr):
        raise ValueError(
            f"an entry {attr!r} in the state of {cls.__name__} would shadow its "
            f"{type(getattr(cls, attr, None)).__name__} of that name"
        )


def read_file(path, key=None):
    """The estimator in ``path`` and the unavailable devices it was fitted on."""
    key = check_key(key)
    name = os.fspath(path)
    blobs = _read_members(name)
    manifest = _json(blobs["manifest.json"], f"{name!r}: manifest.json")
    _check_manifest(name, manifest, blobs, key)
    st = safetensors_module()
    tree = _json(blobs["estimator.json"], f"{name!r}: estimator.json")
    try:
        arrays = _read_npz(blobs["arrays.npz"])
        tensors = st.load(blobs["weights.safetensors"])
    except (ValueError, OSError, zipfile.BadZipFile, EOFError, SafetensorError) as exc:
        raise ValueError(f"{name!r} could not be read ({exc}); the file is corrupt.") from None
    if not all_finite(tensors.values()):
        raise ValueError(
            f"{name!r} holds network weights that are NaN or infinite; the file is "
            "corrupt or was edited."
        )
    reader = _Reader(arrays, tensors)
    if not isinstance(tree, dict) or tree.get("$t") != "estimator":
        raise ValueError(f"{name!r} holds no estimator; the file is corrupt.")
    try:
        estimator = reader.estimator(tree, 0)
    except _ForeignClassError:
        raise
    except (ValueError, TypeError, KeyError, AttributeError, IndexError, OverflowError,
            RuntimeError, NotImplementedError, RecursionError) as exc:
        raise ValueError(
            f"{name!r} is corrupt or was edited: {str(exc).rstrip('.')}."
        ) from None
    unused = len(arrays) + len(tensors) - len(reader.used)
    if unused:
        raise ValueError(
            f"{name!r} holds {unused} arrays or tensors nothing refers to; it is corrupt."
        )
    return estimator, reader.unavailable
