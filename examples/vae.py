"""Variational autoencoders on binarized digits (``sklearn.datasets.load_digits``, offline).

* a Gaussian-latent VAE trained with ``vi.elbo`` and with ``vi.iwae`` (5 particles), through
  ``vi.fit`` with mini-batches;
* a discrete-latent VAE (one categorical latent with 10 classes per image) whose guide's choice
  is estimated three ways, chosen from outside with ``with_estimators``: exact ``enum``,
  ``reinforce`` with a running-mean baseline, and ``mvd``. Each image is its own expectation,
  and ``Expectation.vmap`` makes the batch's copies of it, so enumeration is over 10 values
  per image (not 10^batch jointly) and one gradient is taken for the batch.

Writes ``vae_reconstructions.png`` (data, Gaussian-VAE reconstructions and prior samples) and
``vae_losses.png`` (loss curves), and prints the final held-out ELBOs.

Run: ``python examples/vae.py`` (``--quick`` for a smoke run).
"""

from __future__ import annotations

import argparse
import pathlib

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
import optax
from sklearn.datasets import load_digits

from inference import vi
from ppl import bernoulli, categorical, expectation, gen, normal
from ppl.adev import enum, mvd, reinforce, running_mean

matplotlib.use("Agg")
import matplotlib.pyplot as plt

LATENT, HIDDEN, CLASSES = 4, 64, 10


def mlp_init(key, sizes):
    keys = jax.random.split(key, len(sizes) - 1)
    return [
        (jax.random.normal(k, (m, n)) / jnp.sqrt(m), jnp.zeros(n))
        for k, m, n in zip(keys, sizes[:-1], sizes[1:], strict=True)
    ]


def dense(layer, x):
    w, b = layer
    out = x @ w
    return out + jnp.broadcast_to(b, out.shape)


def mlp(layers, x):
    for layer in layers[:-1]:
        x = jnp.tanh(dense(layer, x))
    return dense(layers[-1], x)


# -- Gaussian latent: the batch is one vectorised draw of shape [batch, LATENT] -----------------
@gen
def model(decoder, n):
    z = normal(jnp.zeros((n, LATENT)), 1.0) @ "z"
    return bernoulli(logits=mlp(decoder, z)) @ "x"


@gen
def guide(encoder, x):
    out = mlp(encoder, x)
    return normal(out[:, :LATENT], jax.nn.softplus(out[:, LATENT:]) + 1e-3) @ "z"


def gaussian_objective(kind: str, scale: float):
    """The objective over a mini-batch, its likelihood scaled to the whole data set."""
    base = (
        vi.elbo(
            model,
            guide,
            model_args=lambda p, x: (p["decoder"], x.shape[0]),
            guide_args=lambda p, x: (p["encoder"], x),
        )
        if kind == "elbo"
        else vi.iwae(
            model,
            guide,
            5,
            model_args=lambda p, x: (p["decoder"], x.shape[0]),
            guide_args=lambda p, x: (p["encoder"], x),
        )
    )

    @expectation
    def objective(key, params, batch):
        return scale * base.estimate(key, params, {"x": batch}, batch) / batch.shape[0]

    return objective


# -- discrete latent: one image per expectation ---------------------------------------------------
@gen
def discrete_model(decoder):
    c = categorical(logits=jnp.zeros(CLASSES)) @ "c"
    return bernoulli(logits=mlp(decoder, jax.nn.one_hot(c, CLASSES))) @ "x"


@gen
def discrete_guide(encoder, x):
    return categorical(logits=mlp(encoder, x)) @ "c"


per_image = vi.elbo(
    discrete_model,
    discrete_guide,
    model_args=lambda p, x: (p["decoder"],),
    guide_args=lambda p, x: (p["encoder"], x),
)


def train_discrete(estimator, data, steps, key, batch_size):
    # Copies over the batch of images (the observations and the guide's argument), reduced
    # to their mean; the parameters are shared.
    objective = per_image.with_estimators({"c": estimator}).vmap(in_axes=(None, 0, 0))
    k_enc, k_dec = jax.random.split(jax.random.key(1))
    params = {
        "encoder": mlp_init(k_enc, [data.shape[1], HIDDEN, CLASSES]),
        "decoder": mlp_init(k_dec, [CLASSES, HIDDEN, data.shape[1]]),
    }
    optimizer = optax.adam(3e-3)
    state = objective.init_state(key, params, {"x": data[:batch_size]}, data[:batch_size])

    @jax.jit
    def step(params, opt_state, state, key):
        k_batch, k_obj = jax.random.split(key)
        batch = data[jax.random.choice(k_batch, data.shape[0], (batch_size,), replace=False)]
        value, grads, state = objective.value_and_grad(
            k_obj, params, {"x": batch}, batch, argnums=0, state=state
        )
        updates, opt_state = optimizer.update(jax.tree.map(jnp.negative, grads), opt_state, params)
        return optax.apply_updates(params, updates), opt_state, state, -value

    opt_state = optimizer.init(params)
    losses = []
    for i in range(steps):
        params, opt_state, state, loss = step(params, opt_state, state, jax.random.fold_in(key, i))
        losses.append(float(loss))
    return params, np.array(losses)


def main(quick: bool = False, out: pathlib.Path = pathlib.Path(".")) -> dict[str, float]:
    digits = load_digits()
    data = jnp.asarray(digits.data > 7, jnp.float32)  # binarized 8x8 images
    train, test = data[:1500], data[1500:]
    steps = 30 if quick else 1500
    batch = 32 if quick else 100
    key = jax.random.key(0)
    results: dict[str, float] = {}
    curves: dict[str, np.ndarray] = {}

    for kind in ("elbo", "iwae"):
        k_enc, k_dec = jax.random.split(jax.random.key(2))
        params = {
            "encoder": mlp_init(k_enc, [data.shape[1], HIDDEN, 2 * LATENT]),
            "decoder": mlp_init(k_dec, [LATENT, HIDDEN, data.shape[1]]),
        }
        objective = gaussian_objective(kind, scale=1.0)
        fitted = vi.fit(
            objective,
            params,
            optax.adam(3e-3),
            steps,
            key,
            data=train,
            batch_size=batch,
            progress=not quick,
        )
        curves[f"gaussian/{kind}"] = fitted.losses
        held_out = gaussian_objective("elbo", 1.0).estimate(key, fitted.params, test)
        results[f"gaussian/{kind}"] = float(held_out)
        if kind == "elbo":
            gaussian_params = fitted.params

    for name, estimator in (
        ("enum", enum()),
        ("reinforce+baseline", reinforce(running_mean(0.9))),
        ("mvd", mvd()),
    ):
        params, losses = train_discrete(estimator, train, steps, key, batch)
        curves[f"categorical/{name}"] = losses
        held_out = per_image.vmap(in_axes=(None, 0, 0)).estimate(key, params, {"x": test}, test)
        results[f"categorical/{name}"] = float(held_out)

    for name, value in results.items():
        print(f"held-out ELBO per image, {name:>30}: {value:8.2f}")

    # reconstructions and samples of the Gaussian VAE
    out.mkdir(parents=True, exist_ok=True)
    recon = guide.simulate(key, (gaussian_params["encoder"], test[:8])).retval
    recon = jax.nn.sigmoid(mlp(gaussian_params["decoder"], recon))
    prior = jax.nn.sigmoid(mlp(gaussian_params["decoder"], jax.random.normal(key, (8, LATENT))))
    fig, axes = plt.subplots(3, 8, figsize=(8, 3.3))
    for row, images, label in zip(
        axes, (test[:8], recon, prior), ("data", "recon", "sample"), strict=True
    ):
        for ax, image in zip(row, images, strict=True):
            ax.imshow(np.asarray(image).reshape(8, 8), cmap="gray_r")
            ax.set_xticks([])
            ax.set_yticks([])
        row[0].set_ylabel(label)
    fig.savefig(out / "vae_reconstructions.png", dpi=80)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for name, losses in curves.items():
        window = max(1, len(losses) // 30)
        smooth = np.convolve(losses, np.ones(window) / window, mode="valid")
        ax.plot(smooth, label=name)
    ax.set_xlabel("step")
    ax.set_ylabel("loss (−objective)")
    ax.legend()
    fig.savefig(out / "vae_losses.png", dpi=80)
    plt.close(fig)
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few steps (smoke test)")
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("."))
    arguments = parser.parse_args()
    main(arguments.quick, arguments.out)
