"""16-bit floats and mixed precision (issue 14, item 1): ``pg.bfloat16``/``pg.float16``, casts, PyTorch's promotion,
the CPU executor's rounding (computed in float32, rounded once, as PyTorch's CPU kernels), ``pg.autocast`` and its
op lists, the autocast guard of compiled steps, ``allow_tf32`` in the IR, and a bf16 mixed-precision train step of
the names MLP against ``torch.autocast("cpu", dtype=torch.bfloat16)``."""

from __future__ import annotations

import itertools

import ml_dtypes
import numpy as np
import picograd.nn.functional as F
import pytest
import torch

import picograd as pg
from picograd.dialects import pg as pg_dialect

LOW = ["bfloat16", "float16"]
ALL = ["bfloat16", "float16", "float32", "float64", "int64", "int32", "bool"]
BF16_ULP = 2.0**-7  # relative spacing of bf16 (8 significant bits)


def _torch_dtype(name: str) -> torch.dtype:
    return getattr(torch, name)


def _pg_tensor(arr: np.ndarray, name: str) -> pg.Tensor:
    return pg.tensor(arr).to(getattr(pg, name if name != "bool" else "bool_"))


def _as64(x: pg.Tensor | torch.Tensor) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().to(torch.float64).numpy()
    return x.numpy().astype(np.float64)


# ---------------------------------------------------------------------------------------------------------------
# dtypes, casts and promotion


def test_dtypes_and_storage(rng):
    assert pg.bfloat16.is_floating_point and pg.float16.is_floating_point and pg.half is pg.float16
    assert pg.bfloat16 == "bfloat16" and pg.float16 == np.float16 and pg.float16 == "half"
    arr = rng.standard_normal((3, 4)).astype(ml_dtypes.bfloat16)
    t = pg.tensor(arr)  # numpy data keeps its dtype
    assert t.dtype == pg.bfloat16 and t.numpy().dtype == ml_dtypes.bfloat16
    np.testing.assert_array_equal(t.numpy(), arr)
    assert pg.zeros(2, dtype=pg.float16).numpy().dtype == np.float16
    assert pg.tensor([1.0], dtype="bfloat16").dtype == pg.bfloat16


@pytest.mark.parametrize("name", LOW)
def test_casts_round_to_nearest_even_as_torch(rng, name):
    x = (rng.standard_normal(2000) * 10.0 ** rng.integers(-6, 4, 2000)).astype(np.float32)
    x[:4] = [1.0 + 2**-8, 1.0 + 3 * 2**-8, 65504.0, -1e-8]  # bf16 ties, the f16 max, an f16 subnormal underflow
    got = pg.tensor(x).to(getattr(pg, name))
    want = torch.from_numpy(x).to(_torch_dtype(name))
    np.testing.assert_array_equal(_as64(got), _as64(want))
    np.testing.assert_array_equal(got.float().numpy(), want.float().numpy())  # widening is exact
    np.testing.assert_array_equal(got.long().numpy(), want.long().numpy())  # truncation toward zero
    assert getattr(got, "half" if name == "float16" else "bfloat16")() is got


@pytest.mark.parametrize("a,b", list(itertools.product(ALL, ALL)))
def test_promotion_matches_torch_result_type(rng, a, b):
    data = (rng.standard_normal((2, 3)) * 3).astype(np.float32)
    for na, nb in ((2, 2), (2, 0), (0, 2)):  # dimensioned tensors and 0-d tensors
        x, y = data if na else data[0, 0], data[1] if nb else data[1, 1]
        want = torch.result_type(
            torch.from_numpy(np.asarray(x)).to(_torch_dtype(a)), torch.from_numpy(np.asarray(y)).to(_torch_dtype(b))
        )
        got = (_pg_tensor(np.asarray(x), a) + _pg_tensor(np.asarray(y), b)).dtype
        assert got.name == str(want).removeprefix("torch."), (a, na, b, nb)
    for scalar in (2, 2.5, True):
        want = torch.result_type(torch.from_numpy(data).to(_torch_dtype(a)), scalar)
        assert (_pg_tensor(data, a) * scalar).dtype.name == str(want).removeprefix("torch.")


# ---------------------------------------------------------------------------------------------------------------
# the CPU executor: float32 compute, one rounding


@pytest.mark.parametrize("name", LOW)
def test_elementwise_ops_round_like_torch_cpu(rng, name):
    a = rng.standard_normal((5, 7)).astype(np.float32)
    b = rng.uniform(0.5, 2.0, (5, 7)).astype(np.float32)
    x, y = pg.tensor(a).to(getattr(pg, name)), pg.tensor(b).to(getattr(pg, name))
    tx, ty = torch.from_numpy(a).to(_torch_dtype(name)), torch.from_numpy(b).to(_torch_dtype(name))
    cases = [
        (x + y, tx + ty),
        (x * y, tx * ty),
        (x / y, tx / ty),
        (x * 0.1, tx * 0.1),
        (x.exp(), tx.exp()),
        (x.tanh(), tx.tanh()),
        (y.log(), ty.log()),
        (y.sqrt(), ty.sqrt()),
        (x.sigmoid(), tx.sigmoid()),
    ]
    for got, want in cases:
        assert got.dtype.name == name
        # one rounding of a float32 result: equal to torch's up to one unit in the last place (their float32
        # exp/tanh may differ in the last float32 bit, which can move a value across a rounding boundary)
        np.testing.assert_allclose(_as64(got), _as64(want), rtol=BF16_ULP if name == "bfloat16" else 2**-10)
        assert np.mean(_as64(got) == _as64(want)) > 0.95


@pytest.mark.parametrize("name", LOW)
def test_matmul_accumulates_in_float32_and_rounds_once(rng, name):
    a = rng.standard_normal((3, 16, 200)).astype(np.float32)
    b = rng.standard_normal((3, 200, 24)).astype(np.float32)
    x, y = pg.tensor(a).to(getattr(pg, name)), pg.tensor(b).to(getattr(pg, name))
    got = x @ y
    assert got.dtype.name == name
    # the exact product of the rounded inputs, rounded once to the 16-bit type
    exact = np.matmul(x.numpy().astype(np.float64), y.numpy().astype(np.float64))
    once = exact.astype(np.float32).astype(got.numpy().dtype).astype(np.float64)
    assert np.mean(_as64(got) == once) > 0.97  # float32 accumulation order moves a few across a rounding boundary
    ulp = BF16_ULP if name == "bfloat16" else 2**-10
    np.testing.assert_allclose(_as64(got), exact, rtol=ulp, atol=ulp * np.abs(exact).max() * 1e-2)
    want = torch.from_numpy(a).to(_torch_dtype(name)) @ torch.from_numpy(b).to(_torch_dtype(name))
    np.testing.assert_allclose(_as64(got), _as64(want), rtol=ulp, atol=ulp * np.abs(exact).max() * 1e-2)


def test_sum_accumulates_in_float32(rng):
    a = rng.uniform(0.9, 1.1, (4, 3000)).astype(np.float32)  # a bf16 running sum would stall near 256
    got = pg.tensor(a).bfloat16().sum(1)
    exact = pg.tensor(a).bfloat16().numpy().astype(np.float64).sum(1)
    np.testing.assert_allclose(_as64(got), exact, rtol=BF16_ULP)
    np.testing.assert_allclose(_as64(got), _as64(torch.from_numpy(a).bfloat16().sum(1)), rtol=BF16_ULP)


def test_bf16_gradients_match_torch(rng):
    a = rng.standard_normal((4, 6)).astype(np.float32)
    w = rng.standard_normal((3, 6)).astype(np.float32)
    x = pg.tensor(a).bfloat16()
    x.requires_grad = True
    wp = pg.tensor(w, requires_grad=True)
    loss = (F.linear(x, wp.bfloat16()).tanh().float() ** 2).sum()
    loss.backward()
    tx = torch.from_numpy(a).bfloat16().requires_grad_()
    tw = torch.from_numpy(w).requires_grad_()
    tl = (torch.nn.functional.linear(tx, tw.bfloat16()).tanh().float() ** 2).sum()
    tl.backward()
    assert x.grad.dtype == pg.bfloat16 and wp.grad.dtype == pg.float32  # gradients take their leaf's dtype
    np.testing.assert_allclose(loss.item(), tl.item(), rtol=1e-2)
    np.testing.assert_allclose(_as64(x.grad), _as64(tx.grad), rtol=0.05, atol=0.05)
    np.testing.assert_allclose(_as64(wp.grad), _as64(tw.grad), rtol=0.05, atol=0.05)


def test_model_to_bfloat16_trains_in_bfloat16(rng):
    pg.manual_seed(0)
    model = pg.nn.Sequential(pg.nn.Linear(6, 8), pg.nn.Tanh(), pg.nn.Linear(8, 2))
    weight = model[0].weight
    state = model.state_dict()
    assert model.to(pg.bfloat16) is model and model[0].weight is weight  # same objects, converted in place
    assert all(p.dtype == pg.bfloat16 for p in model.parameters())
    opt = pg.optim.SGD(model.parameters(), lr=0.1)
    twin = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))
    twin.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})
    twin.to(torch.bfloat16)
    topt = torch.optim.SGD(twin.parameters(), lr=0.1)
    for _ in range(3):
        x = rng.standard_normal((5, 6)).astype(np.float32)
        y = rng.standard_normal((5, 2)).astype(np.float32)
        loss = F.mse_loss(model(pg.tensor(x).bfloat16()), pg.tensor(y).bfloat16())
        opt.zero_grad()
        loss.backward()
        opt.step()
        tloss = torch.nn.functional.mse_loss(twin(torch.from_numpy(x).bfloat16()), torch.from_numpy(y).bfloat16())
        topt.zero_grad()
        tloss.backward()
        topt.step()
        np.testing.assert_allclose(loss.item(), tloss.item(), rtol=2e-2)
    assert weight.dtype == pg.bfloat16
    np.testing.assert_allclose(_as64(weight), _as64(twin[0].weight), atol=0.02)
    model.float()
    assert weight.dtype == pg.float32


# ---------------------------------------------------------------------------------------------------------------
# autocast


def test_autocast_op_lists(rng):
    x = pg.tensor(rng.standard_normal((4, 5)).astype(np.float32))
    w = pg.tensor(rng.standard_normal((3, 5)).astype(np.float32))
    target = pg.tensor([0, 1, 2, 0])
    with pg.autocast("cpu", dtype=pg.bfloat16):
        assert pg.is_autocast_enabled("cpu") and not pg.is_autocast_enabled("cuda")
        y = F.linear(x, w)
        assert y.dtype == pg.bfloat16 and (x @ w.T).dtype == pg.bfloat16 and pg.mm(x, w.T).dtype == pg.bfloat16
        assert (x.double() @ w.T.double()).dtype == pg.float64  # float64 is never cast
        assert F.cross_entropy(y, target).dtype == pg.float32 and F.mse_loss(y, y).dtype == pg.float32
        assert y.softmax(1).dtype == pg.float32 and y.log_softmax(1).dtype == pg.float32 and y.sum().dtype == pg.float32
        assert F.layer_norm(y, (3,)).dtype == pg.float32
        assert y.tanh().dtype == pg.bfloat16 and (y + pg.zeros(3)).dtype == pg.float32  # others: usual promotion
        assert y.mean().dtype == pg.bfloat16  # as PyTorch: mean is on neither list
        with pg.autocast("cpu", enabled=False):
            assert F.linear(x, w).dtype == pg.float32
        with pg.autocast("cpu", dtype=pg.float16):
            assert F.linear(x, w).dtype == pg.float16
    assert F.linear(x, w).dtype == pg.float32
    with pg.autocast("cuda"):  # CPU tensors are not affected by CUDA autocast
        assert F.linear(x, w).dtype == pg.float32
    with pytest.raises(ValueError, match="device_type"):
        pg.autocast("tpu")
    with pytest.raises(pg.DTypeError, match="bfloat16 or float16"):
        pg.autocast("cpu", dtype=pg.float64)


def test_autocast_runs_convolutions_in_the_lower_precision_and_group_norm_in_float32(rng):
    """As PyTorch's autocast lists: conv1d/2d and the transposed ones in bf16 (a float32 Linear -> Conv2d model
    runs, its conv in bf16), group_norm in float32; conv values within one bf16 ulp of torch.autocast's."""
    x = rng.standard_normal((2, 3, 6, 6)).astype(np.float32)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32)
    with pg.autocast("cpu", dtype=pg.bfloat16):
        y = F.conv2d(pg.tensor(x), pg.tensor(w), pg.tensor(b), padding=1)
        assert F.conv1d(pg.tensor(x[:, :, 0]), pg.tensor(w[..., 0])).dtype == pg.bfloat16
        assert F.conv_transpose2d(pg.tensor(x), pg.tensor(w.transpose(1, 0, 2, 3))).dtype == pg.bfloat16
        assert F.group_norm(y, 2).dtype == pg.float32
        model = pg.nn.Sequential(pg.nn.Linear(4, 32), pg.nn.Unflatten(1, (2, 4, 4)), pg.nn.Conv2d(2, 4, 3, padding=1))
        assert model(pg.randn(2, 4)).dtype == pg.bfloat16
    with torch.autocast("cpu", dtype=torch.bfloat16):
        t = torch.nn.functional.conv2d(torch.tensor(x), torch.tensor(w), torch.tensor(b), padding=1)
    assert y.dtype == pg.bfloat16 and t.dtype == torch.bfloat16
    np.testing.assert_allclose(_as64(y), _as64(t), rtol=2 * BF16_ULP, atol=2 * BF16_ULP)


def test_autocast_matches_torch_on_the_ops_both_list(rng):
    x = rng.standard_normal((4, 5)).astype(np.float32)
    w = rng.standard_normal((3, 5)).astype(np.float32)
    b = rng.standard_normal(3).astype(np.float32)
    t = np.array([0, 2, 1, 1])
    with pg.autocast("cpu"):
        y = F.linear(pg.tensor(x), pg.tensor(w), pg.tensor(b))
        loss = F.cross_entropy(y, pg.tensor(t))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ty = torch.nn.functional.linear(torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b))
        tloss = torch.nn.functional.cross_entropy(ty, torch.from_numpy(t))
    assert y.dtype == pg.bfloat16 and ty.dtype == torch.bfloat16
    assert loss.dtype == pg.float32 and tloss.dtype == torch.float32
    # torch adds the bias before its one rounding; picograd rounds the product, then the sum: two bf16 ulps at most
    np.testing.assert_allclose(_as64(y), _as64(ty), rtol=2 * BF16_ULP, atol=2 * BF16_ULP)
    np.testing.assert_allclose(loss.item(), tloss.item(), rtol=1e-2)


def test_autocast_state_is_part_of_a_compiled_step(rng):
    lin = pg.nn.Linear(5, 3)
    x = pg.tensor(rng.standard_normal((4, 5)).astype(np.float32))

    @pg.compile
    def f(x):
        return lin(x)

    plain = f(x)
    with pg.autocast("cpu"):
        mixed = f(x)
        assert f(x).dtype == pg.bfloat16
    assert plain.dtype == pg.float32 and mixed.dtype == pg.bfloat16
    assert len(f.executables()) == 2  # a second trace, not the float32 one replayed
    assert f(x).dtype == pg.float32 and len(f.executables()) == 2
    np.testing.assert_allclose(_as64(mixed), _as64(plain), rtol=0.02, atol=0.02)
    np.testing.assert_array_equal(f(x).numpy(), plain.numpy())


def test_allow_tf32_marks_float32_matmuls_in_the_ir(rng):
    lin = pg.nn.Linear(5, 3)
    x = pg.tensor(rng.standard_normal((4, 5)).astype(np.float32))
    opt = pg.optim.SGD(lin.parameters(), lr=0.1)

    @pg.compile
    def step(x):
        loss = lin(x).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss

    assert pg.backends.cuda.matmul.allow_tf32 is False  # off by default, as PyTorch
    assert " tf32 " not in str(step.ir("step", (x,)))
    try:
        pg.backends.cuda.matmul.allow_tf32 = True
        text = str(step.ir("step", (x,)))
        # the forward product and both products of its gradient
        assert text.count("pg.matmul") == text.count(" tf32 ") == 2  # dx is not needed: forward and dW
        step(x)
        assert len(step.executables()) == 1
        with pytest.raises(AttributeError, match="allow_tf32"):
            pg.backends.cuda.matmul.allow_tf16 = True  # type: ignore[attr-defined]
    finally:
        pg.backends.cuda.matmul.allow_tf32 = False
    step(x)
    assert len(step.executables()) == 2  # allow_tf32 is guarded as autocast is
    with pg.autocast("cpu"):
        pg.backends.cuda.matmul.allow_tf32 = True
        try:
            assert " tf32 " not in str(step.ir("step", (x,)).ops.first)  # bf16 matmuls are not tf32
        finally:
            pg.backends.cuda.matmul.allow_tf32 = False


def test_matmul_precision_names_what_a_schedule_may_use(rng):
    x = pg.tensor(rng.standard_normal((4, 5)).astype(np.float32))

    @pg.compile
    def f(x):
        return x @ x.T, x.double() @ x.double().T, x.bfloat16() @ x.bfloat16().T, x.half() @ x.half().T

    def precisions():
        return [op.precision for op in f.ir("pg", (x,)).walk() if isinstance(op, pg_dialect.MatmulOp)]

    assert precisions() == ["fp32", "fp64", "bf16", "fp16"]
    assert pg.get_float32_matmul_precision() == "highest"
    try:
        pg.set_float32_matmul_precision("high")
        assert pg.backends.cuda.matmul.allow_tf32 and pg.get_float32_matmul_precision() == "high"
        assert precisions() == ["tf32", "fp64", "bf16", "fp16"]
        with pytest.raises(ValueError, match="highest"):
            pg.set_float32_matmul_precision("low")
    finally:
        pg.set_float32_matmul_precision("highest")
    assert not pg.backends.cuda.matmul.allow_tf32


@pytest.mark.parametrize("name", LOW)
def test_autocast_mlp_step_on_the_loop_interpreter_and_the_ptx_emulator(rng, name):
    """The tiny MLP's train step under ``pg.autocast(dtype=bf16/f16)`` through pg-bufferize, the loop stage (loop
    interpreter) and PTX (emulator, ptxas): 16-bit buffers, math in f32 rounded once per op, f32 accumulation in
    matmuls and reductions, so both agree with the CPU executor bit for bit but for the order of sums (tolerance)."""
    from _ptx_emulator import run_program
    from test_loops import only_func, tiny_mlp_inputs, tiny_mlp_module

    from picograd.driver.gpu_compile import compile_for_cuda
    from picograd.driver.pipeline import lower_to
    from picograd.runtime.loop_interpreter import run_function
    from picograd.runtime.numpy_executor import compile_func

    module = tiny_mlp_module("sgd", autocast=getattr(pg, name))
    fn = only_func(module)
    text = str(module)
    assert ("bf16" if name == "bfloat16" else "f16") in text  # the step computes in 16 bits
    inputs = tiny_mlp_inputs(rng, module, "sgd")
    want = compile_func(fn)(*inputs)
    program = compile_for_cuda(module)
    program.assemble(strict=True)
    emulated = run_program(program, inputs)
    lower_to(module, "loops")
    interpreted = run_function(module, fn.sym_name.data, inputs)
    for w, g, e in zip(want, interpreted, emulated, strict=True):
        assert np.isfinite(w).all() and g.dtype == w.dtype == e.dtype
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(e, w, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------------------------------------------
# done when: a bf16 mixed-precision train step of the names MLP against torch.autocast


def test_names_mlp_autocast_train_step_matches_torch(rng):
    """20 SGD steps of the examples/mlp_names.py model under ``pg.autocast("cpu", dtype=pg.bfloat16)``, compiled,
    against the same model, initial state and batches under ``torch.autocast("cpu", dtype=torch.bfloat16)``."""
    from picograd.tools.pgc import _import_model

    ex = _import_model("examples/mlp_names.py")
    model, opt = ex.make(seed=3, lr=0.1)

    @pg.compile
    def step(x, y):
        with pg.autocast("cpu", dtype=pg.bfloat16):
            loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss

    class Twin(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.emb = torch.nn.Embedding(ex.VOCAB, ex.EMBED)
            self.hidden = torch.nn.Linear(ex.BLOCK_SIZE * ex.EMBED, ex.HIDDEN)
            self.out = torch.nn.Linear(ex.HIDDEN, ex.VOCAB)

        def forward(self, x):
            e = self.emb(x).reshape(x.shape[0], ex.BLOCK_SIZE * ex.EMBED)
            return self.out(torch.tanh(self.hidden(e)))

    twin = Twin()
    twin.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in model.state_dict().items()})
    topt = torch.optim.SGD(twin.parameters(), lr=0.1)
    losses, tlosses = [], []
    for _ in range(20):
        x = rng.integers(0, ex.VOCAB, (ex.BATCH, ex.BLOCK_SIZE))
        y = (x[:, -1] + 1) % ex.VOCAB  # learnable: the next letter of the alphabet
        losses.append(step(pg.tensor(x), pg.tensor(y)).item())
        with torch.autocast("cpu", dtype=torch.bfloat16):
            tloss = torch.nn.functional.cross_entropy(twin(torch.from_numpy(x)), torch.from_numpy(y))
        topt.zero_grad()
        tloss.backward()
        topt.step()
        tlosses.append(tloss.item())
    assert len(step.executables()) == 1
    assert all(p.dtype == pg.float32 for p in model.parameters())  # float32 master weights
    np.testing.assert_allclose(losses, tlosses, rtol=1e-2)
    assert losses[-1] < losses[0]
    for name, p in model.named_parameters():
        np.testing.assert_allclose(p.numpy(), twin.state_dict()[name].numpy(), atol=5e-3, err_msg=name)
