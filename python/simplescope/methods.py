"""What a method is: one of the built-in names or a dict describing a custom target prompt.

    BUILTIN_METHODS   the names the Go engine knows ("logitlens", "patchscope", "simplescope")
    method_specs(m)   a name, a dict, or a list of them -> the list of dicts the engine reads

Only numpy is imported, so the CLI can name the built-ins without loading the native library.
"""
from __future__ import annotations

import numpy as np

#: The methods the engine has built in; also the default of Model.evaluate, Model.inspect and the CLI.
BUILTIN_METHODS = ("logitlens", "patchscope", "simplescope")
DEFAULT_METHODS = BUILTIN_METHODS


def method_spec(m) -> dict:
    """A method is a built-in name or a dict {name, target, placeholder, target_layer}."""
    if isinstance(m, str):
        return {"name": m}
    if isinstance(m, dict):
        if "name" not in m:
            raise ValueError(f"method {m!r} has no 'name'")
        spec = dict(m)
        tl = spec.get("target_layer")
        if tl is not None and not isinstance(tl, (str, int, np.integer)):
            raise ValueError(f"method {spec['name']!r}: target_layer must be 'same', 'last', 'all' or an int, got {tl!r}")
        return spec
    raise TypeError(f"a method is a name or a dict, got {type(m).__name__}")


def method_specs(methods) -> list[dict]:
    """The specs of one method (a name or a dict) or of a list of them."""
    if isinstance(methods, (str, dict)):
        methods = [methods]
    return [method_spec(m) for m in methods]
