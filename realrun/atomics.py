"""CPU atomics, spin hints, prefetch and clocks for nopython code.

Numba has no CPU atomics API, so these are small ``numba.core.extending.intrinsic``
wrappers that emit LLVM's own instructions (``atomicrmw``, ``cmpxchg``, atomic ``load`` /
``store``) on the address of an array element.  Every function takes ``(array, index,
...)``; the index is not bounds-checked (callers index within the array).

Orderings: read-modify-writes and compare-and-swaps are sequentially consistent (on x86
every ``lock``-prefixed instruction is a full barrier anyway); :func:`load_acquire` /
:func:`store_release` are the acquire / release pair a spinlock needs; on x86-64 they
compile to plain ``mov`` instructions, so a lock's hand-over costs no fence.

Float atomics (:func:`atomic_fadd`) are compare-and-swap loops over the float's bits, as
in the ``hogwild-atomic`` scheme; for a float32 model the sum is formed in float64 and
rounded once, ``x ← float32(float64(x) + d)``, exactly :func:`workload.fixed.add_value`,
so an uncontended atomic add is bit-identical to the plain one.  For the int64 fixed-point
model it is a single ``lock xadd``.

Clocks: :func:`tsc` reads the time-stamp counter (``llvm.readcyclecounter``: ``rdtsc``);
:func:`monotonic_ns` calls libc ``clock_gettime(CLOCK_MONOTONIC)`` from nopython code
(declared as an external function and bound to libc's symbol), for calibrating the
counter: :func:`calibrate_tsc`.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import platform

import llvmlite.binding as llvm
import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.core.extending import intrinsic

_ORDER = "seq_cst"

# clock_gettime must be resolvable by the JIT's linker: bind the symbol to libc's address.
_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=False)
llvm.add_symbol("clock_gettime", ctypes.cast(_libc.clock_gettime, ctypes.c_void_p).value)
CLOCK_MONOTONIC = 1


def _elem_ptr(context, builder, aryty, ary, idx):
    arr = context.make_array(aryty)(context, builder, ary)
    return cgutils.get_item_pointer(context, builder, aryty, arr, [idx], wraparound=False)


def _int_for(dtype):
    """The integer type with the same width as an array's dtype (float bits go through it)."""
    return ir.IntType(dtype.bitwidth)


def _check_array(ary, what):
    if not isinstance(ary, types.Array) or ary.ndim != 1:
        raise TypeError(f"{what}: the first argument must be a 1-d array, got {ary}")


@intrinsic
def atomic_add(typingctx, ary, idx, val):
    """Atomically ``ary[idx] += val`` for an integer array; returns the old value."""
    _check_array(ary, "atomic_add")
    if not isinstance(ary.dtype, types.Integer):
        raise TypeError(f"atomic_add: integer arrays only (got {ary.dtype}); use atomic_fadd for floats")
    sig = ary.dtype(ary, types.intp, ary.dtype)

    def codegen(context, builder, signature, args):
        aryv, idxv, valv = args
        ptr = _elem_ptr(context, builder, signature.args[0], aryv, idxv)
        return builder.atomic_rmw("add", ptr, valv, _ORDER)

    return sig, codegen


@intrinsic
def atomic_xchg(typingctx, ary, idx, val):
    """Atomically ``old = ary[idx]; ary[idx] = val``; returns old (integer arrays)."""
    _check_array(ary, "atomic_xchg")
    if not isinstance(ary.dtype, types.Integer):
        raise TypeError(f"atomic_xchg: integer arrays only (got {ary.dtype})")
    sig = ary.dtype(ary, types.intp, ary.dtype)

    def codegen(context, builder, signature, args):
        aryv, idxv, valv = args
        ptr = _elem_ptr(context, builder, signature.args[0], aryv, idxv)
        return builder.atomic_rmw("xchg", ptr, valv, _ORDER)

    return sig, codegen


@intrinsic
def atomic_cas(typingctx, ary, idx, expected, new):
    """Compare-and-swap on an integer array element; returns the value found (== expected on success)."""
    _check_array(ary, "atomic_cas")
    if not isinstance(ary.dtype, types.Integer):
        raise TypeError(f"atomic_cas: integer arrays only (got {ary.dtype})")
    sig = ary.dtype(ary, types.intp, ary.dtype, ary.dtype)

    def codegen(context, builder, signature, args):
        aryv, idxv, expv, newv = args
        ptr = _elem_ptr(context, builder, signature.args[0], aryv, idxv)
        pair = builder.cmpxchg(ptr, expv, newv, _ORDER, _ORDER)
        return builder.extract_value(pair, 0)

    return sig, codegen


@intrinsic
def load_acquire(typingctx, ary, idx):
    """An atomic load with acquire ordering (integer or float arrays)."""
    _check_array(ary, "load_acquire")
    sig = ary.dtype(ary, types.intp)

    def codegen(context, builder, signature, args):
        aryv, idxv = args
        dt = signature.args[0].dtype
        ptr = _elem_ptr(context, builder, signature.args[0], aryv, idxv)
        if isinstance(dt, types.Integer):
            return builder.load_atomic(ptr, "acquire", dt.bitwidth // 8)
        ity = _int_for(dt)
        bits = builder.load_atomic(builder.bitcast(ptr, ity.as_pointer()), "acquire", dt.bitwidth // 8)
        return builder.bitcast(bits, context.get_value_type(dt))

    return sig, codegen


@intrinsic
def store_release(typingctx, ary, idx, val):
    """An atomic store with release ordering (integer or float arrays)."""
    _check_array(ary, "store_release")
    sig = types.void(ary, types.intp, ary.dtype)

    def codegen(context, builder, signature, args):
        aryv, idxv, valv = args
        dt = signature.args[0].dtype
        ptr = _elem_ptr(context, builder, signature.args[0], aryv, idxv)
        if isinstance(dt, types.Integer):
            builder.store_atomic(valv, ptr, "release", dt.bitwidth // 8)
        else:
            ity = _int_for(dt)
            builder.store_atomic(builder.bitcast(valv, ity), builder.bitcast(ptr, ity.as_pointer()), "release",
                                 dt.bitwidth // 8)
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def atomic_fadd(typingctx, ary, idx, d):
    """Atomically ``ary[idx] ← ary[idx] + d`` (the write rule of workload.fixed.add_value).

    float64 / float32 arrays: a compare-and-swap loop over the value's bits, the sum formed
    in float64 and rounded once to the array's dtype; int64 (fixed point): ``lock xadd``.
    Returns the number of failed compare-and-swaps (0 uncontended; always 0 for integers).
    """
    _check_array(ary, "atomic_fadd")
    dt = ary.dtype
    if isinstance(dt, types.Integer):
        sig = types.int64(ary, types.intp, dt)
    elif dt in (types.float64, types.float32):
        sig = types.int64(ary, types.intp, types.float64)
    else:
        raise TypeError(f"atomic_fadd: float64, float32 or int64 arrays only (got {dt})")

    def codegen(context, builder, signature, args):
        aryv, idxv, dv = args
        aryty = signature.args[0]
        dt = aryty.dtype
        i64 = ir.IntType(64)
        ptr = _elem_ptr(context, builder, aryty, aryv, idxv)
        if isinstance(dt, types.Integer):
            builder.atomic_rmw("add", ptr, dv, _ORDER)
            return ir.Constant(i64, 0)
        ity = _int_for(dt)
        fty = context.get_value_type(dt)
        iptr = builder.bitcast(ptr, ity.as_pointer())
        first = builder.load_atomic(iptr, "monotonic", dt.bitwidth // 8)
        entry = builder.block
        loop = builder.append_basic_block("fadd.loop")
        done = builder.append_basic_block("fadd.done")
        builder.branch(loop)
        builder.position_at_end(loop)
        old = builder.phi(ity)
        old.add_incoming(first, entry)
        fails = builder.phi(i64)
        fails.add_incoming(ir.Constant(i64, 0), entry)
        oldf = builder.bitcast(old, fty)
        if dt == types.float32:
            newf = builder.fptrunc(builder.fadd(builder.fpext(oldf, ir.DoubleType()), dv), fty)
        else:
            newf = builder.fadd(oldf, dv)
        pair = builder.cmpxchg(iptr, old, builder.bitcast(newf, ity), _ORDER, "monotonic")
        seen = builder.extract_value(pair, 0)
        ok = builder.extract_value(pair, 1)
        fails_next = builder.add(fails, ir.Constant(i64, 1))
        old.add_incoming(seen, builder.block)
        fails.add_incoming(fails_next, builder.block)
        builder.cbranch(ok, done, loop)
        builder.position_at_end(done)
        return fails

    return sig, codegen


_X86 = platform.machine().lower() in ("x86_64", "amd64", "i386", "i686")


@intrinsic
def spin_pause(typingctx):
    """The spin-wait hint (x86 ``pause``; nothing elsewhere): lets the memory system and a
    sibling hardware thread breathe while a worker waits for a lock or its turn."""
    sig = types.void()

    def codegen(context, builder, signature, args):
        if _X86:
            fnty = ir.FunctionType(ir.VoidType(), [])
            builder.call(cgutils.get_or_insert_function(builder.module, fnty, "llvm.x86.sse2.pause"), [])
        return context.get_dummy_value()

    return sig, codegen


def _make_prefetch(rw: int, locality: int, doc: str):
    @intrinsic
    def _prefetch(typingctx, ary, idx):
        _check_array(ary, "prefetch")
        sig = types.void(ary, types.intp)

        def codegen(context, builder, signature, args):
            aryv, idxv = args
            ptr = _elem_ptr(context, builder, signature.args[0], aryv, idxv)
            i8p = ir.IntType(8).as_pointer()
            i32 = ir.IntType(32)
            fnty = ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32])
            fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0")
            builder.call(fn, [builder.bitcast(ptr, i8p), ir.Constant(i32, rw), ir.Constant(i32, locality),
                              ir.Constant(i32, 1)])
            return context.get_dummy_value()

        return sig, codegen

    _prefetch.__doc__ = doc
    return _prefetch


@intrinsic
def prefetch_row_write(typingctx, ary, i):
    """Prefetch the cache line holding ``ary[i, 0]`` (a 2-d array) with intent to write
    (``prefetchw``): a row about to be stored into is owned before the stores arrive, so
    they do not wait in the store buffer for its read-for-ownership."""
    if not isinstance(ary, types.Array) or ary.ndim != 2:
        raise TypeError(f"prefetch_row_write: the first argument must be a 2-d array, got {ary}")
    sig = types.void(ary, types.intp)

    def codegen(context, builder, signature, args):
        aryv, iv = args
        aryty = signature.args[0]
        arr = context.make_array(aryty)(context, builder, aryv)
        ptr = cgutils.get_item_pointer(context, builder, aryty, arr, [iv, ir.Constant(iv.type, 0)],
                                       wraparound=False)
        i8p = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        fnty = ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0")
        builder.call(fn, [builder.bitcast(ptr, i8p), ir.Constant(i32, 1), ir.Constant(i32, 3), ir.Constant(i32, 1)])
        return context.get_dummy_value()

    return sig, codegen


# llvm.prefetch(ptr, rw, locality, data): locality 3 -> prefetcht0 (all levels), 2 -> prefetcht1
# (L2 and outward).  A prefetch is a hint: it never faults, even past the array's end.
prefetch = _make_prefetch(0, 3, "Prefetch ``ary[idx]``'s cache line for reading into L1 (``prefetcht0``).")
prefetch_l2 = _make_prefetch(0, 2, "Prefetch ``ary[idx]``'s cache line for reading into L2 (``prefetcht1``): "
                                   "streamed data that should not evict L1.")
prefetch_write = _make_prefetch(1, 3, "Prefetch ``ary[idx]``'s cache line with intent to write.")


@intrinsic
def tsc(typingctx):
    """The CPU's time-stamp counter (``rdtsc`` via ``llvm.readcyclecounter``), int64."""
    sig = types.int64()

    def codegen(context, builder, signature, args):
        fnty = ir.FunctionType(ir.IntType(64), [])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.readcyclecounter")
        return builder.call(fn, [])

    return sig, codegen


@intrinsic
def _clock_gettime_ns(typingctx, clock_id):
    sig = types.int64(types.int32)

    def codegen(context, builder, signature, args):
        i64 = ir.IntType(64)
        i32 = ir.IntType(32)
        ts_ty = ir.LiteralStructType([i64, i64])
        ts = cgutils.alloca_once(builder, ts_ty)
        fnty = ir.FunctionType(i32, [i32, ir.IntType(8).as_pointer()])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "clock_gettime")
        builder.call(fn, [args[0], builder.bitcast(ts, ir.IntType(8).as_pointer())])
        sec = builder.load(cgutils.gep_inbounds(builder, ts, 0, 0))
        nsec = builder.load(cgutils.gep_inbounds(builder, ts, 0, 1))
        return builder.add(builder.mul(sec, ir.Constant(i64, 1_000_000_000)), nsec)

    return sig, codegen


llvm.add_symbol("sched_yield", ctypes.cast(_libc.sched_yield, ctypes.c_void_p).value)


@intrinsic
def os_yield(typingctx):
    """``sched_yield()``: give the core away (a spinning waiter when threads outnumber cores)."""
    sig = types.void()

    def codegen(context, builder, signature, args):
        fnty = ir.FunctionType(ir.IntType(32), [])
        builder.call(cgutils.get_or_insert_function(builder.module, fnty, "sched_yield"), [])
        return context.get_dummy_value()

    return sig, codegen


@njit(nogil=True)
def monotonic_ns():
    """``clock_gettime(CLOCK_MONOTONIC)`` in ns, callable from nopython code (the clock of
    Python's ``time.monotonic_ns``)."""
    return _clock_gettime_ns(np.int32(CLOCK_MONOTONIC))


@njit(nogil=True)
def tsc_now():
    """:func:`tsc` callable from Python."""
    return tsc()


@njit(nogil=True)
def _tsc_pairs(n, spin):
    """n (tsc, monotonic ns) pairs, each clock read bracketed by two counter reads."""
    out = np.empty((n, 3), dtype=np.int64)
    for i in range(n):
        a = tsc()
        ns = monotonic_ns()
        b = tsc()
        out[i, 0] = a
        out[i, 1] = b
        out[i, 2] = ns
        t = tsc()
        while tsc() - t < spin:
            pass
    return out


def calibrate_tsc(duration_s: float = 0.02) -> tuple[float, int, int]:
    """(ns per tick, tsc0, ns0): a least-squares line of CLOCK_MONOTONIC against the counter.

    Takes 512 (counter, clock) pairs spread over ``duration_s``, each clock read bracketed
    by two counter reads; keeps the tightest-bracketed half and fits
    ``ns ≈ ns0 + (tsc - tsc0) * ns_per_tick``.  Assumes an invariant counter (the
    ``constant_tsc`` / ``nonstop_tsc`` CPU flags: one rate, all cores, all power states).
    """
    _tsc_pairs(4, 0)  # compile / warm
    probe = _tsc_pairs(64, 1000)
    per_tick_guess = max((probe[-1, 2] - probe[0, 2]) / max(probe[-1, 0] - probe[0, 0], 1), 1e-3)
    spin = max(int(duration_s * 1e9 / per_tick_guess / 512), 100)  # ticks between pairs
    pairs = _tsc_pairs(512, spin)
    width = pairs[:, 1] - pairs[:, 0]
    keep = width <= np.quantile(width, 0.5)
    mid = (pairs[keep, 0] + pairs[keep, 1]) // 2
    ns = pairs[keep, 2]
    slope, intercept = np.polyfit((mid - mid[0]).astype(np.float64), (ns - ns[0]).astype(np.float64), 1)
    return float(slope), int(mid[0]), int(ns[0] + round(intercept))


@intrinsic
def exchange_add(typingctx, ary, idx, d):
    """A hogwild write that notices what it overwrites: ``v = ary[idx]`` (plain load),
    ``new = v + d`` (the :func:`workload.fixed.add_value` rule), then an atomic *exchange*
    stores ``new`` and returns the value it replaced.  Returns 1 when that value differs
    from ``v`` -- another core wrote the coordinate between this core's read and its write,
    and this write erased that update (a lost update) -- else 0.

    The stored value is exactly what a plain read-modify-write stores, so the scheme's
    semantics are unchanged; only the store is a locked instruction (slower), which is why
    this probe is opt-in (``options["count_lost"]``).
    """
    _check_array(ary, "exchange_add")
    dt = ary.dtype
    if isinstance(dt, types.Integer):
        sig = types.int64(ary, types.intp, dt)
    elif dt in (types.float64, types.float32):
        sig = types.int64(ary, types.intp, types.float64)
    else:
        raise TypeError(f"exchange_add: float64, float32 or int64 arrays only (got {dt})")

    def codegen(context, builder, signature, args):
        aryv, idxv, dv = args
        aryty = signature.args[0]
        dt = aryty.dtype
        ptr = _elem_ptr(context, builder, aryty, aryv, idxv)
        ity = _int_for(dt)
        iptr = builder.bitcast(ptr, ity.as_pointer())
        old = builder.load_atomic(iptr, "monotonic", dt.bitwidth // 8)
        if isinstance(dt, types.Integer):
            new = builder.add(old, dv)
        else:
            fty = context.get_value_type(dt)
            oldf = builder.bitcast(old, fty)
            if dt == types.float32:
                newf = builder.fptrunc(builder.fadd(builder.fpext(oldf, ir.DoubleType()), dv), fty)
            else:
                newf = builder.fadd(oldf, dv)
            new = builder.bitcast(newf, ity)
        prev = builder.atomic_rmw("xchg", iptr, new, _ORDER)
        return builder.zext(builder.icmp_unsigned("!=", prev, old), ir.IntType(64))

    return sig, codegen
