"""Build the C extension collabc._core from csrc/*.c (plain C11) plus the binding files
collabc/_core*.c (the only files that include Python.h and NumPy)."""
import glob
import os
import sys

import numpy as np
from setuptools import Extension, setup

csrc = sorted(glob.glob(os.path.join("csrc", "*.c")))
headers = sorted(glob.glob(os.path.join("csrc", "*.h"))) + [os.path.join("collabc", "_binding.h")]
binding = sorted(glob.glob(os.path.join("collabc", "_core*.c")))

if sys.platform == "win32":
    extra_compile_args = ["/O2"]
else:
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
    extra_link_args=[] if sys.platform == "win32" else ["-pthread"],
)

setup(ext_modules=[core])
