"""The tutorials' training step in JAX, for benchmarks/train_step.py --jax: the same
model (embedding, sinusoidal positions, encoder layers with padding mask and dropout,
pre-norm for the MLM and post-norm for the classifier, LM head on the scored positions),
cross-entropy and Adam, the whole step under one ``jax.jit`` with the parameters and
Adam's moments donated (updated in place)."""
from __future__ import annotations

import numpy as np


def make_step(c, name, ids, targets, mask, labels):
    """A function running one step (forward, loss, backward, Adam) and waiting for it."""
    import jax
    import jax.numpy as jnp

    d, heads, layers = c["d"], c["heads"], c["layers"]
    rng = np.random.default_rng(0)

    def dense(i, o):
        bound = 1 / np.sqrt(i)
        return {"w": jnp.asarray(rng.uniform(-bound, bound, (i, o)), jnp.float32), "b": jnp.zeros(o, jnp.float32)}

    def norm():
        return {"g": jnp.ones(d, jnp.float32), "b": jnp.zeros(d, jnp.float32)}

    params = {
        "emb": jnp.asarray(rng.standard_normal((c["vocab"], d)) * d ** -0.5, jnp.float32),
        "layers": [{"qkv": dense(d, 3 * d), "out": dense(d, d), "ff1": dense(d, c["ff"]), "ff2": dense(c["ff"], d),
                    "n1": norm(), "n2": norm()} for _ in range(layers)],
        "norm": norm(),
        "head": dense(d, c["vocab"] if name == "mlm" else 2),
    }
    position = np.arange(c["seq"])[:, None] / 10000 ** (np.arange(0, d, 2) / d)
    pe = np.zeros((c["seq"], d), np.float32)
    pe[:, 0::2], pe[:, 1::2] = np.sin(position), np.cos(position)
    pe = jnp.asarray(pe)
    scored = np.flatnonzero(targets.reshape(-1) != -100)
    scored_targets = jnp.asarray(targets.reshape(-1)[scored])
    ids, mask, labels = jnp.asarray(ids), jnp.asarray(mask), jnp.asarray(labels)
    p_drop = c["dropout"]

    def layer_norm(x, n):
        mean = x.mean(-1, keepdims=True)
        var = ((x - mean) ** 2).mean(-1, keepdims=True)
        return (x - mean) * jax.lax.rsqrt(var + 1e-5) * n["g"] + n["b"]

    def dropout(x, key):
        return jnp.where(jax.random.bernoulli(key, 1 - p_drop, x.shape), x / (1 - p_drop), 0)

    def attention(x, lp, key):
        B, T, _ = x.shape
        qkv = (x @ lp["qkv"]["w"] + lp["qkv"]["b"]).reshape(B, T, 3, heads, d // heads).transpose(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        scores = q @ k.transpose(0, 1, 3, 2) / np.sqrt(d // heads)
        scores = jnp.where(mask[:, None, None, :], scores, -jnp.inf)
        probs = dropout(jax.nn.softmax(scores, -1), key)
        out = (probs @ v).transpose(0, 2, 1, 3).reshape(B, T, d)
        return out @ lp["out"]["w"] + lp["out"]["b"]

    def encoder_layer(x, lp, key):
        k1, k2, k3, k4 = jax.random.split(key, 4)

        def feed_forward(h):
            h = dropout(jax.nn.relu(h @ lp["ff1"]["w"] + lp["ff1"]["b"]), k3)
            return h @ lp["ff2"]["w"] + lp["ff2"]["b"]
        if name == "mlm":  # pre-norm
            x = x + dropout(attention(layer_norm(x, lp["n1"]), lp, k1), k2)
            return x + dropout(feed_forward(layer_norm(x, lp["n2"])), k4)
        x = layer_norm(x + dropout(attention(x, lp, k1), k2), lp["n1"])  # post-norm
        return layer_norm(x + dropout(feed_forward(x), k4), lp["n2"])

    def loss_fn(p, key):
        x = p["emb"][ids] + pe
        for lp, k in zip(p["layers"], jax.random.split(key, layers)):
            x = encoder_layer(x, lp, k)
        if name == "mlm":
            h = layer_norm(x, p["norm"]).reshape(-1, d)[scored]
            logits, wanted = h @ p["head"]["w"] + p["head"]["b"], scored_targets
        else:
            logits, wanted = x[:, 0] @ p["head"]["w"] + p["head"]["b"], labels
        logp = jax.nn.log_softmax(logits, -1)
        return -jnp.take_along_axis(logp, wanted[:, None], 1).mean()

    def adam(p, g, m, v, t, lr=1e-4, b1=0.9, b2=0.999, eps=1e-8):
        m = jax.tree.map(lambda m, g: b1 * m + (1 - b1) * g, m, g)
        v = jax.tree.map(lambda v, g: b2 * v + (1 - b2) * g * g, v, g)
        step = lr * jnp.sqrt(1 - b2 ** t) / (1 - b1 ** t)
        p = jax.tree.map(lambda p, m, v: p - step * m / (jnp.sqrt(v) + eps), p, m, v)
        return p, m, v

    def _step_body(p, m, v, t, key):
        key, sub = jax.random.split(key)
        loss, g = jax.value_and_grad(loss_fn)(p, sub)
        p, m, v = adam(p, g, m, v, t)
        return p, m, v, t + 1, key, loss

    train_step = jax.jit(_step_body, donate_argnums=(0, 1, 2))
    zeros = jax.tree.map(jnp.zeros_like, params)
    state = [params, zeros, jax.tree.map(jnp.zeros_like, params), jnp.float32(1), jax.random.PRNGKey(0)]

    def step():
        *state[:], loss = train_step(*state)  # the new parameters, moments, step and key replace the old
        loss.block_until_ready()
    return step
