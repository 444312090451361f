"""Fails when a hot loop of any instruction-set version of collabc's hot kernels spills.

Disassembles the built extension (`objdump -d`), finds every version of each named hot kernel
(csrc/simd.h names them NAME_avx512, NAME_avx2, NAME_generic; a build without versions has NAME
alone), finds its loops (a branch back to an earlier address of the same function: the loop is
the range from the target to the branch) and, in each hot loop, the instructions that move a
vector register (xmm / ymm / zmm; q / v on aarch64) to or from the stack: a store to, a load from
or an arithmetic operand in memory addressed off the stack pointer, or off the frame pointer in a
function that sets one up. That is what a spill looks like: a value the loop needs that did not
fit in the registers, stored and reloaded on every trip.

Hot loops: the innermost loops that do packed vector arithmetic (the loops over the factors) and
call no function (the ABI saves every vector register around a call; a kernel the loop calls is
checked as a kernel of its own: adam_rows for run_rows_adam).
With --strict, every loop that encloses one too (for the sparse kernels: the loop over ratings),
where the check then also counts stack reloads of loop invariants the compiler could not keep in
registers.

    python scripts/check_spills.py                   # the installed collabc._core
    python scripts/check_spills.py path/to/_core.so --strict -v
    python scripts/check_spills.py --kernels run_rows_sgd run_rows_adagrad

Exit status 0 when no hot loop spills (apart from the known ones listed in KNOWN, each with the
exact number of loops and why: a count that changes either way fails), 1 when one does (each
listed), 2 when objdump is missing or the extension has none of the kernels. --no-known fails on
the known ones too.
"""
import argparse
import re
import shutil
import subprocess
import sys

# the hot kernels: the sparse path's block drivers and Adam's row update, the exact path's
# optimizer steps, the NN layers, top-n ranking, ALS, BPR and the dot model's forward (dot_rows)
HOT_KERNELS = ("run_rows_sgd", "run_rows_sgd_br", "run_rows_adagrad", "run_rows_adagrad_br", "run_rows_adam",
               "run_rows_sgd_nc4", "run_rows_sgd_br_nc4", "run_rows_adagrad_nc4", "run_rows_adagrad_br_nc4",
               "adam_rows", "cf_adam_step",
               "cf_sgd_step", "cf_linear_forward", "cf_linear_backward", "cf_relu_forward",
               "cf_relu_backward", "rank_block", "gram_rows", "solve_row", "run_block", "first_bad_id",
               "dot_rows")
VERSIONS = ("avx512", "avx2", "generic")

# Versions known to move vector registers through the stack in a hot loop, with the exact number
# of such loops in a GCC 12 x86-64 build and why. The check fails when a count changes either
# way: a new spill fails it, and so does one fixed (then lower the count here, or drop the line).
KNOWN = {
    # The sparse path's rating loops (hot since expf is inline, fexp.h: they call no
    # function) are clean in every version since run_rows has four lanes (2026-12-04), the
    # chunk-by-chunk and the Adam ones included: the cold paths (the lanes before a failed
    # rating finishing, the tests' plain row order) are functions of their own, so the rating
    # code is inlined fewer times and GCC keeps the loops' values in registers.
    # The kernels for rows of 49 to 64 factors (csrc/sparse.c, CF_WHOLE): with the loops over a
    # row's chunks unrolled, the loop over ratings is the innermost one, and the check counts
    # its reads of the block context's fields (learning rate, weight decay, the y_range, the
    # tail chunk's mask), a stack variable, into vector registers: the chunk-loop kernels read
    # them the same way in the same loop, which is not innermost there. AVX-512 only (the AVX2
    # versions are clean). With four lanes (2026-12-04) GCC's layout leaves fewer such loops.
    "run_rows_sgd_nc4_avx512": (1, "loop over ratings: block context fields read from the stack"),
    "run_rows_sgd_br_nc4_avx512": (1, "loop over ratings: block context fields read from the stack"),
    "run_rows_adagrad_nc4_avx512": (1, "loop over ratings: block context fields read from the stack"),
    "run_rows_adagrad_br_nc4_avx512": (2, "loop over ratings: block context fields read from the stack"),
    # sparse Adam's row update (two passes since this change): one of its three vector loops
    # reloads its constants from the stack (the two main loops are clean)
    "adam_rows_avx2": (1, "one of three loops reloads its constants from the stack"),
    "adam_rows_generic": (1, "one of three loops reloads its constants from the stack"),
    "cf_adam_step_generic": (1, "the scalar remainder loop's constants"),
    # top-n: the 4 x 16 score tile is 16 SSE registers, all there are (the AVX2 version is clean)
    "rank_block_generic": (1, "score tile in a stack array"),
    # ALS and BPR (implicit feedback): their 16-lane vector type (as the sparse path's was) is no
    # register on AVX2 / SSE, where GCC keeps it in memory
    "solve_row_avx2": (13, "16-lane vector accumulators kept in memory (no AVX2 register)"),
    "solve_row_generic": (13, "16-lane vector accumulators kept in memory (no SSE register)"),
    "run_block_avx512": (3, "BPR: not analysed yet"),
    "run_block_avx2": (7, "BPR: 16-lane vectors kept in memory (no AVX2 register)"),
    "run_block_generic": (8, "BPR: 16-lane vectors kept in memory (no SSE register)"),
}

_HEAD = re.compile(r"^([0-9a-f]+) <([^>]+)>:$")
_INSN = re.compile(r"^\s*([0-9a-f]+):\s*(.*?)\s*$")
# x86-64 (AT&T syntax) and aarch64 branches: the target is the first hexadecimal address
_BRANCH = re.compile(r"^(j[a-z]+|loop[a-z]*|b(?:\.[a-z]+)?|cbn?z|tbn?z)\s+(?:[^,]*,\s*)*([0-9a-f]+)\b")
_X86_VEC = re.compile(r"%[xyz]mm\d+")
_X86_PACKED = re.compile(r"^v?(?:add|sub|mul|div|max|min|sqrt|fmadd\w*|and|or|xor|cmp\w*)p[sd]\b|"
                         r"^vpand|^vpor|^vpxor|^vblendm|%[yz]mm")
_A64_VEC = re.compile(r"\b[qv]\d+\b")
_A64_STACK = re.compile(r"\[sp(?:,|\])|\[x29(?:,|\])")


def disassemble(path, objdump="objdump"):
    "{function name: [(address, instruction text)]} from objdump -d."
    out = subprocess.run([objdump, "-d", "--no-show-raw-insn", "-w", path], capture_output=True,
                         text=True, check=True).stdout
    funcs, cur = {}, None
    for line in out.splitlines():
        m = _HEAD.match(line)
        if m:
            cur = funcs.setdefault(m.group(2), [])
            continue
        m = _INSN.match(line)
        if m and cur is not None and m.group(2):
            cur.append((int(m.group(1), 16), m.group(2)))
    return funcs


def loops(insns):
    "The (start, end) address ranges of the function's loops: each backward branch's."
    lo, hi = insns[0][0], insns[-1][0]
    found = set()
    for a, t in insns:
        m = _BRANCH.match(t)
        if m:
            tgt = int(m.group(2), 16)
            if lo <= tgt <= a:
                found.add((tgt, a))
    return sorted(found)


def uses_frame_pointer(insns):
    "True when the prologue sets %rbp (x29) to the stack pointer: rbp-relative is the stack."
    for _, t in insns[:12]:
        if re.match(r"mov\s+%rsp,%rbp$", t) or re.match(r"mov\s+x29,\s*sp$", t):
            return True
    return False


def stack_vector(t, fp):
    "True when instruction t moves a vector register to or from the stack."
    if _X86_VEC.search(t):
        if re.search(r"\(%rsp[,)]", t) or (fp and re.search(r"\(%rbp[,)]", t)):
            return not t.startswith(("lea", "prefetch"))
        return False
    if _A64_VEC.search(t) and re.match(r"(ld|st)[rpu1]", t):
        return bool(_A64_STACK.search(t)) if fp else bool(re.search(r"\[sp(?:,|\])", t))
    return False


def packed(t):
    return bool(_X86_PACKED.search(t)) or bool(re.match(r"f(add|mul|sub|div|max|min)\s+v\d+\.\d*s", t))


def check_function(insns, strict=False):
    """[(loop start, loop end, kind, [stack vector instructions])] for the hot loops of one
    function; kind is 'inner' (innermost, packed arithmetic) or 'outer' (--strict)."""
    fp = uses_frame_pointer(insns)
    ls = loops(insns)
    res = []
    for s, e in ls:
        body = [(a, t) for a, t in insns if s <= a <= e]
        inner = not any((s2, e2) != (s, e) and s <= s2 and e2 <= e for s2, e2 in ls)
        if any(t.startswith(("call", "bl ", "blr")) for _, t in body):
            continue  # a loop that calls: vector registers are saved around the call (the ABI)
        if inner:
            if not any(packed(t) for _, t in body):
                continue
            kind = "inner"
        else:
            if not strict or not any(packed(t) for _, t in body):
                continue
            kind = "outer"
        res.append((s, e, kind, [(a, t) for a, t in body if stack_vector(t, fp)]))
    return res


def versions_of(funcs, kernel):
    "{version: function name} of kernel in this build."
    found = {v: f"{kernel}_{v}" for v in VERSIONS if f"{kernel}_{v}" in funcs}
    if not found and kernel in funcs:
        found["generic"] = kernel
    return found


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("extension", nargs="?", help="the built extension (default: collabc._core's file)")
    p.add_argument("--kernels", nargs="+", default=list(HOT_KERNELS), help="hot kernels to check")
    p.add_argument("--strict", action="store_true", help="also the loops that enclose the hot ones")
    p.add_argument("--objdump", default="objdump")
    p.add_argument("-v", "--verbose", action="store_true", help="list each loop checked")
    p.add_argument("--no-known", action="store_true",
                   help="fail on the known spills too (see KNOWN) instead of checking their count")
    a = p.parse_args(argv)
    if shutil.which(a.objdump) is None:
        print(f"check_spills: {a.objdump} not found (Debian: apt-get install binutils)", file=sys.stderr)
        return 2
    path = a.extension
    if path is None:
        from collabc import _core
        path = _core.__file__
    funcs = disassemble(path, a.objdump)
    bad, checked = [], 0
    for kernel in a.kernels:
        vers = versions_of(funcs, kernel)
        if not vers:
            print(f"{kernel}: not in {path} (inlined, or not built)")
            continue
        for ver, name in vers.items():
            res = check_function(funcs[name], a.strict)
            checked += 1
            n_bad = sum(1 for r in res if r[3])
            known, why = (None, "") if a.no_known else KNOWN.get(name, (None, ""))
            print(f"{name}: {len(res)} hot loop(s), {n_bad} with vector stack traffic"
                  + (f" (known: {known}, {why})" if known is not None else ""))
            if known is not None:
                if n_bad != known:
                    print(f"    expected {known} (KNOWN in {__file__}): update it, or fix the spill")
                    bad.append((name, 0, 0, "known count"))
                continue
            for s, e, kind, spills in res:
                if a.verbose or spills:
                    print(f"    {kind} loop {s:#x}-{e:#x} ({sum(1 for x, _ in funcs[name] if s <= x <= e)} "
                          f"instructions): {len(spills)} stack vector move(s)")
                for addr, t in spills[:6]:
                    print(f"        {addr:#x}: {t}")
                if spills:
                    bad.append((name, s, e, kind))
    if checked == 0:
        print(f"check_spills: none of the kernels found in {path}", file=sys.stderr)
        return 2
    if bad:
        print(f"FAIL: {len(bad)} hot loop(s) spill vector registers to the stack")
        return 1
    print(f"OK: no hot loop of {checked} kernel version(s) spills, apart from the "
          f"{sum(1 for k in KNOWN if k in funcs)} known version(s) listed in KNOWN")
    return 0


if __name__ == "__main__":
    sys.exit(main())
