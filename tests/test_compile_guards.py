"""A compiled step gives what eager gives, or traces again, after any change of what it read while tracing
(developer guide): entries of dicts, lists and plain objects reached from globals, closures, arguments and modules;
Python scalars in the arguments (by type and value); module attributes and modes; optimizer settings and state;
parameters replaced, frozen or resized; tensor arguments of another dtype, shape or device. Each case compares the
compiled result after the change with the eager result of the same function."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import picograd as pg

F = pg.nn.functional


def _compare(step, *args, rtol=1e-6):
    """The compiled and the eager result of ``step`` on ``args`` agree (``step`` is a ``pg.compile``d function)."""
    got = step(*args)
    want = step.fn(*args)
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=rtol, atol=1e-6)
    return got


_CFG = {"scale": 2.0, "shift": [1.0, -1.0]}


def test_entries_of_a_global_dict_and_list_are_guarded(rng):
    x = pg.tensor(rng.standard_normal(2).astype(np.float32))
    step = pg.compile(lambda v: v * _CFG["scale"] + _CFG["shift"][1])
    try:
        _compare(step, x)
        _compare(step, x)
        assert len(step.executables()) == 1  # unchanged: a cache hit
        _CFG["scale"] = -3.0
        _compare(step, x)
        _CFG["shift"][1] = 5.0  # an entry of a list inside the dict
        _compare(step, x)
        assert len(step.executables()) == 3
    finally:
        _CFG["scale"], _CFG["shift"] = 2.0, [1.0, -1.0]


def test_entries_of_a_closure_list_are_guarded(rng):
    scales = [1.0, 2.0]
    x = pg.tensor(rng.standard_normal(2).astype(np.float32))
    step = pg.compile(lambda v: sum(v * s for s in scales))  # iterated: the whole list is read
    _compare(step, x)
    scales[0] = 4.0
    _compare(step, x)
    scales.append(-1.0)
    _compare(step, x)


class _Opts:
    """A plain (non-module) settings object."""

    def __init__(self, temperature: float):
        self.temperature = temperature


class _Scaled(pg.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = pg.nn.Linear(3, 2)
        self.cfg = {"gain": 1.5}
        self.opts = _Opts(0.5)
        self.temperature = 2.0

    def forward(self, x):
        return self.fc(x) * self.cfg["gain"] / self.opts.temperature / self.temperature


def test_dict_object_and_scalar_attributes_of_a_module_are_guarded(rng):
    model = _Scaled()
    x = pg.tensor(rng.standard_normal((4, 3)).astype(np.float32))
    step = pg.compile(lambda v: model(v).sum())
    _compare(step, x)
    _compare(step, x)
    assert len(step.executables()) == 1
    model.cfg["gain"] = -4.0  # a dict attribute's entry
    _compare(step, x)
    model.opts.temperature = 3.0  # a plain object's attribute
    _compare(step, x)
    model.temperature = 0.25  # a Python float attribute of the module
    _compare(step, x)
    model.cfg = {"gain": 7.0}  # the dict replaced
    _compare(step, x)


class _Key:
    """A hashable argument (hashed by identity) whose attribute the step reads."""

    def __init__(self, scale: float):
        self.scale = scale


def test_mutable_attribute_of_a_hashable_argument_is_guarded(rng):
    x = pg.tensor(rng.standard_normal(3).astype(np.float32))
    key = _Key(2.0)
    step = pg.compile(lambda v, k: v * k.scale)
    _compare(step, x, key)
    key.scale = -1.0
    _compare(step, x, key)


def test_replaced_default_values_trace_again(rng):
    """A parameter left out takes its default, which the trace bakes in: ``__defaults__`` or ``__kwdefaults__``
    replaced (a new tuple or dict) drops the traces (it was the old default, silently)."""
    x = pg.tensor(rng.standard_normal(3).astype(np.float32))

    def f(v, scale=2.0, *, shift=0.5):
        return v * scale + shift

    step = pg.compile(f)
    _compare(step, x)
    f.__defaults__ = (-3.0,)
    np.testing.assert_allclose(_compare(step, x).numpy(), x.numpy() * -3.0 + 0.5, rtol=1e-6)
    f.__kwdefaults__ = {"shift": 4.0}
    np.testing.assert_allclose(_compare(step, x).numpy(), x.numpy() * -3.0 + 4.0, rtol=1e-6)
    _compare(step, x, 1.5)  # given: no default read


def test_python_scalar_arguments_are_keyed_by_type_and_value(rng):
    xi = pg.tensor(rng.integers(-5, 5, 4))
    step = pg.compile(lambda v, s: v * s)
    assert _compare(step, xi, 2).dtype == pg.int64
    out = _compare(step, xi, 2.0)  # equal to 2 and hashed alike, but a float: the result is float
    assert out.dtype == pg.float32
    flag = pg.compile(lambda v, f: v * 3 if f is True else v)
    _compare(flag, xi, 1)
    _compare(flag, xi, True)
    tup = pg.compile(lambda v, t: v * t[0])
    _compare(tup, xi, (2,))
    assert _compare(tup, xi, (2.0,)).dtype == pg.float32
    kw = pg.compile(lambda v, scale=1.0: v * scale)
    x = pg.tensor(rng.standard_normal(3).astype(np.float32))
    np.testing.assert_allclose(kw(x, scale=2.0).numpy(), x.numpy() * 2, rtol=1e-6)
    np.testing.assert_allclose(kw(x, scale=3.0).numpy(), x.numpy() * 3, rtol=1e-6)


def test_tensor_arguments_of_another_dtype_or_shape_retrace(rng):
    step = pg.compile(lambda v: (v * 2).sum(0))
    _compare(step, pg.tensor(rng.standard_normal((3, 2)).astype(np.float32)))
    _compare(step, pg.tensor(rng.standard_normal((3, 2))))  # float64
    _compare(step, pg.tensor(rng.standard_normal((5,)).astype(np.float32)))
    _compare(step, pg.tensor(rng.integers(0, 9, (2, 2))))


def test_mode_switch_of_a_module_that_reads_training_retraces(rng):
    model = pg.nn.Sequential(pg.nn.Linear(3, 3), pg.nn.BatchNorm1d(3))
    x = pg.tensor(rng.standard_normal((5, 3)).astype(np.float32))
    step = pg.compile(lambda v: model(v))
    with pg.no_grad():
        step(x)
        model.eval()
        got = step(x).numpy()
        want = model(x).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def _twins(rng, make_opt):
    """Two equal models with an optimizer each: one stepped by a compiled step, the other eagerly."""
    a, b = rng.standard_normal((2, 3)), rng.standard_normal(2)
    models = []
    for _ in range(2):
        m = pg.nn.Linear(3, 2).double()
        m.weight.data = pg.tensor(a)
        m.bias.data = pg.tensor(b)
        models.append(m)
    opts = [make_opt(m) for m in models]

    def make_step(model, opt):
        def step(x, y):
            opt.zero_grad()
            loss = F.mse_loss(model(x), y)
            loss.backward()
            opt.step()
            return loss

        return step

    compiled = pg.compile(make_step(models[0], opts[0]))
    eager = make_step(models[1], opts[1])
    x, y = _batch(rng)

    def check():
        np.testing.assert_allclose(compiled(x, y).item(), eager(x, y).item(), rtol=1e-12)
        for p, q in zip(models[0].parameters(), models[1].parameters(), strict=True):
            np.testing.assert_allclose(p.numpy(), q.numpy(), rtol=1e-12, atol=1e-15)

    return models, opts, check


def test_sgd_settings_changed_after_compiling(rng):
    models, opts, check = _twins(rng, lambda m: pg.optim.SGD(m.parameters(), lr=0.1))
    check()
    for opt in opts:  # momentum turned on: a state buffer and another update rule
        opt.param_groups[0]["momentum"] = 0.9
    check()
    check()
    for opt in opts:
        opt.param_groups[0]["nesterov"] = True
    check()
    for opt in opts:
        opt.param_groups[0]["weight_decay"] = 0.1
        opt.param_groups[0]["dampening"] = 0.0
    check()


def test_adam_settings_and_state_changed_after_compiling(rng):
    models, opts, check = _twins(rng, lambda m: pg.optim.Adam(m.parameters(), lr=0.01))
    check()
    check()
    for opt in opts:
        opt.param_groups[0]["betas"] = (0.5, 0.9)
        opt.param_groups[0]["weight_decay"] = 0.05
        opt.param_groups[0]["eps"] = 1e-3
    check()
    saved = opts[1].state_dict()
    check()
    for opt in opts:  # a checkpoint restored: new state tensors
        opt.load_state_dict(saved)
    check()


def test_parameters_replaced_resized_or_added_after_compiling(rng):
    models, opts, check = _twins(rng, lambda m: pg.optim.SGD(m.parameters(), lr=0.1))
    check()
    w = rng.standard_normal((2, 3))
    for m in models:
        m.weight.data = pg.tensor(w)  # a new value in place
    check()
    for m in models:
        m.bias.requires_grad_(False)
    check()


def test_parameter_added_to_the_optimizer_after_compiling(rng):
    models, opts, check = _twins(rng, lambda m: pg.optim.SGD([m.weight], lr=0.1))
    check()
    check()  # the trace with every .grad set
    bias = models[0].bias.numpy().copy()
    for m, opt in zip(models, opts, strict=True):
        opt.param_groups[0]["params"].append(m.bias)  # the bias, which had gradients all along, is now updated
    check()
    assert not np.array_equal(models[0].bias.numpy(), bias)


_OFFSET = 1.0


def test_global_scalar_read_by_the_step(rng):
    global _OFFSET
    x = pg.tensor(rng.standard_normal(3).astype(np.float32))
    step = pg.compile(lambda v: v + _OFFSET)
    try:
        _compare(step, x)
        _OFFSET = 4.0
        _compare(step, x)
        _OFFSET = 4  # same value, another type
        _compare(step, x)
    finally:
        _OFFSET = 1.0


@pytest.mark.parametrize("what", ["dict", "list"])
def test_container_rebound_in_a_closure(rng, what):
    box = {"k": 2.0} if what == "dict" else [2.0]
    key = "k" if what == "dict" else 0
    x = pg.tensor(rng.standard_normal(3).astype(np.float32))
    step = pg.compile(lambda v: v * box[key])
    _compare(step, x)
    box[key] = -0.5
    _compare(step, x)


_TABLE = np.array([1.0, 2.0, 3.0], np.float32)


def test_numpy_array_changed_in_place(rng):
    x = pg.tensor(rng.standard_normal(3).astype(np.float32))
    step = pg.compile(lambda v: v * pg.tensor(_TABLE))  # the array becomes a constant of the trace
    saved = _TABLE.copy()
    try:
        _compare(step, x)
        _TABLE[1] = -7.0
        _compare(step, x)
        _compare(step, x)
        assert len(step.executables()) == 2
    finally:
        _TABLE[:] = saved


class _Stats:
    """A user object that a step only writes (its side effects, which run when it traces)."""

    def __init__(self) -> None:
        self.calls = 0
        self.seen: dict[str, int] = {}
        self.log: list[int] = []


_STATS = _Stats()


def test_what_a_step_only_writes_is_not_guarded(rng):
    """Counters and logs that a step updates are not inputs of its graph: changing them traces nothing again."""
    x = pg.tensor(rng.standard_normal(3).astype(np.float32))

    def f(v):
        _STATS.calls += 1
        _STATS.seen["f"] = 1
        _STATS.log.append(1)
        return v * 2

    step = pg.compile(f)
    for i in range(3):
        np.testing.assert_allclose(step(x).numpy(), x.numpy() * 2, rtol=1e-6)
        _STATS.calls += 10
        _STATS.seen["g"] = i
        _STATS.log.append(0)
    assert len(step.executables()) == 1


def test_a_step_traced_again_and_again_warns_naming_what_changed(rng):
    x = pg.tensor(rng.standard_normal(3).astype(np.float32))
    cfg = {"scale": 0.0}
    step = pg.compile(lambda v: v * cfg["scale"])
    with pytest.warns(RuntimeWarning, match=r"traced 8 times .*last: dict\['scale'\].*tensor argument") as caught:
        for i in range(10):
            cfg["scale"] = float(i)
            np.testing.assert_allclose(step(x).numpy(), x.numpy() * i, rtol=1e-6)
    assert len(caught) == 1 and __file__ in str(caught[0].message)


@pytest.mark.parametrize("how", ["clear", "replace", "entries"])
def test_optimizer_state_cleared_or_replaced_after_compiling(rng, how):
    models, opts, check = _twins(rng, lambda m: pg.optim.Adam(m.parameters(), lr=0.05))
    check()
    check()
    for opt in opts:  # the moments reset: the next update starts from zeros, compiled or not
        if how == "clear":
            opt.state.clear()
        elif how == "replace":
            opt.state = {}
        else:
            for st in opt.state.values():
                for name, t in st.items():
                    st[name] = pg.zeros(*t.shape, dtype=t.dtype)
    check()
    check()


def _linear_twins(rng, n_in=3, n_out=2):
    w, b = rng.standard_normal((n_out, n_in)), rng.standard_normal(n_out)
    models = []
    for _ in range(2):
        m = pg.nn.Linear(n_in, n_out).double()
        m.weight.data, m.bias.data = pg.tensor(w), pg.tensor(b)
        models.append(m)
    return models


def _batch(rng):
    """A fresh ``(x, y)`` for :func:`_linear_twins` (float64, 4 rows)."""
    return pg.tensor(rng.standard_normal((4, 3))), pg.tensor(rng.standard_normal((4, 2)))


def _compiled_and_eager(rng, optimizer, make, **kwargs):
    """:func:`_linear_twins` with an ``optimizer`` each, and ``make(model, opt)``'s function for each: the first
    model's compiled, the second's eager."""
    models = _linear_twins(rng)
    opts = [optimizer(m.parameters(), **kwargs) for m in models]
    return models, pg.compile(make(models[0], opts[0])), make(models[1], opts[1])


def _assert_same(models):
    for p, q in zip(models[0].parameters(), models[1].parameters(), strict=True):
        np.testing.assert_allclose(p.numpy(), q.numpy(), rtol=1e-12, atol=1e-15)
        assert (p.grad is None) == (q.grad is None)
        if p.grad is not None:
            np.testing.assert_allclose(p.grad.numpy(), q.grad.numpy(), rtol=1e-12, atol=1e-15)


def test_zero_grad_at_the_end_of_a_compiled_step_leaves_no_grad(rng):
    """Gradient accumulation whose update step ends with ``opt.zero_grad()``: the compiled update must leave every
    ``.grad`` None, or the next micro-batches accumulate onto the old gradients."""
    models = _linear_twins(rng)
    opts = [pg.optim.SGD(m.parameters(), lr=0.1) for m in models]

    def make(model, opt):
        def micro(x, y):
            loss = F.mse_loss(model(x), y) / 2
            loss.backward()
            return loss

        def update():
            opt.step()
            opt.zero_grad()

        return micro, update

    (c_micro, c_update), (e_micro, e_update) = make(models[0], opts[0]), make(models[1], opts[1])
    c_micro, c_update = pg.compile(c_micro), pg.compile(c_update)
    for _ in range(3):
        for _ in range(2):
            x, y = _batch(rng)
            np.testing.assert_allclose(c_micro(x, y).item(), e_micro(x, y).item(), rtol=1e-12)
        c_update()
        e_update()
        _assert_same(models)


def test_same_tensor_passed_twice_gets_both_gradients(rng):
    def f(a, b, c):
        loss = (a * b * c).sum()
        loss.backward()
        return loss

    step = pg.compile(f)
    xs = [pg.tensor(rng.standard_normal((3, 4)), requires_grad=True) for _ in range(2)]
    ys = [pg.tensor(x.numpy(), requires_grad=True) for x in xs]
    for i, j, k in [(0, 1, 0), (0, 0, 0), (1, 0, 1), (0, 1, 0)]:
        np.testing.assert_allclose(step(xs[i], xs[j], xs[k]).item(), f(ys[i], ys[j], ys[k]).item(), rtol=1e-12)
        for x, y in zip(xs, ys, strict=True):
            np.testing.assert_allclose(x.grad.numpy(), y.grad.numpy(), rtol=1e-12)


def test_argument_that_the_step_also_reads_as_a_parameter_raises(rng):
    model = pg.nn.Linear(3, 2).double()
    opt = pg.optim.SGD(model.parameters(), lr=0.1)

    @pg.compile
    def step(x, w):
        loss = (model(x) ** 2).mean() + (w * w).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss

    x = pg.tensor(rng.standard_normal((4, 3)))
    step(x, pg.tensor(rng.standard_normal((2, 3))))  # a tensor of its own: fine
    with pytest.raises(pg.CompileError, match=r"argument 1 \(w\) is a tensor that the function also reads"):
        step(x, model.weight)


def test_non_leaf_argument_of_a_step_that_runs_backward_raises(rng):
    model = pg.nn.Linear(3, 2).double()
    w0 = model.weight.numpy().copy()

    @pg.compile
    def step(x, extra):
        loss = model(x).sum() + extra.sum()
        loss.backward()
        return loss

    x = pg.tensor(rng.standard_normal((4, 3)))
    with pytest.raises(pg.CompileError, match=r"argument 1 \(extra\) requires grad and was computed outside"):
        step(x, model.weight[0] * 2)  # eager backward() would reach model.weight through it
    assert model.weight.grad is None
    np.testing.assert_array_equal(model.weight.numpy(), w0)
    step(x, (model.weight[0] * 2).detach())
    assert model.weight.grad is not None


def test_exception_while_tracing_leaves_no_traced_value_behind(rng):
    model = pg.nn.Linear(3, 2).double()
    opt = pg.optim.SGD(model.parameters(), lr=0.1)
    w0 = model.weight.numpy().copy()
    fail = [True]

    @pg.compile
    def step(x):
        loss = model(x).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if fail[0]:
            raise ValueError("boom")
        return loss

    x = pg.tensor(rng.standard_normal((4, 3)))
    with pytest.raises(ValueError, match="boom"):
        step(x)
    assert model.weight.grad is None  # not the gradient of the placeholders' zeros
    np.testing.assert_array_equal(model.weight.numpy(), w0)
    fail[0] = False
    step(x)
    want = w0 - 0.1 * np.ones((2, 1)) * x.numpy().sum(0)
    np.testing.assert_allclose(model.weight.numpy(), want, rtol=1e-12)


def test_scheduler_step_inside_a_compiled_step_raises(rng):
    model = pg.nn.Linear(3, 2).double()
    opt = pg.optim.SGD(model.parameters(), lr=0.1)
    sched = pg.optim.lr_scheduler.LambdaLR(opt, lambda e: 0.5**e)

    @pg.compile
    def step(x):
        loss = model(x).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()  # would run once, when traced
        return loss

    with pytest.raises(pg.CompileError, match=r"LambdaLR.step\(\) inside a @pg.compile function"):
        step(pg.tensor(rng.standard_normal((4, 3))))
    assert opt.param_groups[0]["lr"] == 0.1 and model.weight.grad is None


def test_manual_seed_inside_a_compiled_step_reseeds_every_call(rng):
    def f(x):
        pg.manual_seed(3)
        return x + pg.randn(*x.shape)

    step = pg.compile(f)
    x = pg.tensor(rng.standard_normal((2, 3)).astype(np.float32))
    want = f(x).numpy()
    after = pg.rand(4).numpy()
    for _ in range(3):
        np.testing.assert_array_equal(step(x).numpy(), want)
    np.testing.assert_array_equal(pg.rand(4).numpy(), after)  # the stream goes on from the step's draws


def test_lazy_parameter_value_before_the_first_call_is_read_afresh(rng):
    """``p.data = p * 0.5`` (a scaled init) leaves a lazy value; the compiled step must read the parameter as the
    optimizer updates it, not that value's sources as a snapshot on every call."""

    def make(model, opt):
        def step(x, y):
            loss = F.mse_loss(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            return loss

        return step

    models, compiled, eager = _compiled_and_eager(rng, pg.optim.SGD, make, lr=0.1)
    for m in models:
        m.weight.data = m.weight * 0.5
    for _ in range(3):
        x, y = _batch(rng)
        np.testing.assert_allclose(compiled(x, y).item(), eager(x, y).item(), rtol=1e-12)
        _assert_same(models)


def test_gradients_of_an_eager_backward_are_read_afresh_by_a_compiled_update(rng):
    """``loss.backward()`` eagerly leaves lazy gradients; a compiled ``opt.step()`` (or a gradient norm) must read
    each call's gradients, not the first call's as a snapshot."""

    def make(model, opt):
        def update():
            norm = sum((p.grad**2).sum() for p in model.parameters())
            opt.step()
            return norm

        return update

    models, compiled, eager = _compiled_and_eager(rng, pg.optim.Adam, make, lr=0.1)
    for _ in range(3):
        x, y = _batch(rng)
        for m in models:
            m.zero_grad()
            F.mse_loss(m(x), y).backward()
        np.testing.assert_allclose(compiled().item(), eager().item(), rtol=1e-12)
        _assert_same(models)


_LAZY = None


def test_lazy_tensor_read_by_a_compiled_function_follows_its_data(rng):
    """A global and a parameter holding lazy values when traced (``base * 2``, ``p.data = p * 0.5``) are read as the
    tensors they are: a later ``.data =`` is seen, as eager code sees it."""
    global _LAZY
    base = pg.tensor(rng.standard_normal(3))
    _LAZY = base * 2
    model = pg.nn.Linear(3, 2).double()
    model.weight.data = model.weight * 0.5

    def f(x):
        return model(x * _LAZY)

    step = pg.compile(f)
    x = pg.tensor(rng.standard_normal((4, 3)))
    np.testing.assert_allclose(step(x).numpy(), f(x).numpy(), rtol=1e-12)
    _LAZY.data = base * 3
    model.weight.data = pg.tensor(rng.standard_normal((2, 3)))
    np.testing.assert_allclose(step(x).numpy(), f(x).numpy(), rtol=1e-12)


@pytest.mark.parametrize("zero_grad", [True, False])
def test_a_kept_grad_and_a_returned_parameter_behave_as_eager(rng, zero_grad):
    """Eager ``backward()`` gives each ``.grad`` a new tensor (a kept one holds its value) and a step that returns
    ``model.weight`` returns that parameter (which later steps update); a compiled step must do the same."""
    models = _linear_twins(rng)
    opts = [pg.optim.SGD(m.parameters(), lr=0.1) for m in models]

    def make(model, opt):
        def step(x, y):
            loss = F.mse_loss(model(x), y)
            if zero_grad:
                opt.zero_grad()
            loss.backward()
            opt.step()
            return loss, model.weight, x

        return step

    steps = [pg.compile(make(models[0], opts[0])), make(models[1], opts[1])]
    kept: list[list] = [[], []]
    for _ in range(3):
        x, y = _batch(rng)
        for step, m, k in zip(steps, models, kept, strict=True):
            _, w, xr = step(x, y)
            assert w is m.weight and xr is x
            k.append((m.weight.grad, m.weight.grad.numpy().copy()))
    for (g, value), (_, want) in zip(*kept, strict=True):
        np.testing.assert_allclose(g.numpy(), value, rtol=1e-12)  # not overwritten by later steps
        np.testing.assert_allclose(value, want, rtol=1e-12)
    _assert_same(models)


class _Deletable(pg.nn.Module):
    scale = 1.0  # what the instance's attribute falls back to once deleted

    def __init__(self) -> None:
        super().__init__()
        self.fc = pg.nn.Linear(3, 2).double()
        self.gain = pg.nn.Linear(3, 2).double()
        self.scale = 2.0

    def forward(self, x):
        out = self.fc(x) * self.scale
        return out + self.gain(x) if "gain" in self._modules else out


def test_deleting_a_module_attribute_retraces(rng):
    net = _Deletable()
    step = pg.compile(net)
    x = pg.tensor(rng.standard_normal((4, 3)))
    _compare(step, x)
    del net.scale
    _compare(step, x)
    del net.gain  # no longer a submodule
    assert [name for name, _ in net.named_parameters()] == ["fc.weight", "fc.bias"]
    _compare(step, x)


def test_data_assigned_to_an_argument_inside_the_step_reaches_the_argument(rng):
    def f(x):
        x.data = x * 2 + 1
        return x.sum()

    step = pg.compile(f)
    a = pg.tensor(rng.standard_normal(3))
    b = pg.tensor(a.numpy().copy())
    for _ in range(3):
        np.testing.assert_allclose(step(a).item(), f(b).item(), rtol=1e-12)
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-12)


def test_picograd_imported_through_a_dotted_path_or_symlink_is_still_library_code(tmp_path: Path) -> None:
    """A script that puts ``<dir>/..`` on ``sys.path`` (the examples and bench scripts do) imports picograd with
    ``co_filename``s like ``bench/../picograd/...``; a symlink does the same. Its frames are still the library's:
    a compiled step guards none of picograd's own objects (before: an autocast and its token list, which made a
    sweep of compiled steps trace again and again), and an error names the script's line, not picograd's."""
    import os
    import subprocess
    import sys

    repo = os.path.dirname(os.path.dirname(os.path.abspath(pg.__file__)))
    (tmp_path / "link").symlink_to(repo)
    script = tmp_path / "user.py"
    for root in (os.path.join(repo, "tests", ".."), str(tmp_path / "link")):
        script.write_text(
            f"import sys; sys.path.insert(0, {root!r})\n"
            "import picograd as pg\n"
            "print(pg.__file__)\n"
            "lin = pg.nn.Linear(3, 2)\n"
            "@pg.compile\n"
            "def f(x):\n"
            "    with pg.autocast('cpu', dtype=pg.bfloat16):\n"
            "        return lin(x).float().sum()\n"
            "f(pg.randn(4, 3))\n"
            "trace = next(iter(f._cache.values()))[0].trace\n"
            "print(sorted({type(r).__name__ for r, *_ in trace.reads.paths.values()}))\n"
            "try:\n"
            "    pg.ones(2, 3) @ pg.ones(2, 3)\n"
            "except ValueError as e:\n"
            "    print(e)\n"
        )
        run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stderr
        imported, roots, error = run.stdout.splitlines()
        assert imported.startswith(root), imported  # the path as spelt, not the installed package
        assert roots == "[]"
        assert error.endswith(f"(at {script}:13)"), error
