"""Checks GPT's and Llama's tests share: generation past the context against nanoGPT's
window, and cached logits against a full recompute."""
import numpy as np

from tinygrad_nlp import no_grad


def greedy_with_the_window(model, ids, new_tokens):
    """nanoGPT's generate: each token the argmax of the last position's logits of a full
    forward over the last context-length ids. Returns the ids and each step's logits."""
    steps = []
    with no_grad():
        for _ in range(new_tokens):
            steps.append(model(ids[:, -model.context_length:]).numpy()[:, -1])
            ids = np.concatenate([ids, steps[-1].argmax(-1)[:, None]], axis=1)
    return ids, steps


def recording_head(model):
    """Make ``model.head`` also keep every logits Tensor it returns, in the list returned."""
    seen, head = [], model.head

    def recorded(h):
        seen.append(head(h))
        return seen[-1]
    model.head = recorded
    return seen


def assert_generation_past_the_context_is_the_window_recomputed(model, prompt, new_tokens=26):
    """Greedy generation with and without the cache gives nanoGPT's windowed ids, and each
    step's logits equal a full recompute over the window (1e-10 relative)."""
    expected, expected_logits = greedy_with_the_window(model, prompt, new_tokens)
    for use_cache in (True, False):
        seen = recording_head(model)
        np.testing.assert_array_equal(model.generate(prompt, new_tokens, temperature=0, use_cache=use_cache), expected)
        del model.head
        assert len(seen) == new_tokens
        for step, (got, want) in enumerate(zip(seen, expected_logits)):
            assert np.abs(got.numpy() - want).max() <= 1e-10 * np.abs(want).max(), (use_cache, step)


def assert_cached_logits_equal_the_full_recompute(model, ids, tol, prompt=5):
    """A prompt of ``prompt`` ids through the cache, then one id at a time: the logits of
    a full forward over ``ids`` at every position, within ``tol`` relative."""
    B, T = ids.shape
    with no_grad():
        full = model(ids).numpy()
        cache = model.new_cache(B, T)
        first = model(ids[:, :prompt], cache).numpy()
        steps = [model(ids[:, t:t + 1], cache).numpy() for t in range(prompt, T)]
    cached = np.concatenate([first] + steps, axis=1)
    assert cache.length == T
    assert np.abs(cached - full).max() <= tol * np.abs(full).max()
