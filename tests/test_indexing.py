"""``Tensor.__getitem__`` against numpy's result for the same index: basic indexing (ints, negative ints, slices with
steps, None, Ellipsis), and against PyTorch's for integer-array indexing (tensors, lists, tuples, numpy arrays;
several index arrays broadcast together; adjacent and non-adjacent index arrays; ints select first, as PyTorch)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import picograd as pg

S = slice(None)
E = Ellipsis

BASIC = [
    0,
    -1,
    3,
    (1, 2),
    (-1, -2, -3),
    (1, 2, 3),
    slice(1, 3),
    slice(None, None, 2),
    (S, slice(1, None, 3)),
    (slice(-3, None), S, slice(None, -1, 4)),
    (S, slice(4, 1)),  # empty
    (slice(-100, 100),),
    (2, slice(0, 5, 2), -1),
    None,
    (None, 1),
    (S, None, S, None),
    E,
    (E, 0),
    (E, None),
    (1, E, slice(None, None, 2)),
    (None, E, -1),
    (E, 2, S),
    (0, E, 1, 2),
    (),
]

ADVANCED = [
    [0, -1],
    [[0, 1], [3, 2]],
    ([0, 2], [1, 4]),  # two adjacent index arrays: one pair per position
    ([0, 2], S, [1, 5]),  # non-adjacent: the broadcast dims go first
    (S, [0, 4], [5, 1]),  # adjacent, not leading: dims replaced in place
    (S, [[0], [3]], [1, 2, 5]),  # broadcast together to (2, 3)
    ([[0], [1]], [1, 2, 4], S),
    (0, S, [1, 2]),  # an int selects first (PyTorch; numpy counts it as an index array): dims stay in place
    (S, 0, [1, -2]),
    ([0, 1], 2, [1, 3]),  # arrays adjacent once the int is gone
    ([1, 2], S, [0, 1]),
    ([1, 3], 2, [0, 2]),  # adjacent once the int's dim is gone (PyTorch)
    ([1, 3], None, [0, 2]),  # None between arrays: non-adjacent
    (E, [1, -1]),
    ([2, 0], E, [[3], [4]]),  # broadcast to (2, 2), non-adjacent
    (slice(1, 3), [0, 1]),
    (slice(None, None, 2), S, [[5, 0]]),
    (None, [1, 1, 1], slice(2, 5)),
    ([-4, -3], [-5, 0], [-6, 5]),  # all three dims
    ([3],),
    ((0, 2), S),  # a tuple of ints inside an index tuple is an index array
    (S, (1, 4, 1)),
]


def _as_pg_index(index, kind: str):
    """The same index with its arrays as picograd tensors, numpy arrays or lists."""

    def conv(i):
        if isinstance(i, list | tuple):
            return {"tensor": pg.tensor(np.array(i)), "numpy": np.array(i), "list": list(i)}[kind]
        return i

    return tuple(conv(i) for i in index) if isinstance(index, tuple) else conv(index)


def _as_torch_index(index):
    def conv(i):
        return torch.tensor(i) if isinstance(i, list | tuple) else i

    return tuple(conv(i) for i in index) if isinstance(index, tuple) else conv(index)


def _check(got: pg.Tensor, expected: np.ndarray) -> None:
    assert got.shape == expected.shape, (got.shape, expected.shape)
    out = got.numpy()
    assert out.shape == expected.shape and out.dtype == expected.dtype
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("index", BASIC, ids=repr)
def test_basic_indexing(rng, index):
    a = rng.standard_normal((4, 5, 6))
    _check(pg.tensor(a)[index], a[index])


@pytest.mark.parametrize("kind", ["tensor", "numpy", "list"])
@pytest.mark.parametrize("index", ADVANCED, ids=repr)
def test_integer_array_indexing(rng, index, kind):
    a = rng.standard_normal((4, 5, 6))
    _check(pg.tensor(a)[_as_pg_index(index, kind)], torch.from_numpy(a)[_as_torch_index(index)].numpy())


def test_zero_d_index_tensors_select_like_ints(rng):
    """``x[i, :, idx]`` with a 0-d tensor ``i`` has PyTorch's shape (the int's dim removed, idx in place)."""
    import torch

    a = rng.standard_normal((2, 2, 3))
    got = pg.tensor(a)[pg.tensor(1), :, [-3]]
    want = torch.tensor(a)[torch.tensor(1), :, [-3]].numpy()
    assert got.shape == want.shape == (2, 1)
    np.testing.assert_array_equal(got.numpy(), want)


def test_pick_targets_like_cross_entropy(rng):
    """``logits[arange(n), targets]``: two index arrays broadcast together, one value per row."""
    n, c = 7, 5
    logits = rng.standard_normal((n, c))
    targets = rng.integers(0, c, n)
    x = pg.tensor(logits)
    _check(x[pg.arange(n), pg.tensor(targets)], logits[np.arange(n), targets])
    _check(x[list(range(n)), targets.tolist()], logits[np.arange(n), targets])
    _check(x[pg.arange(n)[:, None], pg.tensor(targets)[None, :]], logits[np.arange(n)[:, None], targets[None, :]])


def test_lazy_index_tensors_with_negative_entries(rng):
    a = rng.standard_normal((5, 6))
    rows = rng.integers(-5, 5, (3,))
    _check(pg.tensor(a)[pg.tensor(rows) * 1], a[rows])  # not realized: negatives are wrapped inside the graph
    cols = rng.integers(-6, 6, (2, 2))
    _check(pg.tensor(a)[:, pg.tensor(cols) + 0], a[:, cols])
    _check(pg.tensor(a)[pg.tensor(rows)], a[rows])  # realized with negative entries
    am = pg.tensor(a).argmax(1)  # an index computed by the graph
    _check(pg.tensor(a)[pg.arange(5), am], a.max(1))


def test_index_with_scalars_of_other_types(rng):
    a = rng.standard_normal((4, 5))
    x = pg.tensor(a)
    _check(x[np.int64(2)], a[2])
    _check(x[pg.tensor(3)], a[3])  # a 0-d index tensor drops the dim like an int
    _check(x[1, pg.tensor(-1)], a[1, -1])


def test_indexing_after_permute_and_chained(rng):
    a = rng.standard_normal((4, 5, 6))
    p = a.transpose(2, 0, 1)
    x = pg.tensor(a).permute(2, 0, 1)
    _check(x[1:5:2, [0, 3], -1], p[1:5:2, [0, 3], -1])
    _check(x[..., 2][3], p[..., 2][3])
    _check(pg.tensor(a)[1][::2][:, [5, 0]], a[1][::2][:, [5, 0]])
    _check(pg.tensor(a).T[0, 1:], a.T[0, 1:])


def test_indexing_other_dtypes_and_0d_result(rng):
    i = rng.integers(-100, 100, (3, 4))
    _check(pg.tensor(i)[[2, 0], 1:], i[[2, 0], 1:])
    b = i > 0
    _check(pg.tensor(b)[:, [3, 0]], b[:, [3, 0]])
    f = np.float64(rng.standard_normal())
    a = np.array([f, 2 * f])
    out = pg.tensor(a)[1]
    assert out.shape == () and out.item() == 2 * f


def test_indexed_values_flow_into_ops(rng):
    a = rng.standard_normal((6, 4))
    idx = rng.integers(0, 6, (3,))
    x = pg.tensor(a)
    out = (x[idx] * 2.0 - x[idx[::-1].copy()]).sum(0)
    np.testing.assert_allclose(out.numpy(), (a[idx] * 2.0 - a[idx[::-1]]).sum(0), rtol=1e-12)


@pytest.mark.parametrize(
    "index",
    [
        (S, slice(None, None, -1)),  # negative steps: not supported (as torch)
        pg.tensor([True, False, True, False]),  # bool masks: data-dependent shapes
        [True, False, True, False],
        (0, 0, 0),  # too many indices
        ([0, 1], [0, 1, 2]),  # index arrays that do not broadcast
        pg.tensor([0.5, 1.0]),  # float index tensors
        (E, E),
        "a",
    ],
    ids=repr,
)
def test_bad_indices_raise_shape_error(index):
    x = pg.tensor(np.zeros((4, 5)))
    with pytest.raises(pg.ShapeError):
        x[index]


@pytest.mark.parametrize("index", [9, (0, -6), ([0, 9],), (pg.tensor([0, 9]),), (slice(None), pg.tensor([1, -6]))])
def test_out_of_range_indices_raise_index_error(index):
    x = pg.tensor(np.zeros((4, 5)))
    with pytest.raises(IndexError, match=r"out of range for dim \d of size \d.*test_indexing.py:\d+"):
        x[index]


def _gather_family_calls(x: pg.Tensor, index: pg.Tensor) -> dict:
    ones = pg.ones(*index.shape)
    return {
        "gather": lambda: pg.gather(x, 1, index),
        "take_along_dim": lambda: pg.take_along_dim(x, index, 1),
        "scatter_add": lambda: pg.scatter_add(x, 1, index, ones),
        "scatter": lambda: pg.scatter(x, 1, index, value=9.0),
        "scatter_reduce": lambda: pg.scatter_reduce(x, 1, index, ones, "sum"),
        "index_select": lambda: pg.index_select(x, 1, index.reshape(-1)),
        "index_add": lambda: pg.index_add(x, 1, index[0], pg.ones(x.shape[0], index.shape[1])),
    }


@pytest.mark.parametrize("bad", [3, 5, -1])
@pytest.mark.parametrize(
    "op", ["gather", "take_along_dim", "scatter_add", "scatter", "scatter_reduce", "index_select", "index_add"]
)
def test_dim_wise_gather_and_scatter_raise_for_out_of_range_indices(rng, op, bad):
    # an index past the dim's end used to read or write the next row (gather: [[3], [0]] on a 2x3 tensor gave
    # [[3.0], [3.0]]), and a negative one the previous row or the end; PyTorch raises for both
    x = pg.tensor(rng.normal(size=(2, 3)))
    index = np.stack([rng.integers(0, 3, 2), rng.integers(0, 3, 2)])
    index[0, 0] = bad
    with pytest.raises(IndexError, match=rf"index {bad} is out of range for dim 1 of size 3.*test_indexing.py:\d+"):
        _gather_family_calls(x, pg.tensor(index))[op]().numpy()
    # computed indices (a pg.check_index op) and a compiled step raise the same
    with pytest.raises(IndexError, match=rf"index {bad} is out of range for dim 1 of size 3"):
        _gather_family_calls(x, pg.tensor(index) + 0)[op]().numpy()
    step = pg.compile(lambda x, i: _gather_family_calls(x, i)[op]())
    good = index.copy()
    good[0, 0] = 1
    step(x, pg.tensor(good)).numpy()
    with pytest.raises(IndexError, match=rf"index {bad} is out of range for dim 1 of size 3"):
        step(x, pg.tensor(index)).numpy()


def test_take_counts_negative_indices_from_the_end_and_raises_past_it(rng):
    a = rng.normal(size=(3, 4))
    index = np.array([[-1, 0], [-12, 11]])
    want = torch.take(torch.tensor(a), torch.tensor(index)).numpy()
    np.testing.assert_array_equal(pg.take(pg.tensor(a), pg.tensor(index)).numpy(), want)
    np.testing.assert_array_equal(pg.compile(pg.take)(pg.tensor(a), pg.tensor(index)).numpy(), a.reshape(-1)[index])
    for bad in (12, -13):
        with pytest.raises(IndexError, match=rf"index {bad} is out of range for dim 0 of size 12"):
            pg.take(pg.tensor(a), pg.tensor(np.array([0, bad]))).numpy()
