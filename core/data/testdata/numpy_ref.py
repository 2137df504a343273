"""Reference outputs of NumPy's default generator for the Go reimplementation (numpyrng.go).

Usage: numpy_ref.py SEED:N [SEED:N ...]
Prints one JSON object: {"SEED:N": {"raw": first 8 PCG64 64-bit outputs as strings,
"perm": np.random.default_rng(SEED).permutation(N)}}. The permutation call is the one
datasets.Dataset.shuffle(seed=SEED) makes.
"""
import json
import sys

import numpy as np

out = {}
for arg in sys.argv[1:]:
    seed, n = (int(x) for x in arg.split(":"))
    raw = np.random.default_rng(seed).bit_generator.random_raw(8)
    perm = np.random.default_rng(seed).permutation(n)
    out[arg] = {"raw": [str(int(x)) for x in raw], "perm": [int(x) for x in perm]}
json.dump(out, sys.stdout)
