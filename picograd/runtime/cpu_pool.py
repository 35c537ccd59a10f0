"""The CPU runtime's thread pool: parallel regions dispatched and run in native code, for ``cpu_jit``.

A *job* is a list of entries run in order, each cut into pieces that the threads of the pool claim one at a time
(a dynamic schedule); an entry starts only when every piece of the one before it is done (a completion wait, not a
rendezvous: a thread that never shows up delays nothing, the others run its pieces). An entry is

- a loop nest ``fn(slots, map, lo, hi)`` over its first dimension ``[lower, upper)``, cut into ``pieces`` equal
  ranges (``NEST``); a Python :func:`callback` is called the same way;
- a run of nests ``fn(slots, maps)`` (``llvm_ir.sequence_text``), one piece (``SEQUENCE``).

The dispatcher (``pg_parallel``) and the workers' loop (``pg_worker``) are LLVM IR compiled with the nests' LLVM:
a region costs one ``ctypes`` call and a few atomic operations, instead of a queue, an event and GIL hand-offs per
region. Workers are Python threads parked in ``pg_worker`` (a ``ctypes`` call, so without the GIL) for the life
of the process; between jobs each spins for :data:`SPINS` pauses (regions of a step follow each other within
microseconds), calling ``sched_yield`` every :data:`YIELD_EVERY` (so that BLAS's own threads, which run the matmuls
between regions, get the core at once), then sleeps on a futex until the next job (Linux; elsewhere it keeps
spinning with ``sched_yield``). The spin is short: with 2**14 pauses (0.1 to 1 ms) a worker still spinning when
BLAS's threads start a matmul took their core (BERT at 2 threads, load 5, 2026-12-05: 390 ms a step, 290 ms with
2**10 or 2**6 pauses; the names transformer and GPT unchanged).

A thread that has no piece left to claim waits for the entry's last pieces (claimed by others) spinning for
:data:`WAIT_SPINS` pauses, then asleep on the entry's done counter (a futex), woken by the thread that completes
the entry: its core goes idle, so the kernel may move a preempted worker there. Spinning on, the DDPM's step at 2
threads was 25 or 47 ms from process to process (2026-12-05): PyTorch's OpenMP workers of the twin in the same
process spin after each of its regions and preempted the worker, and the other thread waited out the preemption;
after 2**11 pauses a run of every model (the GPT, then the DDPM) still fell into that mode in 1 to 2 of 3
processes, after 2**8 in none of 12.

Claim counters hold the job's generation in their high 32 bits, so a worker that wakes late for an old job claims
nothing of a newer one (compare-and-swap on generation and piece together).
"""

from __future__ import annotations

import collections
import ctypes
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any

NEST = 0  # an entry's kind: fn(slots, map, lo, hi) over pieces of [lower, upper)
SEQUENCE = 1  # fn(slots, maps), one piece
SPINS = 1 << 10  # pauses a worker spins for before sleeping (about 5 to 60 us)
YIELD_EVERY = 256  # pauses between sched_yield() calls of a waiting thread (the core to BLAS's threads, or others)
WAIT_SPINS = 1 << 8  # pauses a thread waiting for others' pieces of an entry spins for before sleeping
RECENT_JOBS = 64  # jobs the pool keeps alive after running them
ENTRY_WORDS = 8  # fn, map, lower, upper, pieces, kind, claim, done
GEN, JOB, SLOTS, SLEEPERS, WAITERS = 0, 8, 9, 16, 24  # words of the pool's state (gen, sleepers and waiters on
# cache lines of their own); WAITERS counts the threads asleep until an entry's last piece is done

Compile = Callable[[str, Sequence[str]], tuple[Any, list[int]]]


def _ir(x86: bool, linux: bool) -> str:
    pause = "  call void @llvm.x86.sse2.pause()" if x86 else ""
    # futex(FUTEX_WAIT_PRIVATE / FUTEX_WAKE_PRIVATE) through libc's syscall(); SYS_futex is 202 on x86-64, 98 on arm64
    futex = 202 if x86 else 98
    sleep = (
        f"  %r = call i64 (i64, ...) @syscall(i64 {futex}, ptr %pool, i64 128, i64 %seen, ptr null, ptr null, i64 0)"
        if linux
        else "  %r = call i32 @sched_yield()"
    )
    wake = (
        f"  %w = call i64 (i64, ...) @syscall(i64 {futex}, ptr %pool, i64 129, i64 2147483647, ptr null, ptr null, "
        "i64 0)"
        if linux
        else ""
    )
    # a thread waiting for an entry's last pieces sleeps on the entry's done counter (its low 32 bits) ...
    doze = (
        f"  %r = call i64 (i64, ...) @syscall(i64 {futex}, ptr %donep, i64 128, i64 %expect, ptr null, ptr null, i64 0)"
        if linux
        else "  %r = call i32 @sched_yield()"
    )
    # ... and the thread that completes the entry wakes it
    rouse = (
        f"  %wk = call i64 (i64, ...) @syscall(i64 {futex}, ptr %donep, i64 129, i64 2147483647, ptr null, "
        "ptr null, i64 0)"
        if linux
        else ""
    )
    return f"""
declare i64 @syscall(i64, ...)
declare i32 @sched_yield()
{"declare void @llvm.x86.sse2.pause()" if x86 else ""}

define private void @pg_piece(ptr %slots, ptr %e, i64 %k) {{
entry:
  %fn = load ptr, ptr %e
  %pm = getelementptr i64, ptr %e, i64 1
  %map = load ptr, ptr %pm
  %pkind = getelementptr i64, ptr %e, i64 5
  %kind = load i64, ptr %pkind
  %seq = icmp eq i64 %kind, 1
  br i1 %seq, label %sequence, label %nest
sequence:
  call void %fn(ptr %slots, ptr %map)
  ret void
nest:
  %plo = getelementptr i64, ptr %e, i64 2
  %lo = load i64, ptr %plo
  %phi = getelementptr i64, ptr %e, i64 3
  %hi = load i64, ptr %phi
  %pp = getelementptr i64, ptr %e, i64 4
  %pieces = load i64, ptr %pp
  %span = sub i64 %hi, %lo
  %k1 = add i64 %k, 1
  %a0 = mul i64 %span, %k
  %a1 = sdiv i64 %a0, %pieces
  %a = add i64 %lo, %a1
  %b0 = mul i64 %span, %k1
  %b1 = sdiv i64 %b0, %pieces
  %b = add i64 %lo, %b1
  call void %fn(ptr %slots, ptr %map, i64 %a, i64 %b)
  ret void
}}

; run the entries of %job for generation %g, claiming pieces; returns when done, or when the job is no longer %g
define private void @pg_join(ptr %pool, ptr %job, ptr %slots, i64 %g) {{
entry:
  %m = load i64, ptr %job
  br label %next
next:
  %j = phi i64 [0, %entry], [%j1, %waited]
  %more = icmp slt i64 %j, %m
  br i1 %more, label %start, label %out
start:
  %off = mul i64 %j, {ENTRY_WORDS}
  %off1 = add i64 %off, 1
  %e = getelementptr i64, ptr %job, i64 %off1
  %pp = getelementptr i64, ptr %e, i64 4
  %pieces = load i64, ptr %pp
  %claimp = getelementptr i64, ptr %e, i64 6
  %donep = getelementptr i64, ptr %e, i64 7
  br label %claim
claim:
  %c = load atomic i64, ptr %claimp seq_cst, align 8
  %cg = lshr i64 %c, 32
  %same = icmp eq i64 %cg, %g
  br i1 %same, label %check, label %out
check:
  %k = and i64 %c, 4294967295
  %left = icmp slt i64 %k, %pieces
  br i1 %left, label %take, label %wait
take:
  %c1 = add i64 %c, 1
  %pair = cmpxchg ptr %claimp, i64 %c, i64 %c1 seq_cst seq_cst
  %ok = extractvalue {{ i64, i1 }} %pair, 1
  br i1 %ok, label %run, label %claim
run:
  call void @pg_piece(ptr %slots, ptr %e, i64 %k)
  %d = atomicrmw add ptr %donep, i64 1 seq_cst
  %d1 = add i64 %d, 1
  %last = icmp sge i64 %d1, %pieces
  br i1 %last, label %notify, label %claim
notify:
  %pwn = getelementptr i64, ptr %pool, i64 {WAITERS}
  %waiting = load atomic i64, ptr %pwn seq_cst, align 8
  %anyone = icmp sgt i64 %waiting, 0
  br i1 %anyone, label %rouse, label %claim
rouse:
{rouse}
  br label %claim
wait:
  %i = phi i64 [0, %check], [%i1, %relax], [%i1, %yield], [0, %woke]
  %done = load atomic i64, ptr %donep seq_cst, align 8
  %finished = icmp sge i64 %done, %pieces
  br i1 %finished, label %waited, label %still
still:
  %now = load atomic i64, ptr %pool seq_cst, align 8
  %moved = icmp ne i64 %now, %g
  br i1 %moved, label %out, label %spun
spun:
  %i1 = add i64 %i, 1
  %long = icmp sge i64 %i1, {WAIT_SPINS}
  br i1 %long, label %dozing, label %spinning
dozing:
  %pw = getelementptr i64, ptr %pool, i64 {WAITERS}
  %w0 = atomicrmw add ptr %pw, i64 1 seq_cst
  %again = load atomic i64, ptr %donep seq_cst, align 8
  %over = icmp sge i64 %again, %pieces
  br i1 %over, label %woke, label %doze
doze:
  %expect = and i64 %again, 4294967295
{doze}
  br label %woke
woke:
  %w1 = atomicrmw sub ptr %pw, i64 1 seq_cst
  br label %wait
spinning:
  %low = and i64 %i1, {YIELD_EVERY - 1}
  %turn = icmp eq i64 %low, 0
  br i1 %turn, label %yield, label %relax
yield:
  %y = call i32 @sched_yield()
  br label %wait
relax:
{pause}
  br label %wait
waited:
  %j1 = add i64 %j, 1
  br label %next
out:
  ret void
}}

; publish %job (its counters reset for a new generation), wake sleeping workers, take part, return when it is done
define void @pg_parallel(ptr %pool, ptr %job, ptr %slots) {{
entry:
  %old = load atomic i64, ptr %pool seq_cst, align 8
  %g0 = add i64 %old, 1
  %g = and i64 %g0, 4294967295
  %fresh = shl i64 %g, 32
  %m = load i64, ptr %job
  br label %reset
reset:
  %j = phi i64 [0, %entry], [%j1, %body]
  %more = icmp slt i64 %j, %m
  br i1 %more, label %body, label %publish
body:
  %off = mul i64 %j, {ENTRY_WORDS}
  %coff = add i64 %off, 7
  %doff = add i64 %off, 8
  %claimp = getelementptr i64, ptr %job, i64 %coff
  %donep = getelementptr i64, ptr %job, i64 %doff
  store atomic i64 0, ptr %donep seq_cst, align 8
  store atomic i64 %fresh, ptr %claimp seq_cst, align 8
  %j1 = add i64 %j, 1
  br label %reset
publish:
  %pj = getelementptr i64, ptr %pool, i64 {JOB}
  %pjob = ptrtoint ptr %job to i64
  store atomic i64 %pjob, ptr %pj seq_cst, align 8
  %ps = getelementptr i64, ptr %pool, i64 {SLOTS}
  %pslots = ptrtoint ptr %slots to i64
  store atomic i64 %pslots, ptr %ps seq_cst, align 8
  store atomic i64 %g, ptr %pool seq_cst, align 8
  %psl = getelementptr i64, ptr %pool, i64 {SLEEPERS}
  %sleepers = load atomic i64, ptr %psl seq_cst, align 8
  %any = icmp sgt i64 %sleepers, 0
  br i1 %any, label %wake, label %join
wake:
{wake}
  br label %join
join:
  call void @pg_join(ptr %pool, ptr %job, ptr %slots, i64 %g)
  ret void
}}

; a worker: forever, wait for a new generation (spin %spins pauses, then sleep), then take part in its job
define void @pg_worker(ptr %pool, i64 %spins) {{
entry:
  %first = load atomic i64, ptr %pool seq_cst, align 8
  br label %wait
wait:
  %seen = phi i64 [%first, %entry], [%g, %work], [%seen, %slept]
  br label %spin
spin:
  %i = phi i64 [0, %wait], [%i1, %relax], [%i1, %yield]
  %g = load atomic i64, ptr %pool seq_cst, align 8
  %new = icmp ne i64 %g, %seen
  br i1 %new, label %work, label %idle
idle:
  %long = icmp sge i64 %i, %spins
  br i1 %long, label %sleep, label %relax
relax:
{pause}
  %i1 = add i64 %i, 1
  %low = and i64 %i1, {YIELD_EVERY - 1}
  %turn = icmp eq i64 %low, 0
  br i1 %turn, label %yield, label %spin
yield:
  %y = call i32 @sched_yield()
  br label %spin
sleep:
  %psl = getelementptr i64, ptr %pool, i64 {SLEEPERS}
  %s0 = atomicrmw add ptr %psl, i64 1 seq_cst
  %g2 = load atomic i64, ptr %pool seq_cst, align 8
  %same = icmp eq i64 %g2, %seen
  br i1 %same, label %block, label %slept
block:
{sleep}
  br label %slept
slept:
  %s1 = atomicrmw sub ptr %psl, i64 1 seq_cst
  br label %wait
work:
  %pj = getelementptr i64, ptr %pool, i64 {JOB}
  %jobi = load atomic i64, ptr %pj seq_cst, align 8
  %job = inttoptr i64 %jobi to ptr
  %ps = getelementptr i64, ptr %pool, i64 {SLOTS}
  %slotsi = load atomic i64, ptr %ps seq_cst, align 8
  %slots = inttoptr i64 %slotsi to ptr
  call void @pg_join(ptr %pool, ptr %job, ptr %slots, i64 %g)
  br label %wait
}}
"""


_PARALLEL = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p)
_WORKER = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int64)
CALLBACK = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64)


class Job:
    """The entries of one parallel region, laid out for ``pg_parallel``: each ``(fn address, map address, lower,
    upper, pieces, kind)``. Keep the job (and what its addresses point to) alive while it may run."""

    def __init__(self, entries: Sequence[tuple[int, int, int, int, int, int]]):
        words = [len(entries)]
        for fn, map_, lower, upper, pieces, kind in entries:
            if pieces < 1 or (kind == SEQUENCE and pieces != 1):
                raise ValueError(f"cpu_pool: an entry of {pieces} pieces ({kind=})")
            words += [fn, map_, lower, upper, pieces, kind, 0, 0]
        self.words = (ctypes.c_int64 * len(words))(*words)
        self.address = ctypes.addressof(self.words)
        self.entries = len(entries)


class Pool:
    """Worker threads parked in native code, and ``run(job, slots)``, which runs a :class:`Job` on the calling
    thread and the workers (see the module docstring). ``compile(text, names)`` compiles LLVM IR and returns
    (its engine, the addresses of ``names``), as ``cpu_jit``'s LLVM does."""

    def __init__(self, compile: Compile, triple: str):
        x86 = triple.startswith(("x86_64", "i686", "i386"))
        text = _ir(x86, sys.platform.startswith("linux"))
        self._engine, (parallel, worker) = compile(text, ["pg_parallel", "pg_worker"])
        self._parallel = _PARALLEL(parallel)
        self._worker = _WORKER(worker)
        raw = (ctypes.c_int64 * 40)()  # gen, job, slots, sleepers and waiters, 64-byte aligned
        self._raw = raw
        self.state = ctypes.addressof(raw) + (-ctypes.addressof(raw)) % 64
        assert self.state + 8 * (WAITERS + 1) <= ctypes.addressof(raw) + ctypes.sizeof(raw)
        self.threads: list[threading.Thread] = []
        self.lock = threading.Lock()  # one job at a time (jobs from two Python threads take turns)
        # the jobs run last, kept alive: a worker late for one may still read its claim words (never run its nests)
        self.recent: collections.deque[Job] = collections.deque(maxlen=RECENT_JOBS)

    def ensure(self, helpers: int) -> None:
        """At least ``helpers`` worker threads (started on first need; they live as long as the process)."""
        while len(self.threads) < helpers:
            t = threading.Thread(
                target=self._worker, args=(self.state, SPINS), daemon=True, name=f"picograd-cpu-{len(self.threads)}"
            )
            t.start()
            self.threads.append(t)

    def run(self, job: Job, slots: int, helpers: int) -> None:
        """Run ``job`` on this thread and (at least) ``helpers`` workers; ``slots`` is passed to every nest."""
        self.ensure(helpers)
        with self.lock:
            self.recent.append(job)
            self._parallel(self.state, job.address, slots)


def callback(fn: Callable[[int, int], object], errors: list[BaseException]) -> Any:
    """A nest-shaped ``CALLBACK`` running the Python ``fn(lo, hi)`` (work that releases the GIL: numpy's BLAS and
    ufuncs); an exception it raises is appended to ``errors``, for the caller to raise again, instead of being lost
    on a worker thread. Keep it alive while a job may run it."""

    def call(slots: int, map_: int, lo: int, hi: int) -> None:
        try:
            fn(lo, hi)
        except BaseException as e:  # raised again by the caller
            errors.append(e)

    return CALLBACK(call)
