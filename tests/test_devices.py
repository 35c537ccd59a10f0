"""Devices as objects (``pg.device``, as ``torch.device``) and the registry of runtimes behind them.

The routing tests stand a fake "cuda" runtime with two GPUs in for the real one (host arrays tagged with their
device index), so that ``cuda:1`` can be checked on a machine without a GPU.
"""

from __future__ import annotations

import pickle
import re
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

import picograd as pg
from picograd.runtime import cuda
from picograd.runtime import device as registry

# ---------------------------------------------------------------------------------------------------------------
# pg.device


def test_device_names_type_and_index_as_torch() -> None:
    d = pg.device("cuda:1")
    assert (d.type, d.index, str(d), repr(d)) == ("cuda", 1, "cuda:1", "device(type='cuda', index=1)")
    assert pg.device("cuda", 1) == d and pg.device(type="cuda", index=1) == d and pg.device(d) == d
    c = pg.device("cpu")
    assert (c.type, c.index, str(c), repr(c)) == ("cpu", None, "cpu", "device(type='cpu')")
    assert (pg.device("cuda").type, pg.device("cuda").index, str(pg.device("cuda"))) == ("cuda", None, "cuda")
    assert pickle.loads(pickle.dumps(d)) == d
    with pytest.raises(AttributeError):
        d.index = 2  # type: ignore[misc]


def test_device_equality_with_devices_and_strings() -> None:
    assert pg.device("cuda") == pg.device("cuda:0") and pg.device("cuda:0") != pg.device("cuda:1")
    assert pg.device("cuda:0") == "cuda" and "cuda:0" == pg.device("cuda") and pg.device("cuda:1") == "cuda:1"
    assert pg.device("cuda:1") != "cuda" and pg.device("cpu") != "cuda" and pg.device("cpu") == "cpu"
    assert pg.device("cpu") != "not a device" and pg.device("cpu") != 0
    assert len({pg.device("cuda"), pg.device("cuda:0"), pg.device("cuda", 0)}) == 1
    assert {pg.device("cpu"): 1}[pg.device("cpu")] == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("cuda:x",), "invalid device string 'cuda:x'"),
        (("tpu",), "unknown device type 'tpu'"),
        (("cuda:0", 1), "not both"),
        (("cuda", -1), "non-negative int"),
        (("cuda", True), "non-negative int"),
        (("cpu:1",), "the CPU has one device"),
        ((3,), "not the int 3"),
    ],
)
def test_bad_devices_raise_naming_the_problem(args: tuple[Any, ...], message: str) -> None:
    with pytest.raises(pg.DeviceError, match=re.escape(message)):
        pg.device(*args)


def test_tensors_report_device_objects_and_take_strings_or_objects() -> None:
    x = pg.tensor(np.random.default_rng().standard_normal(3))
    assert isinstance(x.device, pg.device) and x.device.type == "cpu" and x.device.index is None
    assert x.device == "cpu" and x.device == pg.device("cpu")
    for dev in ("cpu", pg.device("cpu"), None):
        y = pg.zeros(2, device=dev)
        assert y.device == "cpu" and y.to(dev) is y if dev is not None else y.device == "cpu"
    assert x.to(pg.device("cpu")) is x and pg.Spec((2,), "float32", pg.device("cpu")).device == "cpu"


def test_cuda_1_is_accepted_by_the_api_and_refused_where_no_such_gpu_exists(monkeypatch) -> None:
    monkeypatch.setattr(cuda, "device_count", lambda: 1)
    d = pg.device("cuda:1")  # the API takes it
    with pytest.raises(pg.DeviceError) as info:
        pg.zeros(2, device=d)
    message = str(info.value)
    assert "cuda:1" in message and "no such GPU: this machine has 1 CUDA GPU" in message, message
    assert re.search(r"test_devices\.py:\d+", message), message
    with pytest.raises(pg.DeviceError, match="no such GPU"):
        pg.ones(2).to("cuda:1")
    monkeypatch.setattr(cuda, "device_count", lambda: 2)
    with pytest.raises(pg.DeviceError, match="GPU 0 only"):  # there, but the runtime does not drive it yet
        pg.ones(2).to("cuda:1")


# ---------------------------------------------------------------------------------------------------------------
# The registry routes by device type and index


class FakeBuffer:
    def __init__(self, array: np.ndarray, index: int) -> None:
        self.array, self.index = array.copy(), index
        self.shape, self.dtype, self.nbytes = array.shape, array.dtype, array.nbytes


class TwoGpus:
    """A "cuda" runtime with GPUs 0 and 1 whose buffers are host arrays tagged with their GPU."""

    type = "cuda"

    def __init__(self) -> None:
        self.uploads: list[int] = []

    def unavailable(self, index: int) -> str | None:
        return None if index < 2 else f"no such GPU: the fake has 2 (asked for {index})"

    def holds(self, buffer: Any) -> bool:
        return isinstance(buffer, FakeBuffer)

    def index_of(self, buffer: Any) -> int:
        return buffer.index

    def upload(self, array: np.ndarray, index: int) -> Any:
        self.uploads.append(index)
        return FakeBuffer(array, index)

    def download(self, buffer: Any) -> np.ndarray:
        return buffer.array.copy()

    def zeros(self, shape: tuple[int, ...], dtype: np.dtype, index: int) -> Any:
        return FakeBuffer(np.zeros(shape, dtype), index)


@pytest.fixture
def two_gpus() -> Iterator[TwoGpus]:
    fake = TwoGpus()
    old = registry.register_runtime(fake)
    try:
        yield fake
    finally:
        assert old is not None
        registry.register_runtime(old)


def test_buffers_go_to_the_runtime_and_gpu_the_device_names(two_gpus: TwoGpus) -> None:
    data = np.random.default_rng().standard_normal((2, 3)).astype(np.float32)
    a = pg.tensor(data, device="cuda:1")
    assert a.device == "cuda:1" and a.device.index == 1 and a._buffer.index == 1
    assert two_gpus.uploads == [1]
    b = pg.zeros(2, device=pg.device("cuda", 0))
    assert b.device == "cuda:0" and b.device == "cuda" and b._buffer.index == 0
    np.testing.assert_array_equal(a.numpy(), data)
    before = list(two_gpus.uploads)
    c = a.to("cuda:0")  # GPU to GPU goes through the host
    assert c.device == "cuda:0" and c._buffer.index == 0 and two_gpus.uploads == [*before, 0]
    np.testing.assert_array_equal(c.to("cpu").numpy(), data)
    assert a.to("cuda:1") is a and a.to(pg.device("cuda:1")) is a
    with pytest.raises(pg.DeviceError, match="cuda:2.*no such GPU: the fake has 2"):
        pg.zeros(2, device="cuda:2")


def test_ops_refuse_tensors_on_different_gpus(two_gpus: TwoGpus) -> None:
    a = pg.ones(3, device="cuda:0")
    b = pg.ones(3, device="cuda:1")
    with pytest.raises(pg.DeviceError, match=r"cuda:0.*cuda:1"):
        a + b


def test_pg_cuda_answers_as_torch_cuda_does(rng: np.random.Generator) -> None:
    """``pg.cuda``: what PyTorch code asks ``torch.cuda`` (False and 0 without a usable GPU, as PyTorch's)."""
    import picograd.cuda

    assert picograd.cuda is pg.cuda
    assert pg.cuda.is_available() == cuda.available() and pg.cuda.device_count() == cuda.device_count()
    pg.cuda.synchronize()  # nothing queued: returns (a no-op without a GPU)
    pg.cuda.empty_cache()
    seed = int(rng.integers(1 << 30))
    pg.cuda.manual_seed(seed)
    a = pg.rand(4).numpy()
    pg.cuda.manual_seed_all(seed)
    np.testing.assert_array_equal(pg.rand(4).numpy(), a)  # one generator for all devices
    pg.manual_seed(seed)
    np.testing.assert_array_equal(pg.rand(4).numpy(), a)
    if not cuda.available():
        assert pg.cuda.device_count() == 0
        with pytest.raises(pg.DeviceError, match=rf"pg.cuda.current_device\(\): CUDA is unavailable.*{__file__}:"):
            pg.cuda.current_device()
    else:
        assert pg.cuda.current_device() == 0 and pg.cuda.device_count() >= 1 and pg.cuda.get_device_name()
