"""Editing saved model files as a forger would: members rewritten, SHA-256 digests recomputed.

Shared by the tests of hostile files; only the reader's own checks then stand
between such a file and the machine.
"""

import hashlib
import json
import zipfile

import pytest
import safetensors.torch as st

from sk_deepunsup import DeepAutoencoder

MEMBERS = ("estimator.json", "arrays.npz", "weights.safetensors")


def members(path):
    with zipfile.ZipFile(path) as zf:
        return {n: zf.read(n) for n in zf.namelist()}


def write_members(path, blobs, compression=zipfile.ZIP_DEFLATED):
    with zipfile.ZipFile(path, "w", compression=compression) as zf:
        for name, data in blobs.items():
            zf.writestr(name, data)


def forge(path, tree=None, blobs=None, manifest=None, stored=False):
    """Edit a saved file, then recompute its digests as anyone can."""
    parts = members(path)
    if tree is not None:
        doc = json.loads(parts["estimator.json"])
        tree(doc)
        parts["estimator.json"] = json.dumps(doc).encode()
    if blobs is not None:
        blobs(parts)
    doc = json.loads(parts["manifest.json"])
    doc["sha256"] = {m: hashlib.sha256(parts[m]).hexdigest() for m in MEMBERS if m in parts}
    if manifest is not None:
        manifest(doc)
    parts["manifest.json"] = json.dumps(doc).encode()
    write_members(path, parts, zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED)
    return path


def tensors_edit(edit):
    """A ``blobs`` edit for :func:`forge` that calls ``edit(tensors, tree)`` on the weights."""

    def blobs(parts):
        tensors = st.load(parts["weights.safetensors"])
        edit(tensors, json.loads(parts["estimator.json"]))
        parts["weights.safetensors"] = st.save(tensors)

    return blobs


def state(doc):
    return doc["state"]


@pytest.fixture
def rebuilt_devices(monkeypatch):
    """The device of every network load builds."""
    devices = []
    real = DeepAutoencoder._rebuild_module

    def spy(self, name):
        module = real(self, name)
        devices.extend({p.device.type for p in module.parameters()})
        return module

    monkeypatch.setattr(DeepAutoencoder, "_rebuild_module", spy)
    return devices
