"""setuptools glue for simplescope: metadata lives in pyproject.toml; this file adds the native
build step (tools/build_native.py: the libtorch shim and `go build -buildmode=c-shared ./capi`
into simplescope/_lib/) and marks the wheel platform-specific (py3-none-linux_x86_64: the
libraries do not depend on the Python ABI, only on the platform and, for the shim, on torch,
which the package rebuilds for at import when versions differ)."""
import os
import sys

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.dist import Distribution

try:
    from setuptools.command.bdist_wheel import bdist_wheel
except ImportError:  # setuptools < 70.1
    from wheel.bdist_wheel import bdist_wheel

ROOT = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(ROOT, "tools"))
import build_native  # noqa: E402


class BinaryDistribution(Distribution):
    """Ships shared libraries: install to platlib, never a pure wheel."""

    def has_ext_modules(self):
        return True


class BuildPyWithNative(build_py):
    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            print("simplescope: editable install; run `make build` for build/lib (found by the package)",
                  file=sys.stderr)
            return
        build_temp = self.get_finalized_command("build").build_temp
        out = os.path.join(self.build_lib, "simplescope", "_lib")
        try:
            build_native.build(ROOT, out, os.path.join(build_temp, "simplescope-native"))
        except build_native.BuildError as e:
            raise SystemExit(f"error: {e}")


class BdistWheelPlatform(bdist_wheel):
    def finalize_options(self):
        super().finalize_options()
        self.root_is_pure = False

    def get_tag(self):
        _, _, plat = super().get_tag()
        return "py3", "none", plat


setup(
    distclass=BinaryDistribution,
    cmdclass={"build_py": BuildPyWithNative, "bdist_wheel": BdistWheelPlatform},
    # Keep setuptools' output out of build/lib, which holds `make build`'s libraries.
    options={"build": {"build_base": os.path.join("build", "setuptools")}},
)
