"""``pg.optim.lr_scheduler``: ``LambdaLR`` and ``CosineAnnealingLR`` with PyTorch's names and semantics.

A scheduler writes each group's ``lr`` in ``optimizer.param_groups``; the optimizer turns it into the runtime
scalar its op reads, so a compiled step follows the schedule without retracing."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from picograd.errors import CompileError
from picograd.frontend.graph import STATE, at, user_location


class LRScheduler:
    """Base: ``step()`` advances ``last_epoch`` and sets every group's ``lr`` to ``get_lr()``; the constructor
    records ``initial_lr`` and takes the first step (epoch 0), as PyTorch."""

    def __init__(self, optimizer: Any, last_epoch: int = -1):
        self.optimizer = optimizer
        for group in optimizer.param_groups:
            if last_epoch == -1:
                group.setdefault("initial_lr", group["lr"])
            elif "initial_lr" not in group:
                raise KeyError("param 'initial_lr' is not specified in param_groups when resuming a scheduler")
        self.base_lrs = [float(g["initial_lr"]) for g in optimizer.param_groups]
        self.last_epoch = last_epoch
        self.step()

    def get_lr(self) -> list[float]:
        raise NotImplementedError

    def step(self) -> None:
        if STATE.trace is not None:  # a compiled step would run it once, when traced, and never again
            raise CompileError(
                f"{type(self).__name__}.step() inside a @pg.compile function runs only when it is traced, so the "
                "learning rate would stop following the schedule: call it after the compiled step, outside it"
                f"{at(user_location())}"
            )
        groups = len(self.optimizer.param_groups)
        if groups != len(self.base_lrs):  # a zip error from get_lr before
            raise ValueError(
                f"{type(self).__name__}.step: the optimizer has {groups} parameter groups, the scheduler was made for "
                f"{len(self.base_lrs)} (add_param_group after making it): make the scheduler after adding the group"
                f"{at(user_location())}"
            )
        self.last_epoch += 1
        lrs = self.get_lr()
        for group, lr in zip(self.optimizer.param_groups, lrs, strict=True):
            group["lr"] = lr
        self._last_lr = lrs

    def get_last_lr(self) -> list[float]:
        """The learning rates the last ``step()`` set."""
        return list(self._last_lr)

    def state_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in ("optimizer", "lr_lambdas")}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)


class LambdaLR(LRScheduler):
    """``lr = initial_lr * lr_lambda(epoch)`` (one function, or one per group)."""

    def __init__(
        self,
        optimizer: Any,
        lr_lambda: Callable[[int], float] | Sequence[Callable[[int], float]],
        last_epoch: int = -1,
    ):
        n = len(optimizer.param_groups)
        self.lr_lambdas: list[Callable[[int], float]] = (
            list(lr_lambda) if isinstance(lr_lambda, list | tuple) else [lr_lambda] * n  # type: ignore[list-item]
        )
        if len(self.lr_lambdas) != n:
            raise ValueError(f"LambdaLR: expected {n} lr_lambdas, got {len(self.lr_lambdas)}")
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        return [base * f(self.last_epoch) for base, f in zip(self.base_lrs, self.lr_lambdas, strict=True)]


class CosineAnnealingLR(LRScheduler):
    """``lr = eta_min + (initial_lr - eta_min) (1 + cos(pi t / T_max)) / 2`` (Loshchilov and Hutter, SGDR, 2017,
    without restarts; PyTorch's closed form)."""

    def __init__(self, optimizer: Any, T_max: int, eta_min: float = 0.0, last_epoch: int = -1):
        self.T_max, self.eta_min = T_max, eta_min
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        t = self.last_epoch
        return [
            self.eta_min + (base - self.eta_min) * (1 + math.cos(math.pi * t / self.T_max)) / 2
            for base in self.base_lrs
        ]
