"""``pg.optim``: SGD, Adam and AdamW with PyTorch's arguments and semantics.

``step()`` records one optimizer op per parameter group (``pg.sgd`` / ``pg.adam`` / ``pg.adamw``), which the
optimizer passes rewrite into elementwise ops. Hyperparameters are 0-d float64 tensors refreshed from
``param_groups`` before every step (and before every replay of a compiled step), so a learning-rate schedule
needs no retracing. State (momentum buffers, moments, one step count per group) is tensors that the op reads and
replaces. PyTorch counts each parameter's updates: parameters first updated after their group's count started (a
layer thawed later) get a count of their own, and so do counted parameters without a gradient in a step that
advances their count for others (a copy of its value before the step); each count has an op of its own. Eagerly,
``step()`` realizes the new parameters, state and gradients at once, so graphs do not grow across steps.

Devices: state buffers are created on their parameter's device (as zeros there). The step count starts as a 0-d
host tensor and moves to the parameters' device with the first update (the update op writes it). The
hyperparameters stay 0-d host tensors, replaced only when their value changes: a graph on the GPU copies a 0-d host
value when it runs (``device.bind`` caches the copy), and a compiled step keeps one device buffer per host scalar
that it refreshes with an 8-byte copy only when the value changed (``compile._CudaBinding``) -- no copy per step at
a constant learning rate, one per change under a schedule, and no re-capture of the CUDA graph either way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, ClassVar

import numpy as np

from picograd.errors import CompileError, DTypeError, ShapeError
from picograd.frontend import device as devices
from picograd.frontend.graph import STATE, Node, at, user_location
from picograd.frontend.tensor import Tensor, realize, result_device


class Optimizer:
    """Base of the optimizers: ``param_groups`` (dicts with ``params`` and hyperparameters) and ``state``."""

    KIND: ClassVar[str] = ""
    HYPER: ClassVar[tuple[str, ...]] = ()
    STATE_NAMES: ClassVar[tuple[str, ...]] = ()

    def __init__(self, params: Iterable[Any], defaults: dict[str, Any]):
        name, where = type(self).__name__, at(user_location())
        if isinstance(params, Tensor):  # torch.optim refuses it too: iterating would give its rows, not leaves
            raise TypeError(
                f"{name}: params must be an iterable of tensors or of dicts (param groups), got one Tensor: "
                f"pass [tensor]{where}"
            )
        groups = list(params)
        if not groups:
            raise ValueError(f"{name}: got an empty parameter list{where}")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        self.defaults = defaults
        self.param_groups: list[dict[str, Any]] = []
        self.state: dict[int, dict[str, Tensor]] = {}  # id(param) -> state tensors
        self._group_state: list[dict[str, Tensor]] = []  # per group: its step count and hyperparameter tensors
        self._hyper_values: list[dict[str, float]] = []  # per group: the values its hyperparameter tensors hold
        # per group: whether its count has started (a step updated some of its parameters, or a state dict's count
        # was above 0): SGD's momentum turned on later has no buffers yet, but a count past 0
        self._started: list[bool] = []
        for g in groups:
            self._add_group(g, where)
        self._loads = 0  # load_state_dict calls: each makes new state tensors
        # id(param) -> its own step count, for parameters first updated after their group's count started (a frozen
        # layer thawed, a branch first used): PyTorch counts each parameter's updates, and Adam's bias correction
        # (SGD's first momentum buffer) must see this parameter's count, not the group's
        self._steps: dict[int, Tensor] = {}

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group of parameters (``{"params": [...], hyperparameters...}``; the optimizer's defaults fill the
        rest), as ``torch.optim.Optimizer.add_param_group``: to train a thawed layer with its own learning rate. A
        compiled step that calls ``step()`` traces again."""
        self._add_group(param_group, at(user_location()))

    def _add_group(self, g: Any, where: str) -> None:
        name = type(self).__name__
        if not isinstance(g, dict) or "params" not in g:
            raise ValueError(f"{name}: a parameter group must be a dict with a 'params' entry, got {g!r:.80}{where}")
        ps = [g["params"]] if isinstance(g["params"], Tensor) else list(g["params"])
        seen = {id(p) for group in self.param_groups for p in group["params"]}
        for p in ps:
            _check_param(name, p, where)
            if id(p) in seen:  # torch.optim raises for it too (a second update of one tensor in one step)
                raise ValueError(f"{name}: a parameter (shape {p.shape}) appears twice among its parameters{where}")
            seen.add(id(p))
        self.param_groups.append({**self.defaults, **g, "params": ps})
        self._group_state.append(
            {"step": Tensor(np.array(0, dtype=np.int64))} | {h: Tensor(np.array(0.0)) for h in self.HYPER}
        )
        self._hyper_values.append({})
        self._started.append(False)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Drop every parameter's gradient (``set_to_none=False`` keeps zero tensors instead)."""
        for group in self.param_groups:
            for p in group["params"]:
                if set_to_none or p.grad is None:
                    p.grad = None
                else:  # zeros, not grad * 0 (which keeps NaN and turns inf into NaN), as torch's zero_()
                    p.grad = Tensor._of_buffer(devices.zeros(p.grad.shape, p.grad.dtype.np, p.grad.device))

    def flags(self, group: dict[str, Any]) -> tuple[str, ...]:
        """Unit-attribute flags of the op for ``group`` (structure, not runtime values)."""
        return ()

    def _refresh(self) -> None:
        """Make the hyperparameter tensors hold ``param_groups``' values (a new buffer only for a changed value)."""
        for group, gs, held in zip(self.param_groups, self._group_state, self._hyper_values, strict=True):
            for h in self.HYPER:
                value = float(group[h])
                if held.get(h) != value:
                    gs[h]._set_buffer(np.array(value, dtype=np.float64))
                    held[h] = value

    def _structure(self) -> tuple:
        """What a traced ``step()`` bakes in besides the runtime hyperparameters: per group, its parameters and the
        op's flags, the state tensors it reads (new ones after each ``load_state_dict``, or after the user cleared or
        replaced ``state`` or its entries) and the parameters' own step counts. A compiled step traces again when it
        changes."""
        groups = tuple((tuple(map(id, g["params"])), self.flags(g), bool(g.get("maximize"))) for g in self.param_groups)
        states = tuple((pid, *map(id, st.values())) for pid, st in self.state.items())  # (a hot path: each call)
        return self._loads, groups, states, tuple((pid, id(t)) for pid, t in self._steps.items())

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One update of every parameter that has a gradient. ``closure`` (as ``torch.optim``'s): a function that
        computes the loss and its gradients, called first with gradients enabled; its loss is returned."""
        loss = None
        if closure is not None:
            from picograd.frontend.ops_more import enable_grad

            with enable_grad():
                loss = closure()
        loc = user_location()
        self._refresh()
        if STATE.trace is not None:
            STATE.trace.refreshers.append(self._refresh)
        touched: list[Tensor] = []
        before = self._structure() if STATE.trace is not None else None  # what a split count makes a trace keep
        split = False
        for k, (group, gs) in enumerate(zip(self.param_groups, self._group_state, strict=True)):
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            flags = self.flags(group)
            names = self.state_names(group)
            started, self._started[k] = self._started[k], True
            if names and (started or any(id(q) in self.state for q in group["params"])):  # the count has started
                fresh = [p for p in params if id(p) not in self.state and id(p) not in self._steps]
                if fresh:  # first updates of these parameters: their own count, from 0 (structure: .grad was None)
                    count = Tensor(np.array(0, dtype=np.int64))
                    self._steps.update((id(p), count) for p in fresh)
                split |= self._keep_counts_of_skipped(group, gs, params, touched)
            cohorts: dict[int, tuple[Tensor, list[Any]]] = {}  # one op per step count (one in the usual case)
            for p in params:
                count = self._steps.get(id(p), gs["step"])
                cohorts.setdefault(id(count), (count, []))[1].append(p)
            for count, ps in cohorts.values():
                states = [self._state(p, name) for name in names for p in ps]
                grads = [-p.grad if group.get("maximize") else p.grad for p in ps]  # torch: before weight decay
                srcs = [gs[h] for h in self.HYPER] + [count] + ps + grads + states
                node = Node(
                    self.KIND,
                    [t._value for t in srcs],
                    (len(ps), flags),
                    [(count.shape, count.dtype)] + [(t.shape, t.dtype) for t in ps + states],
                    loc,
                    device=result_device(f"{type(self).__name__}.step", srcs, loc),
                )
                outs = [Tensor._wrap(node, i) for i in range(len(node.types))]
                count._assign(outs[0])
                for t, new in zip(ps + states, outs[1:], strict=True):
                    t._assign(new)
                touched += [count, *ps, *states, *(p.grad for p in ps)]
        if STATE.trace is None:
            realize(*touched)
        else:  # once its state exists; a trace that split a count holds that copy: it must not replay
            STATE.trace.checks.append((self._structure, before if split else self._structure()))
        return loss

    def _keep_counts_of_skipped(
        self, group: dict[str, Any], gs: dict[str, Tensor], params: list[Any], touched: list[Tensor]
    ) -> bool:
        """Counted parameters of ``group`` without a gradient whose count other parameters advance now keep its
        present value in a count of their own (PyTorch counts each parameter's updates); whether there were any."""
        stepping = {id(p) for p in params}
        advancing = {id(self._steps.get(id(p), gs["step"])) for p in params}
        skipped: dict[int, tuple[Tensor, list[Any]]] = {}
        for q in group["params"]:
            if id(q) in stepping or (id(q) not in self.state and id(q) not in self._steps):
                continue
            count = self._steps.get(id(q), gs["step"])
            if id(count) in advancing:
                skipped.setdefault(id(count), (count, []))[1].append(q)
        for count, qs in skipped.values():
            kept = Tensor(np.array(0, dtype=np.int64))
            kept._assign(count + 0)  # the value before this step's update
            self._steps.update((id(q), kept) for q in qs)
            touched.append(kept)
        return bool(skipped)

    def state_names(self, group: dict[str, Any]) -> tuple[str, ...]:
        return self.STATE_NAMES

    def _state(self, p: Tensor, name: str) -> Tensor:
        st = self.state.setdefault(id(p), {})
        if name not in st:
            st[name] = Tensor._of_buffer(devices.zeros(p.shape, p.dtype.np, p.device))
        elif st[name].device != p.device:  # the model moved (Module.to) after the state was made: follow it
            st[name]._move_(p.device)
        if st[name].dtype != p.dtype:  # the model changed dtype (Module.to(dtype), .double()): follow it too
            if STATE.trace is not None:
                raise CompileError(
                    f"{type(self).__name__}.step: a parameter of shape {p.shape} is {p.dtype.name} but its "
                    f"'{name}' state is {st[name].dtype.name} (the model changed dtype after the optimizer's first "
                    "step): call opt.load_state_dict(opt.state_dict()) after converting it, which converts the "
                    f"state{at(user_location())}"
                )
            st[name]._convert_(p.dtype)
        return st[name]

    def state_dict(self) -> dict[str, Any]:
        """``{"state": {index: {name: array}}, "param_groups": [{hyperparameters, "step", "params": [index]}]}``,
        indices numbering the parameters across groups (as PyTorch)."""
        index: dict[int, int] = {}
        groups = []
        for group, gs in zip(self.param_groups, self._group_state, strict=True):
            ids = []
            for p in group["params"]:
                index.setdefault(id(p), len(index))
                ids.append(index[id(p)])
            groups.append(
                {k: v for k, v in group.items() if k != "params"} | {"params": ids, "step": int(gs["step"].item())}
            )
        state = {
            index[pid]: {k: t.numpy().copy() for k, t in st.items()}
            | ({"step": self._steps[pid].numpy().copy()} if pid in self._steps else {})
            for pid, st in self.state.items()
            if pid in index
        }
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore hyperparameters, step counts and state saved by ``state_dict()``, replacing the current state
        (as ``torch.optim``: a parameter without saved state starts afresh). Raises ``ValueError`` (groups or
        parameters that do not match, unknown state) or ``ShapeError`` naming the problem before changing anything."""
        name, where = type(self).__name__, at(user_location())
        saved_groups = state_dict.get("param_groups") if isinstance(state_dict, dict) else None
        if not isinstance(saved_groups, list | tuple) or not isinstance(state_dict.get("state"), dict):
            raise ValueError(f"{name}.load_state_dict: expected a dict with 'state' and 'param_groups'{where}")
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(
                f"{name}.load_state_dict: the state has {len(saved_groups)} parameter groups, the optimizer "
                f"{len(self.param_groups)}{where}"
            )
        by_index: dict[int, tuple[Tensor, dict[str, Any]]] = {}
        for k, (group, saved) in enumerate(zip(self.param_groups, saved_groups, strict=True)):
            if "step" not in saved:
                raise ValueError(
                    f"{name}.load_state_dict: parameter group {k} has no 'step' (picograd keeps one step count per "
                    f"group; a torch.optim state dict keeps them per parameter){where}"
                )
            if len(saved["params"]) != len(group["params"]):
                raise ValueError(
                    f"{name}.load_state_dict: parameter group {k} has {len(group['params'])} parameters, the "
                    f"state's {len(saved['params'])}{where}"
                )
            merged = {**group, **{h: v for h, v in saved.items() if h not in ("params", "step")}}
            for i, p in zip(saved["params"], group["params"], strict=True):
                by_index[int(i)] = (p, merged)
        new_state: dict[int, dict[str, Tensor]] = {}
        new_steps: dict[int, Tensor] = {}
        for i, st in state_dict["state"].items():
            if int(i) not in by_index:
                raise ValueError(f"{name}.load_state_dict: the state names parameter {i}, which no group has{where}")
            p, merged = by_index[int(i)]
            allowed = self.state_names(merged)
            for key, v in st.items():
                if key == "step" and np.shape(v) == ():  # the parameter's own step count (it started later)
                    continue
                if key not in allowed:
                    raise ValueError(
                        f"{name}.load_state_dict: parameter {i} has state '{key}'; {name} keeps "
                        f"{list(allowed) or 'none'} (a state dict of another optimizer?){where}"
                    )
                if np.shape(v) != p.shape:
                    raise ShapeError(
                        f"{name}.load_state_dict: state '{key}' of parameter {i} has shape {tuple(np.shape(v))}, "
                        f"the parameter {p.shape}{where}"
                    )
            new_state[id(p)] = {
                k: Tensor(np.asarray(v, dtype=p.dtype.np), device=p.device) for k, v in st.items() if k != "step"
            }
            if "step" in st:
                new_steps[id(p)] = Tensor(np.array(int(np.asarray(st["step"])), dtype=np.int64))
        self._loads += 1
        for k, (group, gs, saved) in enumerate(zip(self.param_groups, self._group_state, saved_groups, strict=True)):
            group.update({h: v for h, v in saved.items() if h not in ("params", "step")})
            gs["step"]._set_buffer(np.array(int(saved["step"]), dtype=np.int64))
            self._started[k] = int(saved["step"]) > 0
        for g in self.param_groups:
            for p in g["params"]:
                self.state.pop(id(p), None)
                self._steps.pop(id(p), None)
        self.state.update(new_state)
        self._steps.update(new_steps)


def _torch_options(
    optimizer: str, maximize: bool, foreach: bool | None, fused: bool | None, capturable: bool, differentiable: bool
) -> dict[str, Any]:
    """torch.optim's keyword-only options: ``maximize`` (ascend: the gradient negated before weight decay, as torch)
    goes into the groups; ``foreach``, ``fused`` and ``capturable`` choose among torch's kernels (picograd compiles
    one update either way) and are accepted as they are; ``differentiable=True`` is refused (no gradient flows
    through an update)."""
    if differentiable:
        raise NotImplementedError(
            f"{optimizer}: differentiable=True is not supported (picograd does not differentiate through an "
            f"optimizer step){at(user_location())}"
        )
    del foreach, fused, capturable
    return {"maximize": bool(maximize)}


def _check_hyper(optimizer: str, **values: float) -> None:
    """``torch.optim``'s checks of the constructor's hyperparameters: none may be negative."""
    for name, value in values.items():
        if not value >= 0.0:
            raise ValueError(f"{optimizer}: invalid {name.replace('_', ' ')}: {value}{at(user_location())}")


def _check_param(optimizer: str, p: Any, where: str) -> None:
    """Refuse what ``torch.optim`` refuses: non-tensors, non-float tensors and non-leaf tensors (results of ops,
    which get no ``.grad``, so the optimizer would silently never update them)."""
    if not isinstance(p, Tensor):
        raise TypeError(f"{optimizer}: parameters must be picograd tensors, got {type(p).__name__}{where}")
    if not p.dtype.is_floating_point:
        raise DTypeError(f"optimizer parameters must be float tensors, got {p.dtype.name}{where}")
    if not p.is_leaf:
        raise ValueError(
            f"{optimizer}: cannot optimize a non-leaf tensor (the result of an op, shape {p.shape}): pass the "
            f"parameters themselves (a leaf: made with requires_grad=True, or .detach().requires_grad_()){where}"
        )


class SGD(Optimizer):
    """Stochastic gradient descent with momentum, dampening, weight decay and Nesterov momentum
    (``torch.optim.SGD``; Sutskever et al., 2013 for the Nesterov form)."""

    KIND = "sgd"
    HYPER = ("lr", "momentum", "dampening", "weight_decay")

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
        *,
        maximize: bool = False,
        foreach: bool | None = None,
        differentiable: bool = False,
        fused: bool | None = None,
    ):
        options = _torch_options("SGD", maximize, foreach, fused, False, differentiable)
        _check_hyper("SGD", lr=lr, momentum=momentum, weight_decay=weight_decay)
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError(f"Nesterov momentum requires a momentum and zero dampening{at(user_location())}")
        super().__init__(
            params,
            {
                "lr": lr,
                "momentum": momentum,
                "dampening": dampening,
                "weight_decay": weight_decay,
                "nesterov": nesterov,
                **options,
            },
        )

    def flags(self, group: dict[str, Any]) -> tuple[str, ...]:
        return (("momentum",) if group["momentum"] != 0 else ()) + (("nesterov",) if group["nesterov"] else ())

    def state_names(self, group: dict[str, Any]) -> tuple[str, ...]:
        return ("momentum_buffer",) if group["momentum"] != 0 else ()


class Adam(Optimizer):
    """Adam (Kingma and Ba, 2015) with bias correction and L2 weight decay added to the gradient
    (``torch.optim.Adam``)."""

    KIND = "adam"
    HYPER = ("lr", "beta1", "beta2", "eps", "weight_decay")
    STATE_NAMES = ("exp_avg", "exp_avg_sq")

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        amsgrad: bool = False,
        *,
        foreach: bool | None = None,
        maximize: bool = False,
        capturable: bool = False,
        differentiable: bool = False,
        fused: bool | None = None,
    ):
        name = type(self).__name__
        if amsgrad:
            raise NotImplementedError(f"{name}: amsgrad=True is not supported{at(user_location())}")
        options = _torch_options(name, maximize, foreach, fused, capturable, differentiable)
        _check_hyper(name, lr=lr, eps=eps, weight_decay=weight_decay)
        for i, beta in enumerate(betas):
            if not 0.0 <= beta < 1.0:
                raise ValueError(
                    f"{type(self).__name__}: invalid beta parameter at index {i}: {beta}{at(user_location())}"
                )
        super().__init__(
            params,
            {
                "lr": lr,
                "betas": tuple(betas),
                "beta1": betas[0],
                "beta2": betas[1],
                "eps": eps,
                "weight_decay": weight_decay,
                "amsgrad": False,
                **options,
            },
        )

    def _refresh(self) -> None:
        for group in self.param_groups:
            group["beta1"], group["beta2"] = group["betas"]
        super()._refresh()


class AdamW(Adam):
    """AdamW: Adam with decoupled weight decay (Loshchilov and Hutter, 2019; ``torch.optim.AdamW``)."""

    KIND = "adamw"

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
        foreach: bool | None = None,
        capturable: bool = False,
        differentiable: bool = False,
        fused: bool | None = None,
    ):
        super().__init__(
            params, lr, betas, eps, weight_decay, amsgrad, foreach=foreach, maximize=maximize, capturable=capturable,
            differentiable=differentiable, fused=fused,
        )  # fmt: skip


from picograd.frontend import lr_scheduler  # noqa: E402 - pg.optim.lr_scheduler (it needs nothing from here)

__all__ = ["SGD", "Adam", "AdamW", "Optimizer", "lr_scheduler"]
