"""``examples/gpt_shakespeare.py --dtype bfloat16`` (issue 18, item 4's bf16 mixed precision): a few compiled train
steps of a tiny GPT under the example's ``amp`` (``pg.autocast("cpu", dtype=pg.bfloat16)`` around forward and loss)
against its PyTorch twin (``bench/gpt_shakespeare_twin.py``) under ``torch.autocast("cpu", dtype=torch.bfloat16)``,
from the same initial state_dict on the same batches."""

from __future__ import annotations

import os
import sys
from dataclasses import replace

import numpy as np
import torch

import picograd as pg

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _modules():
    sys.path[:0] = [os.path.join(ROOT, "examples"), os.path.join(ROOT, "bench")]
    try:
        import gpt_shakespeare as ex
        import gpt_shakespeare_twin as tw
    finally:
        del sys.path[:2]
    return ex, tw


def test_gpt_bf16_autocast_steps_match_torch_autocast(rng: np.random.Generator) -> None:
    steps = 6
    ex, tw = _modules()
    cfg = replace(ex.Config(), n_layer=2, n_head=2, n_embd=32, block_size=16, batch_size=4, warmup_iters=2,
                  lr_decay_iters=steps, max_iters=steps, dtype="bfloat16")  # fmt: skip
    ex.model, ex.opt, ex.sched = ex.make(cfg, 3)
    step = pg.compile(ex.train_step.fn)
    twin = tw.TorchGPT(cfg)
    tw.load_from_picograd(twin, ex.model.state_dict())
    topt, tsched = tw.torch_optimizer(twin, cfg)
    ours, theirs = [], []
    for _ in range(steps):
        x = rng.integers(0, cfg.vocab_size, (cfg.batch_size, cfg.block_size))
        y = (x + 1) % cfg.vocab_size  # learnable: the next id
        ours.append(step(pg.tensor(x), pg.tensor(y)).item())
        ex.sched.step()
        with tw.torch_amp("cpu", "bfloat16"):
            logits = twin(torch.from_numpy(x))
            loss = torch.nn.functional.cross_entropy(
                logits.reshape(-1, cfg.vocab_size), torch.from_numpy(y).reshape(-1)
            )
        topt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(twin.parameters(), cfg.grad_clip)
        topt.step()
        tsched.step()
        theirs.append(loss.item())
    assert len(step.executables()) == 1
    np.testing.assert_allclose(ours, theirs, rtol=1e-2)
    assert ours[-1] < ours[0]
    assert all(p.dtype == pg.float32 for p in ex.model.parameters())  # float32 master weights
    x = pg.tensor(np.zeros((cfg.batch_size, cfg.block_size), np.int64))
    assert "bf16" in str(step.ir("pg", (x, x)))  # the products ran in bf16: autocast was on in the trace
