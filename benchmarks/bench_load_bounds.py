"""Time and peak memory of sk_deepunsup.load on the two hostile files of docs/persistence.rst.

A 3 KB file declaring ``hidden_layer_sizes=(8,) * 20000`` and an 8 MB file whose
``arrays.npz`` carries 600 MB of deflated zeros, both edited from a real saved
model with their digests recomputed. Each load runs in a fresh process that has
loaded a real model first, so imports are not counted (Linux: peak RSS is VmHWM).

Run: ``python benchmarks/bench_load_bounds.py``
"""

import hashlib
import json
import os
import subprocess
import sys
import tempfile
import warnings
import zipfile

import numpy as np

from sk_deepunsup import DeepAutoencoder, save

MEMBERS = ("estimator.json", "arrays.npz", "weights.safetensors")

CHILD = """
import sys, time
import sk_deepunsup

def peak_mb():  # this process's own high-water mark (ru_maxrss would count the parent's)
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmHWM")) / 1024

sk_deepunsup.load(sys.argv[2])
before = peak_mb()
start = time.perf_counter()
try:
    sk_deepunsup.load(sys.argv[1])
    outcome = "loaded"
except Exception as exc:
    outcome = f"{type(exc).__name__}: {str(exc)[:110]}"
took = time.perf_counter() - start
after = peak_mb()
print(f"{took:.2f} s, peak RSS {before:.0f} MB -> {after:.0f} MB; {outcome}")
"""


def members(path):
    with zipfile.ZipFile(path) as zf:
        return {n: zf.read(n) for n in zf.namelist()}


def write(path, parts):
    manifest = json.loads(parts["manifest.json"])
    manifest["sha256"] = {m: hashlib.sha256(parts[m]).hexdigest() for m in MEMBERS}
    parts["manifest.json"] = json.dumps(manifest).encode()
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in parts.items():
            zf.writestr(name, data)


def main():
    folder = tempfile.mkdtemp()
    base = os.path.join(folder, "base.skdu")
    X = np.random.default_rng(0).random((40, 6)).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        save(DeepAutoencoder(hidden_layer_sizes=(8,), max_iter=1, random_state=0).fit(X), base)
    layers, zeros = os.path.join(folder, "layers.skdu"), os.path.join(folder, "zeros.skdu")
    parts = members(base)
    doc = json.loads(parts["estimator.json"])
    doc["state"]["hidden_layer_sizes"]["v"] = [8] * 20000
    parts["estimator.json"] = json.dumps(doc).encode()
    write(layers, parts)
    parts = members(base)
    noise = np.random.default_rng(0).bytes(7_500_000)
    parts["arrays.npz"] = parts["arrays.npz"] + noise + bytes(600_000_000)
    write(zeros, parts)
    del parts
    for path in (layers, zeros):
        result = subprocess.run([sys.executable, "-c", CHILD, path, base],
                                capture_output=True, text=True)
        print(f"{os.path.basename(path)} ({os.path.getsize(path)} bytes): "
              f"{result.stdout.strip()}{result.stderr[-300:]}")


if __name__ == "__main__":
    main()
