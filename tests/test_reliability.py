"""Regression tests of issue 16: compiled steps never silently differ from eager, bad input gets one clear error
naming the problem and the user's ``file:line``, and the caches stay bounded."""

from __future__ import annotations

import inspect
import os

import numpy as np
import pytest
import torch
from _raises import raises_on_next_line

import picograd as pg

F = pg.nn.functional


# ---------------------------------------------------------------------------------------------------------------
# Silent wrong results (issue 16, items 3 and 4) and out-of-range indices


def test_cross_entropy_negative_target_raises_eager(rng):
    logits = pg.tensor(rng.standard_normal((2, 3)))
    with raises_on_next_line(IndexError, "target -1", "dim 1 of size 3"):
        F.cross_entropy(logits, pg.tensor([0, -1]))
    with raises_on_next_line(IndexError, "target 3", "size 3"):
        F.cross_entropy(logits, pg.tensor([3, 0]))
    # a computed (lazy) target is checked when it is realized, at the line of the cross_entropy call
    lazy = pg.tensor([1, 0]) - 1
    loss = F.cross_entropy(logits, lazy)
    line = inspect.currentframe().f_lineno - 1
    with pytest.raises(IndexError, match=rf"target -1 is out of range .*{__file__}:{line}"):
        loss.item()
    # ignore_index=-1 still skips them, as PyTorch
    t = torch.tensor(logits.numpy())
    want = torch.nn.functional.cross_entropy(t, torch.tensor([0, -1]), ignore_index=-1)
    got = F.cross_entropy(logits, pg.tensor([0, -1]), ignore_index=-1)
    np.testing.assert_allclose(got.item(), want.item(), rtol=1e-12)


def test_cross_entropy_bad_target_raises_compiled(rng):
    w = pg.tensor(rng.standard_normal((3, 3)), requires_grad=True)

    @pg.compile
    def step(x, y):
        loss = F.cross_entropy(x @ w, y)
        loss.backward()
        return loss

    x = pg.tensor(rng.standard_normal((2, 3)))
    good = step(x, pg.tensor([0, 2])).item()
    t = torch.tensor(w.numpy())
    want = torch.nn.functional.cross_entropy(torch.tensor(x.numpy()) @ t, torch.tensor([0, 2]))
    np.testing.assert_allclose(good, want.item(), rtol=1e-10)
    for bad in ([0, -1], [3, 0]):
        with pytest.raises(IndexError, match=rf"target {bad[0] or bad[1]} is out of range for dim 1 of size 3"):
            step(x, pg.tensor(bad))


def test_embedding_negative_index_raises(rng):
    weight = pg.tensor(rng.standard_normal((4, 2)), requires_grad=True)
    with raises_on_next_line(IndexError, "index -1", "dim 0 of size 4"):
        F.embedding(pg.tensor([-1]), weight)
    with raises_on_next_line(IndexError, "index 4", "size 4"):
        F.embedding(pg.tensor([[0, 4]]), weight)

    @pg.compile
    def step(i):
        out = F.embedding(i, weight).sum()
        out.backward()
        return out

    np.testing.assert_allclose(step(pg.tensor([1, 3])).item(), weight.numpy()[[1, 3]].sum(), rtol=1e-12)
    with pytest.raises(IndexError, match=r"index -1 is out of range for dim 0 of size 4 \(at .*test_reliability"):
        step(pg.tensor([1, -1]))
    with pytest.raises(IndexError, match="index 7 is out of range"):
        step(pg.tensor([7, 0]))


def test_cross_entropy_unbatched_none_is_0d(rng):
    logits = rng.standard_normal(3)
    got = F.cross_entropy(pg.tensor(logits), pg.tensor(1), reduction="none")
    want = torch.nn.functional.cross_entropy(torch.tensor(logits), torch.tensor(1), reduction="none")
    assert got.shape == () == tuple(want.shape)
    np.testing.assert_allclose(got.item(), want.item(), rtol=1e-12)


def test_getitem_out_of_range_index_error(rng):
    x = pg.tensor(rng.standard_normal((3, 4)))
    with raises_on_next_line(IndexError, "index 7", "dim 0 of size 3"):
        x[pg.tensor([0, 7])]
    with raises_on_next_line(IndexError, "index -5", "dim 1 of size 4"):
        x[:, [1, -5]]
    # two index arrays are merged into one linear index: each is still checked against its own dim
    i, j = pg.tensor([0]) + 0, pg.tensor([5]) + 0  # lazy: checked at run time
    y = x[i, j]
    line = inspect.currentframe().f_lineno - 1
    with pytest.raises(IndexError, match=rf"index 5 is out of range for dim 1 of size 4 \(at {__file__}:{line}\)"):
        y.numpy()

    @pg.compile
    def pick(i, j):
        return x[i, j]

    np.testing.assert_allclose(pick(pg.tensor([2, -1]), pg.tensor([-4, 3])).numpy(), x.numpy()[[2, -1], [-4, 3]])
    with pytest.raises(IndexError, match="index -4 is out of range for dim 0 of size 3"):
        pick(pg.tensor([-4, 0]), pg.tensor([0, 0]))


def test_arange_requires_grad():
    t = pg.arange(0.0, 3.0, requires_grad=True)
    assert t.requires_grad and t.is_leaf
    (t * t).sum().backward()
    np.testing.assert_allclose(t.grad.numpy(), [0.0, 2.0, 4.0])
    with pytest.raises(pg.DTypeError):
        pg.arange(3, requires_grad=True)


# ---------------------------------------------------------------------------------------------------------------
# backward() twice


def test_backward_twice_raises_unless_retain_graph(rng):
    a = rng.standard_normal(3)
    x = pg.tensor(a, requires_grad=True)
    loss = (x * x).sum()
    loss.backward()
    with raises_on_next_line(RuntimeError, "second time", "retain_graph=True"):
        loss.backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 * a)  # the refused call added nothing
    # through a shared part of the graph, as PyTorch
    h = x.exp()
    h.sum().backward()
    with pytest.raises(RuntimeError, match="second time"):
        (h * 2.0).sum().backward()
    # with retain_graph=True the second one accumulates, as PyTorch
    xt = torch.tensor(a, requires_grad=True)
    lt = (xt * xt.sin()).sum()
    lt.backward(retain_graph=True)
    lt.backward()
    y = pg.tensor(a, requires_grad=True)
    ly = (y * y.sin()).sum()
    ly.backward(retain_graph=True)
    ly.backward()
    np.testing.assert_allclose(y.grad.numpy(), xt.grad.numpy(), rtol=1e-12)
    # a fresh graph each step, and data computed without grad once and reused, are fine
    data = pg.tensor(a) * 2.0
    w = pg.tensor(a, requires_grad=True)
    opt = pg.optim.SGD([w], lr=0.1)
    for _ in range(3):
        opt.zero_grad()
        (w * data).sum().backward()
        opt.step()
    np.testing.assert_allclose(w.numpy(), a - 0.3 * 2 * a, rtol=1e-12)


# ---------------------------------------------------------------------------------------------------------------
# Size-0 tensors through every op, forward and backward, eager and compiled, against PyTorch

ZERO_OPS = {
    "mul_scalar": lambda m, x: x * 2.0,
    "add": lambda m, x: x + x,
    "sub_rscalar": lambda m, x: 1.0 - x,
    "neg": lambda m, x: -x,
    "exp": lambda m, x: x.exp(),
    "log": lambda m, x: (x * x + 1.0).log(),
    "sqrt": lambda m, x: (x * x + 1.0).sqrt(),
    "rsqrt": lambda m, x: (x * x + 1.0).rsqrt(),
    "tanh": lambda m, x: x.tanh(),
    "sigmoid": lambda m, x: x.sigmoid(),
    "relu": lambda m, x: x.relu(),
    "abs": lambda m, x: x.abs(),
    "sin_cos": lambda m, x: x.sin() * x.cos(),
    "erf": lambda m, x: x.erf(),
    "pow": lambda m, x: x**2,
    "div": lambda m, x: x / (x * x + 1.0),
    "maximum": lambda m, x: m.maximum(x, x * 0.5),
    "where": lambda m, x: m.where(x > 0, x, x * 2.0),
    "sum": lambda m, x: x.sum(),
    "sum_dim": lambda m, x: x.sum(0),
    "sum_keepdim": lambda m, x: x.sum(-1, keepdim=True),
    "mean_dim": lambda m, x: x.mean(0) if x.shape[0] else x.mean(-1),
    "max_dim": lambda m, x: x.amax(-1) if x.shape[-1] else x.amax(0),
    "softmax": lambda m, x: x.softmax(-1),
    "log_softmax": lambda m, x: x.log_softmax(0),
    "logsumexp": lambda m, x: x.logsumexp(-1),
    "reshape": lambda m, x: x.reshape(-1),
    "transpose": lambda m, x: x.T * 1.0,
    "slice": lambda m, x: x[..., :1] * 1.0,
    "cat": lambda m, x: m.cat([x, x], 0),
    "stack": lambda m, x: m.stack([x, x]),
    "matmul_k": lambda m, x: x.T @ x,
    "matmul_mn": lambda m, x: x @ x.T,
    "broadcast": lambda m, x: x + m.ones(x.shape[-1], dtype=x.dtype),
    "expand": lambda m, x: x.unsqueeze(0).expand(2, *x.shape) * 1.0,
    "cast": lambda m, x: x.float().double(),
}


@pytest.mark.parametrize("shape", [(2, 0), (0, 3)])
@pytest.mark.parametrize("name", sorted(ZERO_OPS))
def test_size_zero_tensors_through_every_op(name, shape, rng):
    fn = ZERO_OPS[name]
    a = rng.standard_normal(shape)
    xt = torch.tensor(a, requires_grad=True)
    want = fn(torch, xt)
    want.sum().backward()

    x = pg.tensor(a, requires_grad=True)
    got = fn(pg, x)
    assert got.shape == tuple(want.shape)
    np.testing.assert_allclose(got.numpy(), want.detach().numpy(), rtol=1e-12)
    got.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), xt.grad.numpy(), rtol=1e-12)

    @pg.compile
    def step(x):
        y = fn(pg, x)
        y.sum().backward()
        return y

    x = pg.tensor(a, requires_grad=True)
    y = step(x)
    np.testing.assert_allclose(y.numpy(), want.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(x.grad.numpy(), xt.grad.numpy(), rtol=1e-12)


def test_size_zero_batches_in_losses_and_lookups(rng):
    table = pg.tensor(rng.standard_normal((4, 3)), requires_grad=True)
    empty = pg.tensor(np.zeros(0, np.int64))
    out = F.embedding(empty, table)
    assert out.shape == (0, 3)
    out.sum().backward()
    np.testing.assert_array_equal(table.grad.numpy(), np.zeros((4, 3)))
    logits = pg.tensor(np.zeros((0, 3)), requires_grad=True)
    assert F.cross_entropy(logits, empty, reduction="sum").item() == 0.0
    assert F.cross_entropy(logits, empty, reduction="none").shape == (0,)


# ---------------------------------------------------------------------------------------------------------------
# Compiled steps: explicit arguments that require grad (item 1)


def test_compiled_argument_that_requires_grad_gets_its_gradient(rng):
    a = rng.standard_normal(3)

    @pg.compile
    def f(x):
        loss = (x * x.sin()).sum()
        loss.backward()
        return loss, x.grad

    x = pg.tensor(a, requires_grad=True)
    loss, inside = f(x)
    xt = torch.tensor(a, requires_grad=True)
    (xt * xt.sin()).sum().backward()
    np.testing.assert_allclose(inside.numpy(), xt.grad.numpy(), rtol=1e-12)
    np.testing.assert_allclose(x.grad.numpy(), xt.grad.numpy(), rtol=1e-12)
    # a second call accumulates into .grad, as PyTorch; a fresh tensor starts from None
    f(x)
    np.testing.assert_allclose(x.grad.numpy(), 2 * xt.grad.numpy(), rtol=1e-12)
    y = pg.tensor(-a, requires_grad=True)
    f(y)
    np.testing.assert_allclose(y.grad.numpy(), -xt.grad.numpy(), rtol=1e-12)
    np.testing.assert_allclose(x.grad.numpy(), 2 * xt.grad.numpy(), rtol=1e-12)


# ---------------------------------------------------------------------------------------------------------------
# Guards (item 2): a compiled step never reads a stale binding

_GLOBAL_W = pg.tensor([1.0, 2.0])
_GLOBAL_SCALE = 1.0


def _read_globals(x):
    return (_GLOBAL_W * x).sum() * _GLOBAL_SCALE


def test_rebound_parameter_global_and_closure_retrace(rng):
    global _GLOBAL_W, _GLOBAL_SCALE
    model = pg.nn.Linear(2, 1)
    a = rng.standard_normal((1, 2)).astype(np.float32)
    box = [pg.tensor([3.0])]

    def captured():
        return box[0]

    cell = pg.tensor([0.5])

    @pg.compile
    def f(x):
        return model(x).sum() + _read_globals(x) + (x * cell).sum() + captured().sum()

    def eager():
        w, b = model.weight.numpy(), model.bias.numpy()
        g = _GLOBAL_W.numpy()
        extra = (a * cell.numpy()).sum() + box[0].numpy().sum()
        return float((a @ w.T + b).sum() + (g * a).sum() * _GLOBAL_SCALE + extra)

    x = pg.tensor(a)
    np.testing.assert_allclose(f(x).item(), eager(), rtol=1e-5, atol=1e-6)
    model.weight = pg.nn.Parameter(rng.standard_normal((1, 2)).astype(np.float32))  # a new parameter object
    np.testing.assert_allclose(f(x).item(), eager(), rtol=1e-5, atol=1e-6)
    old = _GLOBAL_W
    try:
        _GLOBAL_W = pg.tensor(rng.standard_normal(2).astype(np.float32))  # a global read by a helper function
        np.testing.assert_allclose(f(x).item(), eager(), rtol=1e-5, atol=1e-6)
        _GLOBAL_SCALE = 3.0  # a Python scalar baked into the trace
        np.testing.assert_allclose(f(x).item(), eager(), rtol=1e-5, atol=1e-6)
    finally:
        _GLOBAL_W, _GLOBAL_SCALE = old, 1.0
    cell = pg.tensor([-2.0])  # a rebound closure variable
    np.testing.assert_allclose(f(x).item(), eager(), rtol=1e-5, atol=1e-6)
    # unchanged bindings hit the cache: no retrace
    calls = []

    @pg.compile
    def g(x):
        calls.append(1)
        return model(x).sum()

    for _ in range(3):
        g(x)
    assert len(calls) == 1
    model.eval()  # nothing g reads depends on the mode: no retrace
    g(x)
    assert len(calls) == 1
    drop = pg.nn.Dropout(0.5)

    @pg.compile
    def h(x):
        calls.append(2)
        return drop(model(x)).sum()

    h(x)
    h(x)
    assert calls.count(2) == 1
    drop.eval()  # h read drop.training: the other mode traces again, and dropout is off
    w, b = model.weight.numpy(), model.bias.numpy()
    np.testing.assert_allclose(h(x).item(), float((a @ w.T + b).sum()), rtol=1e-5, atol=1e-6)
    assert calls.count(2) == 2


# ---------------------------------------------------------------------------------------------------------------
# Caches and memory


def test_eager_python_scalar_that_changes_is_a_runtime_scalar(rng):
    a = rng.standard_normal(3)
    w = pg.tensor(a, requires_grad=True)
    opt = pg.optim.SGD([w], lr=0.01)
    wt = torch.tensor(a, requires_grad=True)
    optt = torch.optim.SGD([wt], lr=0.01)
    sizes = []
    for i in range(12):
        opt.zero_grad()
        loss = (w * w.sin()).sum() * (1 + 1e-1 * i)  # a schedule written as a Python float
        loss.backward()
        opt.step()
        got = loss.item()
        optt.zero_grad()
        lt = (wt * wt.sin()).sum() * (1 + 1e-1 * i)
        lt.backward()
        optt.step()
        np.testing.assert_allclose(got, lt.item(), rtol=1e-12)
        sizes.append(pg.frontend.realize.cache_size())
    np.testing.assert_allclose(w.numpy(), wt.detach().numpy(), rtol=1e-12)
    assert sizes[-1] == sizes[2], sizes  # baked the first time, lifted the second, then cache hits


def test_compile_caches_are_bounded_and_die_with_their_function():
    import gc

    from picograd.frontend import realize

    limit = pg.set_cache_size(realize.cache_size() + 100)  # room for this test whatever ran before it
    try:
        before = realize.cache_size()
        fns = []
        for k in range(20):
            f = pg.compile(lambda x, k=k: x * float(k) + 1.0)
            np.testing.assert_allclose(f(pg.tensor([1.0, 2.0])).numpy(), [1.0 + k, 1.0 + 2 * k])
            fns.append(f)
        assert realize.cache_size() == before + 20
        del fns, f
        gc.collect()
        assert realize.cache_size() == before
    finally:
        pg.set_cache_size(limit)
    # the graph cache is an LRU of a size users set
    previous = pg.set_cache_size(4)
    try:
        for k in range(10):
            (pg.tensor([1.0]) + pg.tensor([float(k)]).exp() * k).numpy()  # 10 structures (k is baked once each)
            assert realize.cache_size() <= 4
    finally:
        assert pg.set_cache_size(previous) == 4
    with pytest.raises(ValueError):
        pg.set_cache_size(0)
    # a compiled function keeps at most cache_size traces
    g = pg.compile(lambda x: x * 2.0, cache_size=2)
    for n in range(1, 6):
        g(pg.tensor(np.ones(n)))
    assert len(g.executables()) == 2


def test_gradient_accumulation_compiles_once_per_state(rng):
    a, b = rng.standard_normal((2, 3)), rng.standard_normal(2)
    batches = [(rng.standard_normal((4, 3)), rng.standard_normal((4, 2))) for _ in range(8)]
    model = pg.nn.Linear(3, 2).double()
    model.weight.data = pg.tensor(a, dtype=model.weight.dtype)
    model.bias.data = pg.tensor(b, dtype=model.bias.dtype)
    opt = pg.optim.SGD(model.parameters(), lr=0.1)
    traces = []

    @pg.compile
    def micro(x, y):
        traces.append(1)
        loss = F.mse_loss(model(x), y)
        loss.backward()
        for p in model.parameters():
            p.grad = p.grad * 0.5
        return loss

    tm = torch.nn.Linear(3, 2).double()
    with torch.no_grad():
        tm.weight.copy_(torch.tensor(model.weight.numpy()))
        tm.bias.copy_(torch.tensor(model.bias.numpy()))
    topt = torch.optim.SGD(tm.parameters(), lr=0.1)
    dtype = model.weight.dtype.np
    for it in range(4):
        opt.zero_grad()
        topt.zero_grad()
        for x, y in batches[2 * it : 2 * it + 2]:
            micro(pg.tensor(x.astype(dtype)), pg.tensor(y.astype(dtype)))
            loss = torch.nn.functional.mse_loss(tm(torch.tensor(x.astype(dtype))), torch.tensor(y.astype(dtype)))
            loss.backward()
            for p in tm.parameters():
                p.grad = p.grad * 0.5
        opt.step()
        topt.step()
    assert len(traces) == 2  # .grad None (first micro-batch) and set (the second), each traced once
    np.testing.assert_allclose(model.weight.numpy(), tm.weight.detach().numpy(), rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------------------------------------------
# Checkpoints


def test_load_bad_files_name_the_file_and_the_problem(tmp_path, rng):
    from safetensors.numpy import save_file

    good = tmp_path / "good.safetensors"
    state = {"w": rng.standard_normal(3), "step": 3}
    pg.save(state, good)
    loaded = pg.load(good)
    np.testing.assert_array_equal(loaded["w"], state["w"])
    data = good.read_bytes()
    cases = {
        "empty.safetensors": (b"", "is empty"),
        "truncated.safetensors": (data[:-3], "truncated"),
        "junk.bin": (b"this is not a checkpoint at all", "not a safetensors file"),
    }
    for name, (content, problem) in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(pg.CheckpointError, match=problem) as info:
            pg.load(tmp_path / name)
        assert str(tmp_path / name) in str(info.value)
    torch_file = tmp_path / "model.pt"
    torch.save({"w": torch.zeros(2)}, torch_file)
    with pytest.raises(pg.CheckpointError, match="looks like a PyTorch checkpoint .*torch.load") as info:
        pg.load(torch_file)
    assert str(torch_file) in str(info.value)
    foreign = tmp_path / "foreign.safetensors"
    save_file({"x": np.zeros(2, np.float32)}, str(foreign))
    with pytest.raises(pg.CheckpointError, match="picograd did not write") as info:
        pg.load(foreign)
    assert str(foreign) in str(info.value)
    with pytest.raises(FileNotFoundError, match="missing.safetensors"):
        pg.load(tmp_path / "missing.safetensors")


def test_save_names_the_target_and_cleans_stale_temp_files(tmp_path):
    target = tmp_path / "nodir" / "ckpt.safetensors"
    with pytest.raises(FileNotFoundError) as info:
        pg.save({"a": pg.tensor([1.0])}, target)
    assert str(target) in str(info.value) and ".tmp" not in str(info.value)
    path = tmp_path / "ckpt.safetensors"
    dead = tmp_path / ".ckpt.safetensors.tmp-999999999-x1.safetensors"  # a save killed mid-write
    ours = tmp_path / f".ckpt.safetensors.tmp-{os.getpid()}-x2.safetensors"  # an earlier save of this process
    live = tmp_path / ".ckpt.safetensors.tmp-1-x3.safetensors"  # a save in progress in a live process
    other = tmp_path / ".other.safetensors.tmp-999999999-x4.safetensors"  # another checkpoint's
    for f in (dead, ours, live, other):
        f.write_bytes(b"partial")
    pg.save({"a": pg.tensor([1.0, 2.0])}, path)
    assert not dead.exists() and not ours.exists()
    assert live.exists() and other.exists()
    np.testing.assert_array_equal(pg.load(path)["a"], [1.0, 2.0])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["ckpt.safetensors", live.name, other.name])


# ---------------------------------------------------------------------------------------------------------------
# pgc on a broken model file


@pytest.mark.parametrize(
    "source, line, error",
    [
        ("import picograd as pg\nx = (1,\n", 2, "SyntaxError"),
        ("import picograd as pg\n\nprint(undefined_at_import)\n", 3, "NameError: name 'undefined_at_import'"),
        ("import sys\n\nsys.exit(3)\n", 3, "SystemExit: 3: the model file exited while pgc imported it"),
        (
            "import picograd as pg\n\n@pg.compile(example_inputs=(pg.Spec((2,)),))\ndef f(x):\n    return x * nope\n",
            5,
            "NameError: name 'nope' is not defined",
        ),
    ],
)
def test_pgc_model_errors_are_one_line_with_the_users_line(tmp_path, capsys, source, line, error):
    from picograd.tools.pgc import main

    model = tmp_path / "model.py"
    model.write_text(source)
    assert main([str(model)]) == 1
    err = capsys.readouterr().err
    assert err.strip() == err.strip().splitlines()[0], err  # one line, no traceback
    assert f"{model}:{line}: {error}" in err


def test_pgc_on_a_directory_an_mlir_file_or_a_model_without_py_is_clear(tmp_path, capsys):
    from picograd.tools.pgc import main

    ir = tmp_path / "step.mlir"
    ir.write_text("builtin.module {}\n")
    for path, fragment in ((tmp_path, "is a directory"), (ir, "is MLIR; pgc takes a Python model file")):
        assert main([str(path)]) == 1  # an AssertionError traceback from inside pgc before
        err = capsys.readouterr().err
        assert err.strip() == err.strip().splitlines()[0], err
        assert f"pgc: error: {path} {fragment}" in err
    model = tmp_path / "model.txt"  # any other name is read as Python
    model.write_text(
        "import picograd as pg\n\n@pg.compile(example_inputs=(pg.Spec((2,)),))\ndef f(x):\n    return x.exp()\n"
    )
    assert main([str(model), "--emit=pg", "-o", str(tmp_path / "out.mlir")]) == 0
    assert "pg.exp" in (tmp_path / "out.mlir").read_text()
    for emit in ("pg", "ptx"):  # -o a directory: an IsADirectoryError traceback before
        assert main([str(model), f"--emit={emit}", "--device=cuda", "-o", str(tmp_path)]) == 1
        err = capsys.readouterr().err
        assert err.strip() == err.strip().splitlines()[0] and "Is a directory" in err, err


# ---------------------------------------------------------------------------------------------------------------
# Device-side index checks (item 3 on the GPU): error flags written by the kernels, read after the step; checked
# on the PTX emulator and assembled by ptxas


def _gpu_program(fn):
    from picograd.driver.gpu_compile import compile_for_cuda

    return compile_for_cuda(fn.ir("simplify"))


def test_gpu_embedding_index_check_on_the_emulator(rng):
    from _ptx_emulator import run_program

    table = rng.standard_normal((4, 3)).astype(np.float32)
    weight = pg.tensor(table)

    @pg.compile(example_inputs=(pg.Spec((2,), "int64"),))
    def lookup(i):
        return F.embedding(i, weight) * 2.0

    line = inspect.getsourcelines(lookup.fn)[1] + 2
    program = _gpu_program(lookup)
    assert len(program.checks) == 1
    (out,) = run_program(program, [np.array([1, 3]), table])
    np.testing.assert_allclose(out, table[[1, 3]] * 2.0, rtol=1e-6)
    for bad in (4, -1):
        with pytest.raises(
            IndexError, match=rf"index {bad} is out of range for dim 0 of size 4 \(at {__file__}:{line}\)"
        ):
            run_program(program, [np.array([0, bad]), table])
    from picograd.target import ptxas

    if ptxas.find_ptxas() is not None:
        program.assemble()


def test_gpu_cross_entropy_target_check_on_the_emulator(rng):
    from _ptx_emulator import run_program

    w = pg.tensor(rng.standard_normal((3, 3)).astype(np.float32), requires_grad=True)
    opt = pg.optim.SGD([w], lr=0.1)

    @pg.compile(example_inputs=(pg.Spec((2, 3)), pg.Spec((2,), "int64")))
    def step(x, y):
        loss = F.cross_entropy(x @ w, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss

    program = _gpu_program(step)
    assert program.checks
    x = rng.standard_normal((2, 3)).astype(np.float32)
    inputs = [x, np.array([0, 2]), w.numpy()]  # then the optimizer's learning rate and step count
    inputs += [np.zeros(s.shape, s.dtype) for s in program.inputs[3:]]
    run_program(program, inputs)  # in range: no error
    inputs[1] = np.array([0, -1])
    with pytest.raises(IndexError, match="target -1 is out of range for dim 1 of size 3"):
        run_program(program, inputs)


def test_loop_stage_index_check(rng):
    from picograd.runtime.loop_interpreter import run_function

    table = rng.standard_normal((4, 3))
    weight = pg.tensor(table)

    @pg.compile(example_inputs=(pg.Spec((2, 2), "int64"),))
    def pick(i):
        return weight[i].sum(-1)

    module = pick.ir("loops")
    (out,) = run_function(module, "pick", [np.array([[1, -1], [0, 2]]), table])
    np.testing.assert_allclose(out, table[[[1, -1], [0, 2]]].sum(-1), rtol=1e-12)
    with pytest.raises(IndexError, match="index -5 is out of range for dim 0 of size 4"):
        run_function(module, "pick", [np.array([[1, -5], [0, 2]]), table])


@pytest.mark.gpu
def test_gpu_index_checks_on_the_device(rng):
    from picograd.runtime import cuda

    if not cuda.available():
        pytest.skip("needs an NVIDIA GPU")
    table = rng.standard_normal((4, 3)).astype(np.float32)
    weight = pg.tensor(table, device="cuda", requires_grad=True)
    np.testing.assert_allclose(F.embedding(pg.tensor([3, 0], device="cuda"), weight).numpy(), table[[3, 0]])
    with pytest.raises(IndexError, match="index 4 is out of range for dim 0 of size 4"):
        F.embedding(pg.tensor([1, 2], device="cuda") * 2, weight).numpy()  # computed on the device: checked there
    opt = pg.optim.SGD([weight], lr=0.1)

    @pg.compile
    def step(x, y):
        loss = F.cross_entropy(x @ weight, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss

    x = pg.tensor(rng.standard_normal((2, 4)).astype(np.float32), device="cuda")
    for _ in range(3):
        step(x, pg.tensor([0, 2], device="cuda")).item()
    before = weight.numpy().copy()
    loss = step(x, pg.tensor([0, -1], device="cuda"))  # checked on the device, read at the next synchronization
    with pytest.raises(IndexError, match="target -1 is out of range for dim 1 of size 3"):
        loss.item()
    np.testing.assert_array_equal(weight.numpy(), before)  # the failed step's write-back was undone
    step(x, pg.tensor([1, 2], device="cuda")).item()  # the flags were cleared: the next step runs


def test_gradient_read_lazily_by_a_later_backward_is_a_constant(rng):
    a, b = rng.standard_normal(2), rng.standard_normal(2)
    w, x = pg.tensor(a, requires_grad=True), pg.tensor(b, requires_grad=True)
    (w * w * x).sum().backward()
    (w.grad * x).sum().backward()  # w.grad not realized yet: it must not be differentiated through
    wt, xt = torch.tensor(a, requires_grad=True), torch.tensor(b, requires_grad=True)
    (wt * wt * xt).sum().backward()
    (wt.grad * xt).sum().backward()
    np.testing.assert_allclose(w.grad.numpy(), wt.grad.numpy(), rtol=1e-12)
    np.testing.assert_allclose(x.grad.numpy(), xt.grad.numpy(), rtol=1e-12)
