"""What CPU this is and which version of collabc's hot kernels runs on it.

The hot C kernels (the sparse SGD / Adagrad / Adam drivers, the exact path's optimizer steps,
the dot model's forward, the NN layers, top-n ranking, ALS and BPR) are compiled once per instruction set: on x86-64
Linux for AVX-512 ('avx512'), AVX2 ('avx2') and the x86-64 baseline ('generic'); elsewhere
(aarch64, macOS, clang builds) 'generic' only. collabc uses the widest the CPU runs. Every
version computes the same float32 operations in the same order: the choice changes speed, never
a result. The environment variable COLLABC_ISA, read when collabc is imported, forces one
(`avx512`, `avx2`, `generic` or its alias `scalar`, or `auto`); an unknown name, or a version
this CPU or build cannot run, makes the import fail with a ValueError saying what can be used.
See docs/performance.md."""
import os
import platform

from . import _core

# the instruction-set extensions worth naming for these kernels, in the order printed
_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512dq", "avx512bw", "avx512vl",
          "avx512_bf16", "neon", "asimd", "sve", "sve2")


def default_threads():
    "All cores, at most 64 (the most a C driver starts): the default `n_threads`."
    return max(1, min(os.cpu_count() or 1, 64))


def _proc_cpuinfo(path="/proc/cpuinfo"):
    "(model, flags) from /proc/cpuinfo (Linux), or (None, set()) where there is none."
    try:
        with open(path) as f:
            text = f.read()
    except OSError:
        return None, set()
    model, flags = None, set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if model is None and key in ("model name", "cpu model", "hardware"):
            model = value.strip() or None
        elif not flags and key in ("flags", "features"):
            flags = set(value.split())
    return model, flags


def cpu_info():
    """A dict describing this CPU and the kernel version collabc runs on it:

    - `model`: the CPU's name (/proc/cpuinfo's model name, else platform.processor(), else
      the machine type),
    - `machine`: platform.machine() ('x86_64', 'aarch64', ...),
    - `isa_found`: the instruction-set extensions found that matter here (e.g. 'avx2', 'fma',
      'avx512f'; 'asimd' is NEON on aarch64), in a fixed order,
    - `built`: the kernel versions this build has, widest first,
    - `supported`: those this CPU runs,
    - `clone`: the version in use ('avx512', 'avx2' or 'generic'),
    - `forced`: the value of COLLABC_ISA if it chose the version, else None.

        >>> collabc.cpu_info()['clone']
        'avx512'
    """
    model, flags = _proc_cpuinfo()
    built, supported = _core.isa_levels()
    env = os.environ.get("COLLABC_ISA") or None
    return {
        "model": model or platform.processor() or platform.machine() or "unknown",
        "machine": platform.machine(),
        "isa_found": [f for f in _FLAGS if f in flags],
        "built": list(built),
        "supported": list(supported),
        "clone": _core.isa(),
        "forced": env,
    }


def format_cpu_info(info=None):
    "cpu_info() as one line: model, extensions found, the version in use (and whether forced)."
    info = info or cpu_info()
    forced = f" (forced by COLLABC_ISA={info['forced']})" if info["forced"] else ""
    return (f"CPU: {info['model']} [{info['machine']}]; extensions: "
            f"{' '.join(info['isa_found']) or 'none found'}; kernel versions built: "
            f"{', '.join(info['built'])}; running: {info['clone']}{forced}")
