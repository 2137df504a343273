"""Reference draws of CPython's `random` module for the Go reimplementation (pyrandom.go) and the
notebook / paper position modes (positions.go).

Usage: pyrandom_ref.py IN.json
IN.json holds {"programs": [{"seed": int, "ops": [op, ...]}, ...],
               "notebook": [{"seed", "lengths", "n_methods", "n_layers"}, ...],
               "paper": [{"seed", "lengths", "start"}, ...]}
where an op is ["bits", k] (random.getrandbits(k)) or ["randint", a, b] (random.randint(a, b)).
Every program runs on the module-level generator after random.seed(seed), as a notebook does.
Prints {"programs": [[result, ...], ...], "notebook": [[[[pos per doc] per layer] per method], ...],
"paper": [[pos or null per doc], ...], "python": sys.version}; big integers as strings.

notebook: for each method, each layer, each document (in that order) random.randint(0, len - 1);
a document of length 0 draws nothing (null). paper: one random.randint(start, len - 2) per
document; a document too short for that range draws nothing (null).
"""
import json
import random
import sys

with open(sys.argv[1]) as f:
    spec = json.load(f)

progs = []
for p in spec.get("programs", []):
    random.seed(p["seed"])
    res = []
    for op in p["ops"]:
        if op[0] == "bits":
            res.append(str(random.getrandbits(op[1])))
        elif op[0] == "randint":
            res.append(str(random.randint(op[1], op[2])))
        else:
            raise SystemExit(f"unknown op {op!r}")
    progs.append(res)

notebook = []
for c in spec.get("notebook", []):
    random.seed(c["seed"])
    per_method = []
    for _ in range(c["n_methods"]):
        per_layer = []
        for _ in range(c["n_layers"]):
            per_layer.append([random.randint(0, n - 1) if n > 0 else None for n in c["lengths"]])
        per_method.append(per_layer)
    notebook.append(per_method)

paper = []
for c in spec.get("paper", []):
    random.seed(c["seed"])
    paper.append([random.randint(c["start"], n - 2) if n - 2 >= c["start"] else None for n in c["lengths"]])

json.dump({"programs": progs, "notebook": notebook, "paper": paper, "python": sys.version}, sys.stdout)
