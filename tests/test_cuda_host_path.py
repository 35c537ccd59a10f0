"""The host path of compiled GPU steps, through the real CUDA runtime over a null driver (tests/_null_driver.py:
kernels do nothing, memory is host bytes, copies and synchronizations are counted): a step makes no device-to-host
copy and never waits for the device; device-side index checks are read at the user's next synchronization, and a
failed check raises there, leaving the state as the failed step found it, or marking what it computed as failed.
Flags are set by hand where a kernel would set them (the null driver runs none)."""

from __future__ import annotations

import re
from collections import OrderedDict

import numpy as np
import picograd.nn.functional as F
import pytest
from _null_driver import COUNTS, install

import picograd as pg
from picograd.errors import DeviceError
from picograd.frontend import realize
from picograd.runtime import cuda

pytestmark = pytest.mark.skipif(cuda.available(), reason="stands a null driver in for the real GPU")


@pytest.fixture(params=["mapped", "device"])
def null_cuda(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch):
    """The null driver; the index checks' flags in mapped host memory, or (where none can be had) device memory."""
    pg.manual_seed(0)
    monkeypatch.setattr(realize, "_CACHE", OrderedDict())
    if request.param == "device":

        def refuse(*args: object) -> None:
            raise DeviceError("no page-locked memory")

        monkeypatch.setattr(cuda.DeviceBuffer, "mapped", refuse)
    uninstall = install()
    COUNTS.clear()
    COUNTS["flag_copies"] = int(request.param == "device")  # device-to-host copies per flag read
    yield COUNTS
    cuda._deferred.clear()
    uninstall()
    pg.manual_seed(0)


def _model(rng: np.random.Generator):
    """An embedding-MLP train step on "cuda" (an embedding and cross-entropy: two index checks)."""
    emb = pg.tensor(rng.standard_normal((5, 3)).astype(np.float32), device="cuda", requires_grad=True)
    w = pg.tensor(rng.standard_normal((6, 4)).astype(np.float32), device="cuda", requires_grad=True)
    opt = pg.optim.SGD([emb, w], lr=0.1)

    @pg.compile
    def step(x, y):
        loss = F.cross_entropy(F.embedding(x, emb).reshape(x.shape[0], 6) @ w, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss

    return step, emb, w


def _batch(rng: np.random.Generator) -> tuple[pg.Tensor, pg.Tensor]:
    return pg.tensor(rng.integers(0, 5, (8, 2)), device="cuda"), pg.tensor(rng.integers(0, 4, (8,)), device="cuda")


def _set_flag(step, check: int, bad: int) -> None:
    """Do what a kernel does on a bad index: store (1, the index) into the flag of index check ``check``."""
    (exe,) = step.executables()
    exe._flags.buffer.memory.view(np.int64).reshape(-1, 2)[check] = (1, bad)


def test_a_step_neither_copies_back_nor_waits(null_cuda, rng):
    step, _, _ = _model(rng)
    for _ in range(5):
        step(*_batch(rng))
    (exe,) = step.executables()
    assert len(exe.program.checks) == 2
    flag_copies = null_cuda["flag_copies"]
    null_cuda.clear()
    losses = [step(*_batch(rng)) for _ in range(10)]
    assert null_cuda["d2h"] == 0 and null_cuda["sync"] == 0
    assert null_cuda["graph_launch"] == 10
    losses[-1].item()  # the user's read: one copy of the loss (and one of the flags where they are device memory)
    assert null_cuda["d2h"] == 1 + flag_copies and null_cuda["sync"] == 1 + flag_copies
    null_cuda.clear()
    for _ in range(3):
        step(*_batch(rng)).item()
    assert null_cuda["d2h"] == 3 * (1 + flag_copies)  # both checks' flags are read at once
    captures = exe.stats.captures
    for _ in range(20):
        step(*_batch(rng)).item()
    assert exe.stats.captures == captures  # the write-back's undo holds no buffer past the read: the rings stay put


def test_failed_index_check_raises_at_the_read_and_undoes_the_step(null_cuda, rng):
    step, emb, w = _model(rng)
    for _ in range(4):
        step(*_batch(rng)).item()
    before = [emb._node.data, w._node.data]
    values = [emb.numpy(), w.numpy()]
    grads = [emb.grad.numpy(), w.grad.numpy()]
    kept = w.grad  # a .grad the user holds keeps its value; the one only its parameter holds is reused
    loss = step(*_batch(rng))
    assert emb._node.data is not before[0]  # written back (the check is not known yet)
    _set_flag(step, 0, 7)
    (exe,) = step.executables()
    message = [t for _, t in exe.program.checks][0].replace("{}", "7", 1)
    with pytest.raises(IndexError, match=re.escape(message)):
        loss.item()
    assert [emb._node.data, w._node.data] == before  # the failed step's write-back was undone
    np.testing.assert_array_equal(emb.numpy(), values[0])
    np.testing.assert_array_equal(w.numpy(), values[1])
    np.testing.assert_array_equal(emb.grad.numpy(), grads[0])  # the gradients too
    np.testing.assert_array_equal(w.grad.numpy(), grads[1])
    np.testing.assert_array_equal(kept.numpy(), grads[1])
    with pytest.raises(IndexError, match=re.escape(message)):
        loss.item()  # what the failed step returned stays failed
    step(*_batch(rng)).item()  # the flags were cleared: the next step runs
    emb.numpy()


def test_failed_check_over_several_unread_steps_fails_what_they_computed(null_cuda, rng):
    step, emb, w = _model(rng)
    for _ in range(4):
        step(*_batch(rng)).item()
    losses = [step(*_batch(rng)) for _ in range(3)]
    _set_flag(step, 1, -1)
    with pytest.raises(IndexError, match="target -1 is out of range"):
        cuda.synchronize()
    for t in (emb, w, *losses):  # not one of them may be read as if nothing happened
        with pytest.raises(IndexError, match="target -1 is out of range"):
            t.numpy()
    with pytest.raises(IndexError, match="target -1 is out of range"):
        step(*_batch(rng))  # nor computed with
    copy = emb.detach().to("cuda") * 1.0  # an eager op on a failed value
    with pytest.raises(IndexError, match="target -1 is out of range"):
        copy.numpy()


def test_unread_steps_are_checked_every_64_calls(null_cuda, rng):
    step, _, _ = _model(rng)
    step(*_batch(rng)).item()
    flag_copies = null_cuda["flag_copies"]
    null_cuda.clear()
    for _ in range(63):
        step(*_batch(rng))
    assert null_cuda["sync"] == 0
    step(*_batch(rng))
    assert null_cuda["sync"] == 1 + flag_copies and null_cuda["d2h"] == flag_copies  # the 64th call read the flags
    _set_flag(step, 0, 9)
    with pytest.raises(IndexError, match="index 9 is out of range"):
        for _ in range(64):
            step(*_batch(rng))
