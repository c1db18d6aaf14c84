"""The worker kernels: one worker's share of one epoch, in nopython code without the GIL.

Three tiers (STYLE.md 1): :func:`realrun.run` checks, coerces and allocates; its Python
threads each call a kernel made here once per epoch; a kernel runs one worker's loop over
its visit order against the one shared model array.

A kernel is specialised at build time (:func:`make_worker`) on the scheme, the
instrumentation and the prefetch distance, so the plain ``hogwild`` loop carries no branch
for the others.  Every kernel processes a sample the same way:

1. *acquire* what the scheme needs (global spinlock; the support's coordinate locks in
   ascending coordinate order; the round-robin token);
2. *start*: (instrumented) read the clock and take a start ticket from the packed counter;
3. *read* the support through :func:`workload.fixed.read_value` into ``xr``;
4. *compute* with the problem's own ``update`` kernel (inlined, see :func:`inline_update`);
5. *write* each coordinate with the :func:`workload.fixed.add_value` rule: plain load and
   store (``hogwild``, locks, ``round-robin``, ``serial``), a compare-and-swap loop
   (``hogwild-atomic``), or an exchange that notices an overwritten value (the lost-update
   probe);
6. *end*: (instrumented) take an end ticket and read the clock; then *release*.

A sample's measured interval runs from its start ticket to its end ticket; the end ticket's
locked instruction orders it after every store of the sample, so the interval closes when
its last write is visible.  Under the locking schemes (``lock-global``, ``lock-coord``,
``round-robin``) the tickets are taken inside the lock or turn: waiting is outside the
interval, no two intervals overlap under ``lock-global`` and ``round-robin`` (τ = 0 for
every sample) and under ``lock-coord`` only samples with disjoint supports overlap -- the
tests check both from the trace.  Under the lock-free schemes (``serial``, ``hogwild``,
``hogwild-atomic``) a worker's consecutive samples *abut*: one ticket (adding ``2**32 + 1``)
ends sample i and starts sample i+1 at the same instant, and one clock reading serves as
both t_end and the next t_start.  This halves the locked instructions on the contended
counter line and the clock reads, and it is the machine model of hwsim, where a core starts
its next sample as soon as its last write lands.  Counted exactly as before: sample i+1
sees sample i finished (``finished_at_start`` includes it) and sample i does not see
sample i+1 started.

The instrumentation counter is one int64 word holding two 32-bit counts, samples started
(high half) and samples finished (low half).  One ``lock xadd`` of ``2**32`` at a sample's
start returns both counts at that instant (its ``start_seq`` and ``finished_at_start``);
one ``lock xadd`` of 1 at its end returns ``started_at_end`` and ``end_seq``.  Both numbers
of each pair are read in the same atomic instruction, so τ_k (``workload.trace.tau_overlap``)
is exact: the samples in flight at k's start plus those that started while k ran, in the
linear order the hardware gave those instructions.  The word is reset at each epoch's
barrier (no sample in flight), so an epoch may hold up to 2**31 samples.

Fast path: the row data of the sample ``prefetch`` positions ahead is prefetched into L2
(every cache line of its indices and values) and the row pointer and label of the sample
``2 * prefetch`` ahead into L1, so the random-order visit is not latency-bound.  Prefetches
are hints; they change no value, and ``prefetch = 0`` compiles the plain loop (the tests
compare the two bit for bit).  A row is taken as two slices indexed by the loop counter
alone (no negative-index fix-up per coordinate), and the prefetch strides are computed
once per call (no division per sample).  The data layout the kernels get
(``realrun.engine.Layout``) is the other half of the fast path: coordinates as uint16
when the model has at most 65,536 of them (less memory per row), renumbered by frequency
for the linear problems.  With several threads, kernels built ``row_ordered`` read and
write each support in ascending coordinate order (:func:`make_worker`): what limits
Hogwild! there is the hot coordinates' cache lines moving between cores, and touching
each line in one run per sample moves them less.  The instrumented kernels prefetch the
trace record's line for writing ``_REC_AHEAD`` records ahead, so its stores do not wait
for a read-for-ownership from memory (without it the record cost ~9% at one thread).
"""
from __future__ import annotations

import threading

import numpy as np
from numba import njit

from workload.fixed import add_value, encode_delta, read_value
from workload.problems.base import inlined
from workload.schedule import step_at

from .atomics import (atomic_add, atomic_fadd, atomic_xchg, exchange_add, load_acquire, os_yield, prefetch,
                      prefetch_l2, prefetch_row_write, spin_pause, store_release, tsc)

SCHEME_CODES = {"serial": 0, "hogwild": 1, "hogwild-atomic": 2, "lock-global": 3, "lock-coord": 4, "round-robin": 5}
SERIAL, HOGWILD, HOGWILD_ATOMIC, LOCK_GLOBAL, LOCK_COORD, ROUND_ROBIN = range(6)

# Slots of the shared int64 ``sync`` array, each on its own 64-byte line.
CTR = 0  # packed instrumentation counter: started << 32 | finished
LOCK = 8  # lock-global's spinlock (0 free, 1 held)
TURN = 16  # round-robin token: the global sequence number allowed to run next
STOP = 24  # nonzero: stop now (a worker failed, or Ctrl-C)
SYNC_LEN = 32
STARTED_ONE = np.int64(1 << 32)
LOW_MASK = np.int64((1 << 32) - 1)

# Columns of a worker's per-sample record (int64).
REC_START, REC_END, REC_T_START, REC_T_READ, REC_T_WRITE, REC_T_END = range(6)
REC_COLS = 6

# Stats a kernel returns (int64 array of this length).
ST_DONE, ST_LOST, ST_CAS_FAILS, ST_SPINS, ST_RECORDED = range(5)
ST_LEN = 5

_NO_ROW_ORDER = np.zeros(1, dtype=np.uint16)  # the row_order argument of kernels built without it
_REC_AHEAD = 16  # records (48 bytes each) ahead that the trace's lines are prefetched for writing
_PAD = 16  # float64 entries (128 bytes) of padding around each worker's scratch arrays
_SPIN_CHECK = 127  # a spinning worker checks the stop flag and yields its core every 128 pauses


_worker_cache: dict = {}
_lock = threading.Lock()


def inline_update(update):
    """The problem's ``update`` compiled to be inlined into the kernels
    (:func:`workload.problems.base.inlined`: an out-of-line call would pay NRT
    reference-count updates on the *shared* arrays' headers, atomic increments that two
    threads bounce between cores on every sample)."""
    return inlined(update)


def make_worker(update, scheme: str, *, instrument: bool, prefetch_distance: int, count_lost: bool,
                row_ordered: bool = False):
    """The kernel for one (update, scheme, instrumentation, prefetch, probe, row order) combination.

    ``kernel(params, aux, indptr, indices, values, y, order, w, p, x, code, step0, beta,
    t0, epoch, scale, maxlen, sync, locks, rec, stride, clock_every, stats)`` processes ``order`` (worker
    ``w`` of ``p``) in place on ``x`` and fills ``stats`` (``ST_*``).  ``rec`` receives one
    row per recorded sample (positions divisible by ``stride``); its clock columns hold
    counter readings for positions divisible by ``clock_every`` and -1 elsewhere.

    row_ordered
        the kernel takes one more argument after ``stats``, ``row_order`` (the layout's
        :meth:`realrun.engine.Layout.row_order`: for each entry of ``indices``, the
        positions of its term's entries by ascending coordinate), and reads and writes
        each support in ascending coordinate order instead of storage order.  Every
        coordinate of a support is still read once before the update and written once
        after it, and a support's coordinates are distinct, so no value changes (the tests
        hold this bit for bit); what changes is *when* each cache line of the shared model
        is touched: a sample's accesses to one line are consecutive, so each hot line is
        fetched and owned once per sample rather than once per access run -- fewer
        transfers of the hot lines between cores (``realrun.engine`` uses it when
        threads > 1).  Locks (``lock-coord``) are still taken in storage order.
    """
    if scheme not in SCHEME_CODES:
        raise NotImplementedError(f"realrun: scheme {scheme!r} is not implemented; implemented: "
                                  f"{', '.join(SCHEME_CODES)}")
    key = (update, scheme, bool(instrument), int(prefetch_distance), bool(count_lost), bool(row_ordered))
    with _lock:
        kern = _worker_cache.get(key)
    if kern is None:
        kern = _build_worker(inline_update(update), SCHEME_CODES[scheme], bool(instrument), int(prefetch_distance),
                             bool(count_lost), bool(row_ordered))
        with _lock:
            kern = _worker_cache.setdefault(key, kern)
    return kern


def _build_worker(upd, scheme, instrument, dist, count_lost, ordered):
    dist2 = 2 * dist
    probe = count_lost and scheme in (SERIAL, HOGWILD)
    chain = scheme in (SERIAL, HOGWILD, HOGWILD_ATOMIC)  # lock-free: a worker's samples abut

    @njit(nogil=True)
    def run(params, aux, indptr, indices, values, y, order, w, p, x, code, step0, beta, t0, epoch, scale,
            maxlen, sync, locks, rec, stride, clock_every, stats, row_order):
        inv_scale = 1.0 / scale
        istep = 64 // indices.itemsize  # entries per cache line (the prefetch stride)
        vstep = 64 // values.itemsize
        ostep = 64 // row_order.itemsize
        # Per-worker scratch, padded by two cache lines on each side so no line of it is
        # shared with another worker's allocation.
        xr = np.empty(maxlen + 2 * _PAD)[_PAD:_PAD + maxlen]
        g = np.empty(maxlen + 2 * _PAD)[_PAD:_PAD + maxlen]
        u = np.empty(maxlen + 2 * _PAD)[_PAD:_PAD + maxlen]
        n = order.size
        lost = 0
        fails = 0
        spins = 0
        nrec = 0
        done = 0
        stopped = False
        clock_next = 0  # next position whose clock is read
        rec_next = 0  # next position recorded
        have_start = False
        next_start_word = np.int64(0)
        next_t_start = np.int64(-1)
        for i in range(n):
            if load_acquire(sync, STOP) != 0:
                break
            if dist > 0:
                if i + dist2 < n:
                    e2 = order[i + dist2]
                    prefetch(indptr, e2)
                    prefetch(y, e2)
                if i + dist < n:
                    e1 = order[i + dist]
                    lo1 = indptr[e1]
                    hi1 = indptr[e1 + 1]
                    if hi1 > lo1:
                        b = lo1
                        while b < hi1:
                            prefetch_l2(indices, b)
                            b += istep
                        prefetch_l2(indices, hi1 - 1)
                        b = lo1
                        while b < hi1:
                            prefetch_l2(values, b)
                            b += vstep
                        prefetch_l2(values, hi1 - 1)
                        if ordered:
                            b = lo1
                            while b < hi1:
                                prefetch_l2(row_order, b)
                                b += ostep
                            prefetch_l2(row_order, hi1 - 1)
            e = order[i]
            lo = indptr[e]
            hi = indptr[e + 1]
            k = hi - lo
            # The row as slices: indexed by the loop counter alone, which the compiler
            # knows is non-negative (no negative-index fix-up per coordinate).
            ind = indices[lo:hi]
            val = values[lo:hi]
            t = i * p + w
            gamma = step_at(code, step0, beta, t0, epoch, t)
            # acquire
            if scheme == LOCK_GLOBAL:
                while True:
                    if load_acquire(sync, LOCK) == 0 and atomic_xchg(sync, LOCK, 1) == 0:
                        break
                    spin_pause()
                    spins += 1
                    if (spins & _SPIN_CHECK) == 0:
                        if load_acquire(sync, STOP) != 0:
                            stopped = True
                            break
                        os_yield()
            elif scheme == LOCK_COORD:
                for j in range(k):
                    c = ind[j]
                    while True:
                        if load_acquire(locks, c) == 0 and atomic_xchg(locks, c, 1) == 0:
                            break
                        spin_pause()
                        spins += 1
                        if (spins & _SPIN_CHECK) == 0:
                            if load_acquire(sync, STOP) != 0:
                                stopped = True
                                break
                            os_yield()
                    if stopped:
                        break
            elif scheme == ROUND_ROBIN:
                while load_acquire(sync, TURN) != t:
                    spin_pause()
                    spins += 1
                    if (spins & _SPIN_CHECK) == 0:
                        if load_acquire(sync, STOP) != 0:
                            stopped = True
                            break
                        os_yield()
            if stopped:
                break
            if instrument:
                clocked = i == clock_next
                if clocked:
                    clock_next += clock_every
                if chain and have_start:  # started by the previous sample's end ticket
                    start_word = next_start_word
                    t_start = next_t_start if clocked else -1
                else:
                    t_start = tsc() if clocked else -1
                    start_word = atomic_add(sync, CTR, STARTED_ONE)
            # read
            if ordered:
                ro = row_order[lo:hi]
                for q in range(k):
                    j = ro[q]
                    xr[j] = read_value(x, ind[j], inv_scale)
            else:
                for j in range(k):
                    xr[j] = read_value(x, ind[j], inv_scale)
            if instrument:
                t_read = tsc() if clocked else -1
            # compute
            upd(params, aux, ind, val, y[e], xr[:k], gamma, g[:k], u[:k])
            if instrument:
                t_write = tsc() if clocked else -1
            # write
            if ordered:
                for q in range(k):
                    j = ro[q]
                    if scheme == HOGWILD_ATOMIC:
                        fails += atomic_fadd(x, ind[j], encode_delta(x, u[j], scale))
                    elif probe:
                        lost += exchange_add(x, ind[j], encode_delta(x, u[j], scale))
                    else:
                        add_value(x, ind[j], encode_delta(x, u[j], scale))
            elif scheme == HOGWILD_ATOMIC:
                for j in range(k):
                    fails += atomic_fadd(x, ind[j], encode_delta(x, u[j], scale))
            elif probe:
                for j in range(k):
                    lost += exchange_add(x, ind[j], encode_delta(x, u[j], scale))
            else:
                for j in range(k):
                    add_value(x, ind[j], encode_delta(x, u[j], scale))
            if instrument:
                if chain and i + 1 < n:  # one ticket ends this sample and starts the next
                    end_word = atomic_add(sync, CTR, STARTED_ONE + 1)
                    next_start_word = end_word + 1  # the next sample sees this one finished
                    have_start = True
                    t_now = tsc() if (clocked or i + 1 == clock_next) else -1
                    t_end = t_now if clocked else -1
                    next_t_start = t_now
                else:
                    end_word = atomic_add(sync, CTR, 1)
                    t_end = tsc() if clocked else -1
            # release
            if scheme == LOCK_GLOBAL:
                store_release(sync, LOCK, 0)
            elif scheme == LOCK_COORD:
                for j in range(k):
                    store_release(locks, ind[j], 0)
            elif scheme == ROUND_ROBIN:
                store_release(sync, TURN, t + 1)
            done += 1
            if instrument:
                if i == rec_next:
                    rec_next += stride
                    if nrec + _REC_AHEAD < rec.shape[0]:
                        # own the record's line before its stores arrive: a store that
                        # waits for its line's read-for-ownership holds up every later store
                        prefetch_row_write(rec, nrec + _REC_AHEAD)
                    rec[nrec, REC_START] = start_word
                    rec[nrec, REC_END] = end_word
                    rec[nrec, REC_T_START] = t_start
                    rec[nrec, REC_T_READ] = t_read
                    rec[nrec, REC_T_WRITE] = t_write
                    rec[nrec, REC_T_END] = t_end
                    nrec += 1
        stats[ST_DONE] = done
        stats[ST_LOST] = lost
        stats[ST_CAS_FAILS] = fails
        stats[ST_SPINS] = spins
        stats[ST_RECORDED] = nrec

    if ordered:
        return run

    @njit(nogil=True)
    def kernel(params, aux, indptr, indices, values, y, order, w, p, x, code, step0, beta, t0, epoch, scale,
               maxlen, sync, locks, rec, stride, clock_every, stats):
        run(params, aux, indptr, indices, values, y, order, w, p, x, code, step0, beta, t0, epoch, scale,
            maxlen, sync, locks, rec, stride, clock_every, stats, _NO_ROW_ORDER)

    return kernel


@njit(nogil=True, cache=True)
def max_support(indptr):
    """The largest support size (Ω)."""
    m = 0
    for e in range(indptr.size - 1):
        m = max(m, indptr[e + 1] - indptr[e])
    return m


@njit(nogil=True, cache=True)
def supports_strictly_increasing(indptr, indices):
    """-1 when every term's coordinates are strictly increasing, else the first bad term."""
    for e in range(indptr.size - 1):
        for q in range(indptr[e] + 1, indptr[e + 1]):
            if indices[q] <= indices[q - 1]:
                return e
    return -1
