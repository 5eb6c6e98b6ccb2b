"""Safe persistence: ``save(estimator, path)`` and ``load(path)`` without pickle.

A saved model is one zip file holding

- ``manifest.json``: the format name and version, a SHA-256 digest of every
  other member and, when saved with a ``key``, an HMAC-SHA256 signature;
- ``estimator.json``: the estimator tree: class names, parameters, fitted
  scalars and lists, with arrays and tensors referenced by key;
- ``arrays.npz``: the numpy arrays (read with ``allow_pickle=False``);
- ``weights.safetensors``: every torch tensor (network weights, optimizer
  moments).

Loading never unpickles, never calls ``torch.load`` and never imports a module
the file names (see ``_model_file``, the format and its reader).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import secrets
import stat
import time
import warnings
import zipfile

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

import numpy as np
import torch
from sklearn.base import BaseEstimator
from torch import nn

from ._model_file import (
    FORMAT_NAME,
    FORMAT_VERSION,
    check_key,
    class_name,
    read_file,
    safetensors_module,
    signature,
)
from ._nn import all_finite, distributed

__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "load", "save"]


# -- saving ---------------------------------------------------------------------------


class _Writer:
    def __init__(self):
        self.arrays: dict[str, np.ndarray] = {}
        self.tensors: dict[str, torch.Tensor] = {}

    def array(self, value: np.ndarray) -> str:
        key = f"a{len(self.arrays)}"
        self.arrays[key] = value
        return key

    def tensor(self, value: torch.Tensor, where: str) -> str:
        value = value.detach().to("cpu").contiguous()
        if not all_finite([value]):
            raise ValueError(
                f"cannot save {where}: it holds NaN or infinite values (the training "
                "diverged); refit with a lower learning_rate_init before saving."
            )
        key = f"t{len(self.tensors)}"
        self.tensors[key] = value
        return key

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
                    raise TypeError(f"cannot save {where}: an object array holding non-strings.")
                return {"$t": "strarray", "shape": list(value.shape), "v": value.ravel().tolist()}
            return {"$t": "ndarray", "key": self.array(value)}
        if isinstance(value, torch.Tensor):
            return {"$t": "tensor", "key": self.tensor(value, where)}
        if isinstance(value, torch.device):
            return {"$t": "device", "v": str(value)}
        if isinstance(value, tuple):
            items = [self.encode(v, f"{where}[{i}]") for i, v in enumerate(value)]
            return {"$t": "tuple", "v": items}
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
        name = class_name(type(est))
        if hasattr(type(est), "_parameter_constraints"):
            est._validate_params()  # load refuses what does not validate
        state, modules = {}, {}
        for attr, value in vars(est).items():
            if isinstance(value, nn.Module):
                _check_module_rebuildable(value, f"{where}.{attr}")
                modules[attr] = {
                    k: self.tensor(t, f"{where}.{attr}") for k, t in value.state_dict().items()
                }
            else:
                state[attr] = self.encode(value, f"{where}.{attr}")
        return {"$t": "estimator", "class": name, "state": state, "modules": modules}


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


#: A temporary file younger than this is never taken for a dead save's leftover.
STALE_TEMP_SECONDS = 60


def _remove_stale_temps(directory: str, base: str) -> None:
    """Delete the temporary files that killed saves to the same target left behind.

    A save holds an exclusive lock on its temporary file while writing it; a
    file of that name that is older than :data:`STALE_TEMP_SECONDS` and can be
    locked has no live writer. (Without ``fcntl``, on Windows, they stay.)
    """
    if fcntl is None:
        return
    pattern = re.compile(rf"\.{re.escape(base)}\.[0-9a-f]{{12}}\.tmp")
    try:
        names = [n for n in os.listdir(directory) if pattern.fullmatch(n)]
    except OSError:
        return
    for name in names:
        temp = os.path.join(directory, name)
        try:
            fd = os.open(temp, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except OSError:
            continue
        try:
            if time.time() - os.fstat(fd).st_mtime < STALE_TEMP_SECONDS:
                continue
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.unlink(temp)
        except OSError:
            continue  # a live save holds it, or it is gone
        finally:
            os.close(fd)


def _write_atomically(path: str, members: dict) -> None:
    """Write the zip to a new file beside ``path``; rename it over ``path`` when complete.

    The previous file at ``path`` stays intact until the new one is fully
    written and flushed to disk; a failure removes the partial file, and one
    a killed process left is removed by the next save to the same target. The
    new file keeps the previous one's permissions (e.g. ``chmod 600``); a
    symbolic link at ``path`` stays, and its target is replaced.
    """
    path = os.path.realpath(path)  # through a symbolic link: replace its target, keep the link
    directory = os.path.dirname(path)
    base = os.path.basename(path)
    _remove_stale_temps(directory, base)
    while True:
        temp = os.path.join(directory, f".{base}.{secrets.token_hex(6)}.tmp")
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            break
        except FileExistsError:  # pragma: no cover - 48 random bits
            continue
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)  # held while writing: the file has a live writer
        with os.fdopen(fd, "wb") as fh:
            try:
                os.chmod(temp, stat.S_IMODE(os.stat(path).st_mode))
            except FileNotFoundError:
                pass  # a new file: the mode os.open gave it (0o666 less the umask)
            with zipfile.ZipFile(fh, "w", compression=zipfile.ZIP_DEFLATED) as zf:
                for member, data in members.items():
                    zf.writestr(member, data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(temp, path)
    except BaseException:
        try:
            os.unlink(temp)
        except FileNotFoundError:
            pass
        raise
    try:  # make the rename itself durable (POSIX; not possible on Windows)
        dir_fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover
        return
    try:
        os.fsync(dir_fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(dir_fd)


def save(estimator, path, *, key=None) -> None:
    """Save a scikit-learn estimator of this package to ``path``, without pickle.

    Works for every estimator of ``sk_deepunsup``, fitted or not, and for
    scikit-learn pipelines around them (``Pipeline``, ``FeatureUnion``, the
    scalers, ``PCA``, ``TruncatedSVD``, ``TfidfTransformer``,
    ``SimpleImputer``, ``VarianceThreshold``). Network weights go to
    safetensors, everything else to JSON and ``.npz``, in one zip file that
    :func:`load` reads back without executing code from the file.

    The file is written beside ``path`` under a temporary name and renamed
    over ``path`` only once complete and flushed to disk: a save that fails
    (full disk, killed process) leaves a previous file at ``path`` intact.

    Parameters
    ----------
    estimator : estimator
        The (fitted) estimator or pipeline.
    path : str or path-like
        File to write (by convention ending in ``.skdu``); replaced. In a
        ``torch.distributed`` job only rank 0 writes it (every rank holds the
        same fitted model), so every rank may call ``save``.
    key : bytes or str, default=None
        Secret of at least 16 bytes. When given, the file is signed with
        HMAC-SHA256 and ``load(path, key=key)`` refuses it unless unchanged
        since this save. Without a key the file carries SHA-256 digests,
        which catch accidental corruption but not a deliberate edit: anyone
        can recompute them.

    Raises
    ------
    TypeError
        When the estimator is of a class ``load`` would not accept, or holds
        a value that is not plain data (a callable, a ``joblib.Memory``, a
        custom torch module); the message names it.
    ValueError
        When a network's weights are not finite.

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
    key = check_key(key)
    if not distributed.writes_files():  # data-parallel ranks hold the same model
        return
    st = safetensors_module()
    from . import __version__

    writer = _Writer()
    tree = writer.estimator(estimator, "estimator")
    members = {"estimator.json": json.dumps(tree, separators=(",", ":")).encode()}
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
    if key is not None:
        manifest["signature"] = {"hmac_sha256": signature(key, manifest)}
    _write_atomically(os.fspath(path), {"manifest.json": json.dumps(manifest, indent=1), **members})


# -- loading --------------------------------------------------------------------------


def load(path, *, key=None):
    """Load an estimator written by :func:`save`.

    Nothing in the file is executed: no pickle, no ``torch.load``, and no
    module the file names is imported. Classes come from a fixed list (this
    package's estimators and the scikit-learn classes :func:`save` accepts);
    every size is checked before it is allocated; a network is built only
    after its parameters were found to describe exactly the stored weights,
    which must be finite. A model fitted on a GPU loads on a CPU-only
    machine: its networks go to the CPU and ``device_`` becomes ``"cpu"``,
    with a warning.

    What is checked without a key: the SHA-256 digests of the members,
    which catch a corrupted file (a truncated download, a flipped bit) but
    not a deliberate edit, since anyone can recompute them. An edited file
    is still refused if it is malformed, but a well-formed edit (other
    weights, other parameters that fit them) loads. To detect any edit, save
    with a secret ``key`` and pass the same key here.

    Parameters
    ----------
    path : str or path-like
        A file written by :func:`save`.
    key : bytes or str, default=None
        The secret the file was saved with. When given, the file must carry
        a valid HMAC-SHA256 signature made with it.

    Returns
    -------
    estimator : estimator
        Gives the same outputs as the saved one.

    Raises
    ------
    ValueError
        When the file is not an sk_deepunsup model, has an unknown format
        version, is corrupt or malformed, exceeds a size limit, or (with
        ``key``) is unsigned or its signature does not match.
    TypeError
        When the file names a class outside the list above.
    """
    estimator, unavailable = read_file(path, key)
    if unavailable:
        warnings.warn(
            f"{type(estimator).__name__} was fitted on {', '.join(sorted(unavailable))}, "
            "which is not available here; it was loaded on the CPU.",
            UserWarning,
        )
    return estimator
