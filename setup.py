"""Build orbitpy: the C core (csrc/, built with -Werror as a static library)
and the Cython binding over it."""

import glob
import os
import sysconfig

from Cython.Build import cythonize
from setuptools import Extension, setup

# Both backends behind csrc/orbit_sys.h are built in: the userspace backend
# (csrc/us/) and the kernel backend (csrc/ks/); the process picks one when
# it starts (csrc/sys_select.c, ORBITPY_BACKEND=kernel|user|auto).
CORE_SOURCES = sorted(glob.glob("csrc/*.c") + glob.glob("csrc/us/*.c") + glob.glob("csrc/ks/*.c"))
CORE_FLAGS = ["-O2", "-g", "-std=gnu11", "-D_GNU_SOURCE", "-Wall", "-Wextra", "-Werror",
              "-fPIC", "-fvisibility=hidden"]

core_lib = ("orbitcore", {"sources": CORE_SOURCES, "include_dirs": ["csrc"],
                          "cflags": CORE_FLAGS})

# The heap (Python objects in arenas): allocator hooks and pre-call checks,
# the C of the orbitpy._heap package.  C that knows CPython (internal headers
# included), so it is not part of the core.
HEAP_SOURCES = sorted(glob.glob("src/orbitpy/_heap/*.c"))
heap_lib = ("orbitheap", {"sources": HEAP_SOURCES,
                          "include_dirs": ["csrc", "src/orbitpy/_heap",
                                           sysconfig.get_paths()["include"]],
                          "cflags": CORE_FLAGS})

ext = Extension(
    "orbitpy._core",
    sources=["src/orbitpy/_core.pyx"],
    include_dirs=["csrc", "src/orbitpy/_heap"],
    extra_compile_args=["-O2", "-g"],
    libraries=["pthread"],
)

# Benchmark helpers for benchmarks/ (uses nothing from the C core).
bench_ext = Extension(
    "orbitpy._bench",
    sources=["src/orbitpy/_bench.pyx"],
    extra_compile_args=["-O2", "-g"],
)

setup(
    libraries=[heap_lib, core_lib],
    ext_modules=cythonize([ext, bench_ext], compiler_directives={"language_level": "3"}),
)
