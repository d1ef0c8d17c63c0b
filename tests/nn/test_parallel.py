"""nn.DataParallel: replicas in threads give the gradient of the whole batch's mean loss,
accumulate into the model's gradients, share the model's weights, draw the masks the
whole batch would get at their examples (dropout on: the whole batch's loss and
gradients), and fail with the error the replica raised; the loss they
return says how many items it is the mean of."""
import os
import time

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinygrad_nlp.functional as F
from tinygrad_nlp import ArgumentError, MissingDependencyError, ShapeError, TokenIdError, backend, manual_seed
from tinygrad_nlp.distributed import Communicator
from tinygrad_nlp.models import MaskedLanguageModel, TextClassifier
from tinygrad_nlp.nn import DataParallel, Loss, share
from tinygrad_nlp.nn.flat import flatten
from tinygrad_nlp.nn.parallel import Loss as ParallelLoss
from tinygrad_nlp.optim import Adam

pytest.importorskip("threadpoolctl")

VOCAB, T = 30, 6


def mlm(dropout=0.0, dtype=np.float64, seed=0):
    manual_seed(seed)
    return MaskedLanguageModel(vocab_size=VOCAB, d_model=8, n_heads=2, d_ff=16, n_layers=2, max_len=T,
                               dropout=dropout, tie_weights=True).to(dtype=dtype)


def mlm_batch(rows, seed=1, scored=0.4):
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, VOCAB, (rows, T))
    return ids, np.where(rng.random((rows, T)) < scored, ids, -100)


def mlm_loss(model, ids, targets):
    return model.loss(ids, targets)


def scored(ids, targets):
    return (targets != F.IGNORE_INDEX).sum()


def step(parallel, *batch) -> float:
    """The wrapped model's loss of one batch and its backward, as a training loop runs them."""
    loss = parallel.loss(*batch)
    assert isinstance(loss, Loss)
    loss.backward()
    return loss.item()


def whole_batch_gradients(model, loss_of, *batch):
    loss = loss_of(model, *batch)
    loss.backward()
    grads = {name: p.grad.copy() for name, p in model.named_parameters()}
    model.zero_grad()
    return loss.item(), grads


def assert_gradients(model, expected, rtol=1e-10, atol=1e-13):
    for name, p in model.named_parameters():
        np.testing.assert_allclose(p.grad, expected[name], rtol=rtol, atol=atol, err_msg=name)


@pytest.mark.parametrize("threads, rows", [(2, 8), (3, 7), (4, 5)])
def test_replicas_give_the_gradient_of_the_whole_batch_mean(threads, rows):
    """Uneven shares and uneven scored counts: the count-weighted sum is the whole batch's gradient."""
    model = mlm()
    ids, targets = mlm_batch(rows)
    loss, expected = whole_batch_gradients(model, mlm_loss, ids, targets)
    parallel = DataParallel(model, threads)
    assert len(parallel.replicas) == threads
    assert step(parallel, ids, targets) == pytest.approx(loss, rel=1e-12)
    assert_gradients(model, expected)


def test_the_loss_is_a_mean_with_its_count_and_outputs_summed_over_the_replicas():
    manual_seed(0)
    model = TextClassifier(VOCAB, 2, d_model=8, n_heads=2, d_ff=16, n_layers=1, max_len=T, dropout=0.0)
    rng = np.random.default_rng(3)
    ids, labels, mask = rng.integers(0, VOCAB, (7, T)), rng.integers(0, 2, 7), np.ones((7, T), bool)
    alone = model.loss(ids, mask, labels)
    together = DataParallel(model, 3).loss(ids, mask, labels)
    assert together.count == alone.count == 7 and together.outputs == alone.outputs
    assert together.item() == pytest.approx(alone.item(), rel=1e-6)
    assert [share(7, 3, k) for k in range(3)] == [slice(0, 3), slice(3, 5), slice(5, 7)]


def test_a_model_whose_loss_is_not_a_loss_is_told_what_to_return(monkeypatch):
    model = mlm()
    monkeypatch.setattr(MaskedLanguageModel, "loss", lambda self, ids, targets: F.mean(self(ids)))
    with pytest.raises(ArgumentError, match="MaskedLanguageModel.loss returned Tensor, not a Loss"):
        DataParallel(model, 2).loss(*mlm_batch(4))


def test_rows_counted_by_default_for_a_classifier_with_a_padding_mask():
    manual_seed(0)
    model = TextClassifier(VOCAB, 2, d_model=8, n_heads=2, d_ff=16, n_layers=2, max_len=T, dropout=0.0).to(dtype=np.float64)
    rng = np.random.default_rng(3)
    ids, labels = rng.integers(0, VOCAB, (5, T)), rng.integers(0, 2, 5)
    mask = np.arange(T)[None] < rng.integers(2, T + 1, (5, 1))
    loss_of = lambda m, ids, mask, labels: m.loss(ids, mask, labels)  # noqa: E731
    loss, expected = whole_batch_gradients(model, loss_of, ids, mask, labels)
    assert step(DataParallel(model, 2), ids, mask, labels) == pytest.approx(loss, rel=1e-12)
    assert_gradients(model, expected)


@given(rows=st.integers(1, 9), threads=st.integers(1, 4), scored_share=st.sampled_from([0.0, 0.2, 0.6, 1.0]),
       seed=st.integers(0, 2 ** 16))
def test_any_split_gives_the_whole_batch_gradient(rows, threads, scored_share, seed):
    """Shares with nothing scored (weight 0), fewer rows than threads, a batch with nothing scored."""
    model = mlm()
    ids, targets = mlm_batch(rows, seed, scored_share)
    loss, expected = whole_batch_gradients(model, mlm_loss, ids, targets)
    got = step(DataParallel(model, threads), ids, targets)
    if np.isnan(loss):
        assert np.isnan(got)
    else:
        assert got == pytest.approx(loss, rel=1e-12)
    for name, p in model.named_parameters():
        if expected[name] is None or np.isnan(expected[name]).any():
            continue
        np.testing.assert_allclose(p.grad, expected[name], rtol=1e-10, atol=1e-13, err_msg=name)


def test_gradients_accumulate_into_what_the_model_has():
    model = mlm()
    ids, targets = mlm_batch(6)
    _, expected = whole_batch_gradients(model, mlm_loss, ids, targets)
    parallel = DataParallel(model, 2)
    step(parallel, ids, targets)
    step(parallel, ids, targets)
    assert_gradients(model, {name: 2 * g for name, g in expected.items()})


def test_replicas_share_the_weights_the_optimizer_updates():
    model = mlm(dropout=0.1)
    parallel = DataParallel(model, 2)
    opt = Adam(model.parameters(), lr=1e-2)
    ids, targets = mlm_batch(6)
    opt.zero_grad()
    step(parallel, ids, targets)
    opt.step()
    replica = parallel.replicas[1]
    assert replica.head.weight is replica.embedding.weight  # tied stays tied
    for (name, p), (_, q) in zip(model.named_parameters(), replica.named_parameters()):
        assert p is not q and np.shares_memory(p.data, q.data), name
        np.testing.assert_array_equal(p.data, q.data)


def test_same_seed_same_losses_with_dropout():
    def losses():
        model = mlm(dropout=0.3, seed=5)
        parallel = DataParallel(model, 2)
        opt = Adam(model.parameters(), lr=1e-2)
        out = []
        for n in range(3):
            ids, targets = mlm_batch(6, seed=n)
            opt.zero_grad()
            out.append(step(parallel, ids, targets))
            opt.step()
        return out
    first, second = losses(), losses()
    assert first == second
    assert len(set(first)) == 3


@pytest.mark.parametrize("threads, rows", [(2, 7), (3, 7), (4, 5)])
def test_with_dropout_the_replicas_give_the_whole_batch_loss_and_gradients(threads, rows):
    """Each example's dropout masks (embedding, attention, feed-forward) are the same in a
    replica as in the whole batch, so the loss and every gradient are the whole batch's."""
    model = mlm(dropout=0.3)
    ids, targets = mlm_batch(rows)
    manual_seed(9)
    loss, expected = whole_batch_gradients(model, mlm_loss, ids, targets)
    draws = backend.random.draws_made()
    manual_seed(9)
    assert step(DataParallel(model, threads), ids, targets) == pytest.approx(loss, rel=1e-12)
    assert backend.random.draws_made() == draws  # the run goes on from the same count
    assert_gradients(model, expected)


def test_with_dropout_a_padded_bert_batch_in_replicas_gives_the_whole_batch_gradients():
    """BERT packs each replica's real tokens (ragged attention, dropout on packed rows);
    a replica whose rows have no padding runs the whole grid instead: each example's
    masks are still those of its positions in the whole batch."""
    from tinygrad_nlp.models import BertConfig, BertForMaskedLM
    manual_seed(0)
    config = BertConfig(vocab_size=VOCAB, hidden_size=8, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=16, max_position_embeddings=16, hidden_dropout_prob=0.3,
                        attention_probs_dropout_prob=0.3)
    model = BertForMaskedLM(config).to(dtype=np.float64)
    ids, labels = mlm_batch(6, seed=3)
    mask = np.arange(T)[None] < np.array([[6], [6], [6], [4], [2], [5]])  # the first replica's rows: no padding
    labels = np.where(mask, labels, -100)

    types = np.zeros_like(ids)
    manual_seed(4)
    loss, expected = whole_batch_gradients(model, lambda m, *batch: m.loss(*batch), ids, labels, types, mask)
    manual_seed(4)
    assert step(DataParallel(model, 2), ids, labels, types, mask) == pytest.approx(loss, rel=1e-12)
    assert_gradients(model, expected)


def test_replicas_follow_the_models_mode():
    model = mlm(dropout=0.5)
    ids, targets = mlm_batch(6)
    parallel = DataParallel(model, 2)
    model.eval()
    loss, expected = whole_batch_gradients(model, mlm_loss, ids, targets)
    assert step(parallel, ids, targets) == pytest.approx(loss, rel=1e-12)
    assert_gradients(model, expected)


def test_blas_threads_are_restored_after_a_step():
    from threadpoolctl import threadpool_info
    before = [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]
    model = mlm()
    step(DataParallel(model, 2), *mlm_batch(4))
    assert [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"] == before


def test_a_replicas_error_is_raised_after_every_thread_finished():
    model = mlm()
    ids, targets = mlm_batch(6)
    ids[5, 0] = VOCAB + 3  # in the second replica's rows
    where = r"at position \(2, 0\).*\(replica 1, rows 3\.\.5 of the batch\)"  # the position in the replica's rows
    with pytest.raises(TokenIdError, match=rf"token id {VOCAB + 3} {where}"):
        step(DataParallel(model, 2), ids, targets)


def test_bad_arguments():
    model = mlm()
    for threads in (0, -1, 1.5, True):
        with pytest.raises(ArgumentError, match="threads must be a positive integer"):
            DataParallel(model, threads)
    parallel = DataParallel(model, 2)
    with pytest.raises(ShapeError, match=r"\[4, 3\] rows"):
        parallel.loss(np.zeros((4, T), int), np.zeros((3, T), int))
    with pytest.raises(ArgumentError, match="no batch arrays"):
        parallel.loss()


def test_threads_need_threadpoolctl(monkeypatch):
    monkeypatch.setattr(backend.threads, "threadpoolctl_installed", lambda: False)
    with pytest.raises(MissingDependencyError, match="pip install threadpoolctl"):
        DataParallel(mlm(), 2)
    assert backend.default_threads("cpu") == 1
    assert DataParallel(mlm(), 1).threads == 1


def test_default_threads_one_per_core_on_the_cpu():
    assert backend.default_threads("cpu") >= 1
    assert backend.default_threads("cuda") == 1


def test_default_threads_share_the_cores_among_the_processes_of_one_machine(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    assert [backend.default_threads("cpu", processes) for processes in (1, 2, 3, 8)] == [4, 2, 1, 1]

    class TwoHere(Communicator):
        local_size = 2
    assert DataParallel(mlm(), None, comm=TwoHere()).threads == 2
    assert DataParallel(mlm(), None).threads == 4  # one process: every core


def test_the_examples_default_to_the_default_threads_and_take_a_count():
    from tinygrad_nlp.cli import TRAINING_OPTIONS, parser
    options = parser("", TRAINING_OPTIONS)
    assert options.parse_args([]).threads is None and options.parse_args(["--threads", "3"]).threads == 3
    assert "one per core" in options.format_help()


@pytest.mark.parametrize("late", [None, 0, 2])
def test_contributions_are_added_in_replica_order_bit_for_bit(late, monkeypatch):
    """To an existing gradient G, replicas 0, 1, 2 add theirs as ((G + g0) + g1) + g2 on
    every run, whichever thread gets there first (``late``: that replica starts its
    backward 50 ms after the others, so theirs wait for its turn and it finishes last)."""
    model = mlm(dtype=np.float32)
    ids, targets = mlm_batch(9, seed=4, scored=0.5)
    start = {name: np.random.default_rng(7).standard_normal(p.shape).astype(np.float32)
             for name, p in model.named_parameters()}
    counts = [int(scored(ids[s], targets[s])) for s in (slice(0, 3), slice(3, 6), slice(6, 9))]
    expected = {name: g.copy() for name, g in start.items()}
    with backend.one_blas_thread():
        for k, rows in enumerate((slice(0, 3), slice(3, 6), slice(6, 9))):
            model.zero_grad()
            loss = model.loss(ids[rows], targets[rows])
            loss.backward(np.full((), counts[k] / sum(counts), dtype=np.float32))
            for name, p in model.named_parameters():
                expected[name] += p.grad
    parallel = DataParallel(model, 3)
    original_loss, original_backward = MaskedLanguageModel.loss, ParallelLoss.backward

    def loss(self, *rows):
        result = original_loss(self, *rows)
        result.late = late is not None and self is parallel.replicas[late]
        return result

    def backward(self, *args, **kwargs):
        if getattr(self, "late", False):
            time.sleep(0.05)
        return original_backward(self, *args, **kwargs)
    monkeypatch.setattr(MaskedLanguageModel, "loss", loss)
    monkeypatch.setattr(ParallelLoss, "backward", backward)
    for _ in range(3):
        for name, p in model.named_parameters():
            p.grad = start[name].copy()
        step(parallel, ids, targets)
        for name, p in model.named_parameters():
            np.testing.assert_array_equal(p.grad, expected[name], err_msg=name)


def test_replicas_read_the_models_arrays_whatever_they_become():
    model = mlm()
    parallel = DataParallel(model, 2)
    model.load_state_dict({name: value + 1 for name, value in model.state_dict().items()})
    flatten(model.parameters())
    for replica in parallel.replicas:
        for p, q in zip(model.parameters(), replica.parameters()):
            assert q.data is p.data
    with pytest.raises(AttributeError):
        parallel.replicas[1].parameters()[0].data = np.zeros(1)


@pytest.mark.parametrize("threads, rows", [(2, 5), (3, 2)])
def test_the_forward_in_threads_is_the_models_forward_under_no_grad(threads, rows):
    from tinygrad_nlp import no_grad
    from tinygrad_nlp.models import BertConfig, BertModel
    manual_seed(0)
    config = BertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
                        max_position_embeddings=64)
    model = BertModel(config).to(dtype=np.float64).eval()
    ids = np.random.default_rng(1).integers(1, 99, (rows, 9))
    mask = np.ones_like(ids)
    mask[-1, 4:] = 0
    parallel = DataParallel(model, threads)
    with no_grad():
        expected, got = model(ids, None, mask), parallel(ids, None, mask)
    for a, b in zip(got, expected):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-12, atol=1e-13)
    with pytest.raises(ArgumentError, match=r"the forward in threads is for inference, under no_grad"):
        parallel(ids, None, mask)
    with no_grad(), pytest.raises(ShapeError, match=rf"the batch arrays have \[{rows}, 1\] rows"):
        parallel(ids, None, mask[:1])
    with no_grad(), pytest.raises(ArgumentError, match=r"DataParallel\(...\): got no batch arrays to share out"):
        parallel(None)


def test_replicas_keep_no_gradient_of_their_own():
    """Each replica parameter's gradient is handed to the model's by a hook and not kept:
    the memory of one model's gradients, whatever the thread count."""
    model = mlm()
    opt = Adam(model.parameters(), lr=1e-2)
    parallel = DataParallel(model, 3)
    step(parallel, *mlm_batch(7))
    assert all(q.grad is None for replica in parallel.replicas for q in replica.parameters())
    assert opt.buffers[0].has_all_gradients()  # the model's gradients are its flat buffer's slots


def test_the_old_names_of_moved_things_still_work_with_a_warning():
    from tinygrad_nlp import distributed
    from tinygrad_nlp.nn import parallel, replicas
    for old, new in (("SharedGradient", replicas.ReplicaParameter),
                     ("broadcast_parameters", distributed.broadcast_parameters),
                     ("all_reduce_gradients", distributed.all_reduce_gradients)):
        with pytest.warns(DeprecationWarning, match=f"nn.parallel.{old} is now"):
            assert getattr(parallel, old) is new
