import numpy as np
import pytest

from tests.helpers import needs_torch, torch
from tinygrad_nlp.nn import Parameter
from tinygrad_nlp.optim import SGD, Adam, AdamW, LRScheduler, clip_grad_norm, cosine_schedule, linear_schedule

CONFIGS = [
    ("SGD", dict(lr=0.1)),
    ("SGD", dict(lr=0.1, momentum=0.9, weight_decay=0.01)),
    ("Adam", dict(lr=0.01)),
    ("Adam", dict(lr=0.01, betas=(0.8, 0.99), weight_decay=0.1)),
    ("AdamW", dict(lr=0.01, weight_decay=0.1)),
]


def quadratic_grads(rng, n_steps, shapes):
    return [[rng.standard_normal(s) for s in shapes] for _ in range(n_steps)]


@needs_torch
@pytest.mark.parametrize("name,kwargs", CONFIGS)
def test_matches_torch_for_five_steps(name, kwargs, rng):
    shapes = [(3, 4), (4,), (300, 250)]  # the last is updated in several chunks
    init = [rng.standard_normal(s) for s in shapes]
    ours = [Parameter(a.copy()) for a in init]
    theirs = [torch.tensor(a.copy(), requires_grad=True) for a in init]
    opt = {"SGD": SGD, "Adam": Adam, "AdamW": AdamW}[name](ours, **kwargs)
    topt = getattr(torch.optim, name)(theirs, **kwargs)
    for _ in range(5):
        for p, t in zip(ours, theirs):  # gradient of sum(p^3): depends on the trajectory
            p.grad = 3 * p.data ** 2
            t.grad = 3 * t.detach() ** 2
        opt.step()
        topt.step()
        for p, t in zip(ours, theirs):
            np.testing.assert_allclose(p.data, t.detach().numpy(), rtol=1e-6, atol=1e-12)


def test_updates_in_place_without_new_arrays(rng):
    p = Parameter(rng.standard_normal(5).astype(np.float32))
    opt = Adam([p], lr=0.1, weight_decay=0.1)
    data = p.data  # a view of the optimizer's flat buffer from here on
    for _ in range(3):
        p.grad = np.ones(5, dtype=np.float32)
        opt.step()
    assert p.data is data and p.data.dtype == np.float32
    buffers = {k: id(v) for k, v in opt.state[0].items()}
    opt.step()
    assert buffers == {k: id(v) for k, v in opt.state[0].items()}


def test_state_dict_roundtrip(rng):
    p = Parameter(rng.standard_normal(4))
    opt = Adam([p], lr=0.1)
    p.grad = np.ones(4)
    opt.step()
    q = Parameter(p.data.copy())
    opt2 = Adam([q], lr=0.5)
    opt2.load_state_dict(opt.state_dict())
    p.grad = q.grad = np.full(4, 0.5)
    opt.step()
    opt2.step()
    np.testing.assert_array_equal(p.data, q.data)


def test_clip_grad_norm():
    a, b = Parameter(np.zeros(2)), Parameter(np.zeros(1))
    a.grad, b.grad = np.array([3.0, 0.0]), np.array([4.0])
    assert clip_grad_norm([a, b], 1.0) == pytest.approx(5.0)
    np.testing.assert_allclose(np.sqrt((a.grad ** 2).sum() + (b.grad ** 2).sum()), 1.0, rtol=1e-5)


def test_schedules():
    p = Parameter(np.zeros(1))
    opt = SGD([p], lr=1.0)
    sched = LRScheduler(opt, linear_schedule(warmup=2, total=6))
    lrs = [opt.lr]
    for _ in range(6):
        sched.step()
        lrs.append(opt.lr)
    assert lrs == pytest.approx([0.5, 1.0, 1.0, 0.75, 0.5, 0.25, 0.0])
    cos = cosine_schedule(0, 10)
    assert cos(0) == 1.0 and cos(5) == pytest.approx(0.5) and cos(10) == pytest.approx(0.0)


def test_no_parameters_is_an_error():
    with pytest.raises(ValueError, match="no parameters"):
        Adam([])


def test_chunked_update_equals_whole_array_update(rng, monkeypatch):
    """Adam's cache-sized chunks (contiguous arrays), the whole-array path (a transposed
    gradient) and float32 parameters all give the same step."""
    from tinygrad_nlp import backend
    data = rng.standard_normal((50, 40)).astype(np.float32)
    grads = [rng.standard_normal((40, 50)).astype(np.float32).T for _ in range(3)]  # not contiguous
    results = []
    for block_bytes in (512, 1 << 20):  # chunks of 64 elements, and the whole array
        monkeypatch.setattr(backend.arrays, "CACHE_BLOCK_BYTES", block_bytes)
        for contiguous in (True, False):
            p = Parameter(data.copy())
            opt = Adam([p], lr=0.01, weight_decay=0.1)
            for g in grads:
                p.grad = np.ascontiguousarray(g) if contiguous else g
                opt.step()
            results.append(p.data)
    for r in results[1:]:
        np.testing.assert_allclose(r, results[0], rtol=1e-6, atol=1e-7)
    assert results[0].dtype == np.float32 and not np.allclose(results[0], data)


@pytest.mark.parametrize("cls", [SGD, Adam, AdamW])
def test_the_update_split_across_cores_equals_the_update_on_one_bit_for_bit(cls, monkeypatch):
    """Parameters long enough for several parts: each part runs on its own thread, with
    pieces of its own length, and every element gets the same arithmetic."""
    from tinygrad_nlp.backend import threads
    rng = np.random.default_rng(0)
    init = rng.standard_normal(3 * (1 << 17) + 5).astype(np.float32)
    grads = [rng.standard_normal(init.shape).astype(np.float32) for _ in range(3)]
    results = []
    for cores in (1, 3):
        monkeypatch.setattr(threads, "_cores", lambda cores=cores: cores)
        p = Parameter(init.copy())
        opt = cls([p], lr=0.01, **({"momentum": 0.9} if cls is SGD else {}))
        for g in grads:
            p.grad = g.copy()
            opt.step()
        results.append(p.data.copy())
    assert np.array_equal(results[0], results[1])
