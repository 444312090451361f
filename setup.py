"""Build the C extension collabc._core from csrc/*.c (plain C11) plus the binding files
collabc/_core*.c (the only files that include Python.h and NumPy).

Needs a C11 compiler (gcc or clang) and NumPy >= 2 at build time. Linux and macOS only: the
sparse training path runs on POSIX threads (csrc/sparse.c includes <pthread.h>), so a Windows
build stops here with a message instead of failing in the compiler."""
import glob
import os
import sys

import numpy as np
from setuptools import Extension, setup

csrc = sorted(glob.glob(os.path.join("csrc", "*.c")))
headers = sorted(glob.glob(os.path.join("csrc", "*.h"))) + [os.path.join("collabc", "_binding.h")]
binding = sorted(glob.glob(os.path.join("collabc", "_core*.c")))

if sys.platform == "win32":
    sys.exit("collabc builds on Linux and macOS only: its C core uses POSIX threads (pthreads), "
             "which Windows compilers do not provide. On Windows, install it inside WSL "
             "(Windows Subsystem for Linux).")

# Optimised but IEEE-exact: no -ffast-math. -fno-math-errno only lets sqrtf vectorise;
# -ffp-contract=off keeps a*b+c as two roundings so results match the NumPy reference.
extra_compile_args = ["-std=c11", "-pthread", "-O3", "-fno-math-errno", "-ffp-contract=off",
                      "-Wall", "-Wextra", "-Wno-unused-parameter",
                      "-Wno-missing-field-initializers"]

core = Extension(
    "collabc._core",
    sources=binding + csrc,
    include_dirs=[np.get_include(), "csrc"],
    depends=headers,
    define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_23_API_VERSION")],
    extra_compile_args=extra_compile_args,
    extra_link_args=["-pthread"],
)

setup(ext_modules=[core])
