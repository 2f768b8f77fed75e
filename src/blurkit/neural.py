"""Compare models with brains: layer activations, neural predictivity and representational similarity.

Vision scientists bring responses recorded for a set of stimulus images (fMRI voxels, electrode sites,
``stimuli x units`` or ``stimuli x units x repetitions``); this module turns a network's layers into
features for the same images and scores how well each layer accounts for the responses:

- :func:`activations`: layer outputs through forward hooks, batched, with optional spatial pooling
  and a seeded Gaussian random projection to bound memory, cached on disk.
- :func:`predictivity`: cross-validated ridge regression (alpha chosen by nested cross-validation),
  per-unit Pearson r on held-out stimuli, the split-half noise ceiling (Spearman-Brown corrected) and
  ceiling-normalised scores, with bootstrap confidence intervals over stimuli.
- :func:`rsa`: representational dissimilarity matrices (1 - Pearson r, or Euclidean) compared by
  Spearman's rho or Kendall's tau-a, with a bootstrap over stimuli.
- :func:`score_layers` / :func:`compare_models`: every layer of every model in one
  :class:`NeuralResults` table (dicts, JSON, CSV) and a plot of score against layer depth.
- :func:`synthetic_responses`: a simulated "brain" (noisy linear read-outs of given features with a
  known noise ceiling) to check the tools without recordings.

References: Yamins et al. 2014 (PNAS 111:8619, ridge/PLS predictivity of IT sites); Schrimpf et al.
2018 (Brain-Score, bioRxiv 407007); Kriegeskorte, Mur & Bandettini 2008 (Front. Syst. Neurosci.
2:4, RSA); Nili et al. 2014 (PLoS Comput. Biol. 10:e1003553, RSA toolbox, Kendall's tau-a,
bootstrap over stimuli); Spearman 1910 / Brown 1910 (prophecy formula).

Example:
    >>> import torch, blurkit as bk
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3), torch.nn.ReLU(), torch.nn.Flatten())
    >>> feats = bk.neural.activations(net, torch.rand(40, 1, 12, 12), layers=["1"], pool=2)
    >>> resp = bk.neural.synthetic_responses(feats["1"], n_units=5, repetitions=4, seed=0).responses
    >>> res = bk.neural.predictivity(feats["1"], resp, folds=4, bootstrap=100)
    >>> round(res.ceiling_mean, 1) <= 1.0
    True
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ._io import atomic_savefig, atomic_torch_save, atomic_write_text

__all__ = [
    "activations",
    "layer_names",
    "predictivity",
    "noise_ceiling",
    "ridge_path",
    "rdm",
    "compare_rdms",
    "kendall_tau_a",
    "rsa",
    "synthetic_responses",
    "permutation_test",
    "PermutationResult",
    "score_layers",
    "compare_models",
    "Predictivity",
    "NoiseCeiling",
    "RSAResult",
    "LayerScore",
    "NeuralResults",
    "SyntheticBrain",
    "DEFAULT_ALPHAS",
]

DEFAULT_ALPHAS: np.ndarray = np.logspace(-5, 5, 21)
"""Ridge penalties tried by :func:`predictivity` by default, relative to the mean eigenvalue of the
training Gram matrix (``alpha_units="relative"``), so the grid does not depend on the scale of the
activations: from almost no penalty to predicting (almost) the mean."""

_CACHE_FORMAT = 1


# ----------------------------------------------------------------------------------------------------
# activations
# ----------------------------------------------------------------------------------------------------

def layer_names(model: nn.Module, leaves_only: bool = False) -> list[str]:
    """Names of the modules of ``model`` that :func:`activations` can hook, in definition order.

    Args:
        model: any ``nn.Module``.
        leaves_only: only modules without children (conv, relu, linear, ...).

    Returns:
        The names as ``model.named_modules()`` gives them (the root, ``""``, excluded).

    Example:
        >>> layer_names(torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.ReLU()))
        ['0', '1']
    """
    return [name for name, mod in model.named_modules()
            if name and (not leaves_only or next(mod.children(), None) is None)]


def _check_layers(model: nn.Module, layers: str | Sequence[str]) -> list[str]:
    if isinstance(layers, str):
        layers = [layers]
    if not isinstance(layers, Sequence) or len(layers) == 0 or not all(isinstance(n, str) for n in layers):
        raise ValueError(f"layers must be a layer name or a non-empty list of names; got {layers!r}")
    modules = dict(model.named_modules())
    unknown = [n for n in layers if n not in modules or n == ""]
    if unknown:
        valid = layer_names(model)
        raise ValueError(f"unknown layer name(s) {', '.join(map(repr, unknown))}; valid names "
                         f"(from model.named_modules()): {', '.join(valid) if valid else '(none)'}")
    if len(set(layers)) != len(layers):
        raise ValueError(f"layers contains duplicates: {list(layers)!r}")
    return list(layers)


def _check_pool(pool: object) -> str | int | None:
    if pool is None or pool in ("avg", "max"):
        return pool  # type: ignore[return-value]
    if isinstance(pool, int) and not isinstance(pool, bool) and pool >= 1:
        return pool
    raise ValueError(f"pool must be None, 'avg', 'max' or a grid size int >= 1; got {pool!r}")


def _pool(out: torch.Tensor, pool: str | int | None, layer: str) -> torch.Tensor:
    """Spatially pool one layer output (B, C, H, W) or tokens (B, L, D); flatten to (B, features)."""
    if pool is None or out.dim() <= 2:
        return out.flatten(1)
    if out.dim() == 4:
        if pool == "avg":
            return out.mean(dim=(2, 3))
        if pool == "max":
            return out.amax(dim=(2, 3))
        return nn.functional.adaptive_avg_pool2d(out, int(pool)).flatten(1)
    if out.dim() == 3:  # tokens (B, L, D): pool over L
        if pool == "avg":
            return out.mean(dim=1)
        if pool == "max":
            return out.amax(dim=1)
        raise ValueError(f"layer {layer!r} gives a 3-D output {tuple(out.shape)} (tokens); pool must be "
                         f"None, 'avg' or 'max' for it, not a grid size ({pool!r})")
    if pool in ("avg", "max"):  # 5-D and up: pool every dim after the channel dim
        dims = tuple(range(2, out.dim()))
        return out.mean(dim=dims) if pool == "avg" else out.amax(dim=dims)
    raise ValueError(f"layer {layer!r} gives a {out.dim()}-D output; a grid pool needs (B, C, H, W)")


def _projection(n_in: int, n_out: int, seed: int, layer: str, device: torch.device) -> torch.Tensor:
    """Seeded Gaussian random projection (n_in, n_out), entries N(0, 1/n_out) (Johnson-Lindenstrauss)."""
    gen = torch.Generator(device="cpu")
    gen.manual_seed((int(seed) * 1_000_003 + zlib.crc32(layer.encode())) % (2**63 - 1))
    mat = torch.randn(n_in, n_out, generator=gen, dtype=torch.float32) / math.sqrt(n_out)
    return mat.to(device)


def _hash_model(model: nn.Module) -> str:
    h = hashlib.sha256(type(model).__qualname__.encode())
    # the architecture too (activation types, strides, padding, pooling): weights alone do not tell
    # a ReLU network from the same weights with Tanh, or a stride-1 from a stride-2 convolution
    h.update(repr(model).encode())
    for name, t in model.state_dict().items():
        h.update(name.encode())
        if isinstance(t, torch.Tensor):
            t = t.detach().cpu().contiguous()
            h.update(f"{t.dtype}{tuple(t.shape)}".encode())
            h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        else:
            h.update(repr(t).encode())
    return h.hexdigest()


def _hash_tensor(t: torch.Tensor) -> str:
    t = t.detach().cpu().contiguous()
    h = hashlib.sha256(f"{t.dtype}{tuple(t.shape)}".encode())
    h.update(t.view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def activations(
    model: nn.Module,
    images: torch.Tensor,
    layers: str | Sequence[str],
    *,
    batch_size: int = 64,
    pool: str | int | None = None,
    project: int | None = None,
    seed: int = 0,
    cache: str | os.PathLike[str] | None = None,
    device: str | torch.device | None = None,
) -> dict[str, torch.Tensor]:
    """Layer activations of ``model`` for ``images``, one ``(N, D)`` feature matrix per layer.

    Forward hooks on the named modules record each batch's outputs, which are pooled, flattened and
    (optionally) randomly projected before the next batch runs, so memory stays ``N x D`` per layer.
    The model runs in eval mode under ``torch.no_grad`` (its training flag is restored afterwards).
    A module called several times in one forward pass (a shared ReLU) gives its *last* call's output.

    Args:
        model: any ``nn.Module`` taking a batch ``(B, C, H, W)``.
        images: ``(N, C, H, W)`` tensor, already preprocessed the way the model expects.
        layers: a name or list of names from ``model.named_modules()`` (see :func:`layer_names`);
            an unknown name raises ``ValueError`` listing the valid names.
        batch_size: images per forward pass.
        pool: ``None`` (flatten everything), ``"avg"`` / ``"max"`` (global pooling over H, W, or over
            tokens for ``(B, L, D)`` outputs) or an int ``g`` (adaptive average pooling to a ``g x g``
            grid, ``C * g * g`` features).
        project: if an int ``k``, multiply each layer's (pooled) features of dimension ``D > k`` by a
            seeded Gaussian matrix ``(D, k)`` with entries ``N(0, 1/k)``, which preserves distances
            and inner products approximately (Johnson-Lindenstrauss) while bounding memory at
            ``N x k``; the matrix itself takes ``4 D k`` bytes while it is in use. Layers with
            ``D <= k`` are kept as they are.
        seed: seed of the projection matrices (one per layer, derived from ``seed`` and the name).
        cache: a directory; results are stored there as ``<sha256>.pt`` keyed by the model's state
            (class name, parameter and buffer values), the images' bytes and every option above, and
            loaded instead of recomputed when the key matches. Writes are atomic.
        device: where the model runs; default: the device of the model's first parameter (or CPU).
            The model is not moved; images are moved batch by batch.

    Returns:
        ``{layer: float32 CPU tensor (N, D_layer)}`` in the order of ``layers``.

    Example:
        >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU())
        >>> {k: tuple(v.shape) for k, v in activations(net, torch.rand(5, 3, 8, 8), ["0", "1"]).items()}
        {'0': (5, 144), '1': (5, 144)}
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}")
    names = _check_layers(model, layers)
    if not isinstance(images, torch.Tensor) or images.dim() < 2:
        got = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise TypeError(f"images must be a tensor (N, C, H, W); got {got}")
    if images.shape[0] == 0:
        raise ValueError("images is empty (N = 0)")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1; got {batch_size!r}")
    pool = _check_pool(pool)
    if project is not None and (not isinstance(project, int) or isinstance(project, bool) or project < 1):
        raise ValueError(f"project must be None or an int >= 1 (output dimension); got {project!r}")
    if device is None:
        first = next(model.parameters(), None)
        device = first.device if first is not None else torch.device("cpu")
    device = torch.device(device)

    cache_file: Path | None = None
    if cache is not None:
        key = hashlib.sha256(json.dumps({
            "format": _CACHE_FORMAT, "model": _hash_model(model), "images": _hash_tensor(images),
            "layers": names, "pool": pool, "project": project, "seed": seed if project else None,
        }, sort_keys=True).encode()).hexdigest()
        cache_file = Path(cache) / f"{key}.pt"
        if cache_file.is_file():
            stored = torch.load(cache_file, map_location="cpu", weights_only=True)
            return {n: stored[n] for n in names}

    modules = dict(model.named_modules())
    current: dict[str, torch.Tensor] = {}
    projections: dict[str, torch.Tensor | None] = {}

    def make_hook(name: str):
        def hook(_mod: nn.Module, _inp: Any, out: Any) -> None:
            if isinstance(out, (tuple, list)):
                out = next((o for o in out if isinstance(o, torch.Tensor)), None)
            if not isinstance(out, torch.Tensor):
                raise TypeError(f"layer {name!r} does not output a tensor (got {type(out).__name__}); "
                                "choose another layer")
            feats = _pool(out.detach().float(), pool, name)
            if project is not None:
                if name not in projections:
                    d = feats.shape[1]
                    projections[name] = (_projection(d, project, seed, name, feats.device)
                                         if d > project else None)
                mat = projections[name]
                if mat is not None:
                    feats = feats @ mat
            if feats.untyped_storage().data_ptr() == out.untyped_storage().data_ptr():
                feats = feats.clone()  # a later in-place op (ReLU(inplace=True)) would change it
            current[name] = feats
        return hook

    handles = [modules[n].register_forward_hook(make_hook(n)) for n in names]
    chunks: dict[str, list[torch.Tensor]] = {n: [] for n in names}
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for start in range(0, images.shape[0], batch_size):
                current.clear()
                model(images[start:start + batch_size].to(device))
                missing = [n for n in names if n not in current]
                if missing:
                    raise ValueError(f"layer(s) {missing} were not called during the forward pass; "
                                     "choose modules that the model's forward uses")
                for n in names:
                    chunks[n].append(current[n].cpu())
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    result = {n: torch.cat(chunks[n]) for n in names}
    if cache_file is not None:
        atomic_torch_save(result, cache_file)
    return result


# ----------------------------------------------------------------------------------------------------
# input checks shared by predictivity and rsa
# ----------------------------------------------------------------------------------------------------

def _as_array(x: object, name: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().double().numpy()
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be a numeric array or tensor; got {type(x).__name__}") from exc
    return arr


def _check_features(features: object) -> np.ndarray:
    x = _as_array(features, "features")
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2:
        x = x.reshape(x.shape[0], -1)
    if x.shape[0] < 3 or x.shape[1] < 1:
        raise ValueError(f"features must be (stimuli, features) with >= 3 stimuli; got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        bad = int((~np.isfinite(x)).sum())
        raise ValueError(f"features contain {bad} NaN/inf values; features must be finite")
    return x


def _check_responses(responses: object, n_stimuli: int | None,
                     repetitions_axis: int | None) -> tuple[np.ndarray, np.ndarray | None]:
    """Return (mean responses (N, U), repetitions (N, U, R) or None); NaN kept (masked later)."""
    y = _as_array(responses, "responses")
    if y.ndim == 1:
        y = y[:, None]
    if y.ndim == 2 and repetitions_axis is not None:
        raise ValueError(f"repetitions_axis={repetitions_axis} given but responses are 2-D {y.shape} "
                         "(stimuli, units); pass repetitions as a third axis")
    if y.ndim == 3:
        ax = 2 if repetitions_axis is None else repetitions_axis
        if not isinstance(ax, int) or ax not in (1, 2, -1, -2):
            raise ValueError(f"repetitions_axis must be 1 or 2 (axis 0 is stimuli); got {repetitions_axis!r}")
        reps = np.moveaxis(y, ax, 2)
    elif y.ndim == 2:
        reps = None
    else:
        raise ValueError(f"responses must be (stimuli, units) or (stimuli, units, repetitions); "
                         f"got shape {y.shape}")
    if n_stimuli is not None and y.shape[0] != n_stimuli:
        raise ValueError(f"features have {n_stimuli} stimuli (rows) but responses have {y.shape[0]}; "
                         "row i of both must be the same stimulus")
    if np.isinf(y).any():
        raise ValueError("responses contain inf values; use NaN for missing measurements")
    if reps is None:
        return y, None
    with np.errstate(invalid="ignore"), _quiet_nan():
        mean = np.nanmean(reps, axis=2)
    return mean, reps


class _quiet_nan:
    """Silence numpy's 'Mean of empty slice' warnings (all-NaN slices are handled explicitly)."""

    def __enter__(self) -> None:
        import warnings
        self._ctx = warnings.catch_warnings()
        self._ctx.__enter__()
        warnings.simplefilter("ignore", category=RuntimeWarning)

    def __exit__(self, *exc: object) -> None:
        self._ctx.__exit__(*exc)


def _masked_pearson(a: np.ndarray, b: np.ndarray, weights: np.ndarray | None = None,
                    max_elements: int = 2**23) -> np.ndarray:
    """Per-column Pearson r of a, b (N, U), ignoring rows where either is NaN.

    With ``weights`` (B, N) (bootstrap counts), returns (B, U): the r of each weighted resample.
    Columns with fewer than 3 valid rows or zero variance give NaN. Columns are processed in chunks
    so that the intermediate sums stay below ``max_elements`` values (64 MiB).
    """
    rows = 1 if weights is None else weights.shape[0]
    step = max(1, max_elements // (6 * max(rows, a.shape[0])))
    if a.shape[1] > step:
        parts = [_masked_pearson_block(a[:, c:c + step], b[:, c:c + step], weights)
                 for c in range(0, a.shape[1], step)]
        return np.concatenate(parts, axis=-1)
    return _masked_pearson_block(a, b, weights)


def _masked_pearson_block(a: np.ndarray, b: np.ndarray, weights: np.ndarray | None) -> np.ndarray:
    valid = ~(np.isnan(a) | np.isnan(b))
    m = valid.astype(np.float64)
    count = np.maximum(m.sum(axis=0), 1.0)
    # centre first (unweighted means of the valid rows) so the one-pass sums below do not cancel
    a0 = np.where(valid, a, 0.0)
    b0 = np.where(valid, b, 0.0)
    a0 = np.where(valid, a0 - a0.sum(axis=0) / count, 0.0)
    b0 = np.where(valid, b0 - b0.sum(axis=0) / count, 0.0)
    w = np.ones((1, a.shape[0])) if weights is None else weights
    u = a.shape[1]
    sums = w @ np.concatenate([m, a0, b0, a0 * a0, b0 * b0, a0 * b0], axis=1)  # one matrix product
    n, sa, sb, saa, sbb, sab = (sums[:, i * u:(i + 1) * u] for i in range(6))
    with np.errstate(invalid="ignore", divide="ignore"):
        cov = sab - sa * sb / n
        va = saa - sa * sa / n
        vb = sbb - sb * sb / n
        r = cov / np.sqrt(va * vb)
    ok = (n >= 3) & (va > 1e-12 * saa) & (vb > 1e-12 * sbb) & (va > 0) & (vb > 0)
    r = np.where(ok, r, np.nan)
    r = np.clip(r, -1.0, 1.0)
    return r[0] if weights is None else r


def _bootstrap_weights(n: int, n_boot: int, seed: int) -> np.ndarray:
    """(n_boot, n) counts of each stimulus in ``n_boot`` resamples with replacement."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_boot, n))
    w = np.zeros((n_boot, n))
    np.add.at(w, (np.arange(n_boot)[:, None], idx), 1.0)
    return w


def _interval(samples: np.ndarray, ci: float, estimate: float) -> tuple[float, float]:
    """Bootstrap percentile interval re-centred on the estimate: ``estimate + quantiles(s - median(s))``.

    Correlations computed on a resample are biased low (a resample holds about 63% distinct
    stimuli, and duplicated stimuli weigh the sample); with thousands of units the spread of their
    mean becomes smaller than that bias, and the plain percentile interval would miss the estimate.
    Re-centring keeps the resamples' spread and drops their shift.
    """
    s = samples[np.isfinite(samples)]
    if s.size == 0 or not math.isfinite(estimate):
        return (math.nan, math.nan)
    lo, hi = np.quantile(s - np.median(s), [(1 - ci) / 2, (1 + ci) / 2])
    return (float(estimate + lo), float(estimate + hi))


def _nanmean(x: np.ndarray, axis: int | None = None) -> Any:
    with _quiet_nan():
        return np.nanmean(x, axis=axis)


# ----------------------------------------------------------------------------------------------------
# ridge regression
# ----------------------------------------------------------------------------------------------------

def _standardize(x_train: np.ndarray, x_test: np.ndarray, scale: bool) -> tuple[np.ndarray, np.ndarray]:
    mu = x_train.mean(axis=0)
    xtr, xte = x_train - mu, x_test - mu
    if scale:
        sd = xtr.std(axis=0)
        sd[sd <= 1e-12 * (np.abs(mu) + 1.0)] = 1.0
        xtr, xte = xtr / sd, xte / sd
    return xtr, xte


class _RidgeSolver:
    """Eigendecomposition of the centred training design, reused for every alpha.

    With ``n`` training rows and ``D`` features: if ``D <= n`` the primal Gram ``X^T X`` (D x D) is
    diagonalised, otherwise the dual Gram ``X X^T`` (n x n); either way predictions for every alpha
    cost one small matrix product each.
    """

    def __init__(self, x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray | None, scale: bool):
        xtr, xte = _standardize(x_train, x_train if x_test is None else x_test, scale)
        self.y_mean = y_train.mean(axis=0)
        self.y_train = y_train
        yc = y_train - self.y_mean
        n, d = xtr.shape
        if d <= n:
            evals, vecs = np.linalg.eigh(xtr.T @ xtr)
            self.right = xtr @ vecs                 # P = X V: hat matrix = P diag(1/(s+a)) P^T
            self.a = self.right if x_test is None else xte @ vecs
            self.b = self.right.T @ yc
        else:
            evals, vecs = np.linalg.eigh(xtr @ xtr.T)
            self.right = vecs                       # U: hat matrix = U diag(s/(s+a)) U^T
            self.a = (xte @ xtr.T) @ vecs
            self.b = vecs.T @ yc
        self.evals = np.clip(evals, 0.0, None)
        self.n = n
        # mean eigenvalue of the centred Gram matrix: the unit of "relative" penalties
        self.scale = max(float(self.evals.sum()) / max(1, min(n - 1, d)), 1e-300)

    def loo_squared_errors(self, alphas: np.ndarray, max_elements: int = 2**24) -> np.ndarray:
        """(A, U) summed squared leave-one-out errors on the training rows, for every alpha.

        Exact for ridge with an unpenalised intercept given the (training-set) feature scaling:
        ``e_loo = (y - y_hat) / (1 - h)`` with ``h`` the hat-matrix diagonal, ``1/n + sum_k
        a_k r_k / (s_k + alpha)`` (Golub, Heath & Wahba 1979; scikit-learn's RidgeCV).
        """
        a_count, (k, u) = alphas.size, self.b.shape
        h = 1.0 / self.n + (self.a * self.right) @ (1.0 / (self.evals[:, None] + alphas[None, :]))  # (n, A)
        h = np.minimum(h, 1.0 - 1e-12)
        out = np.empty((a_count, u))
        step = max(1, max_elements // max(1, a_count * max(k, self.n)))
        for c in range(0, u, step):
            scaled = self.b[:, None, c:c + step] / (self.evals[:, None, None] + alphas[None, :, None])
            fit = (self.a @ scaled.reshape(k, -1)).reshape(self.n, a_count, -1)
            resid = (self.y_train[:, None, c:c + step] - self.y_mean[None, None, c:c + step] - fit)
            resid = resid / (1.0 - h)[:, :, None]
            out[:, c:c + step] = (resid * resid).sum(axis=0)
        return out

    def predict(self, alpha: float | np.ndarray) -> np.ndarray:
        """(m, U) predictions for one alpha, or one alpha per unit (``alpha`` of shape (U,))."""
        alpha = np.asarray(alpha, dtype=np.float64)
        b = self.b / (self.evals[:, None] + (alpha[None, :] if alpha.ndim else alpha))
        return self.a @ b + self.y_mean

    def squared_errors(self, alphas: np.ndarray, y_test: np.ndarray, max_elements: int = 2**24) -> np.ndarray:
        """(A, U) summed squared test errors for every alpha, in few large matrix products."""
        a_count, (k, u) = alphas.size, self.b.shape
        out = np.empty((a_count, u))
        step = max(1, max_elements // max(1, a_count * max(k, self.a.shape[0])))
        for c in range(0, u, step):
            b = self.b[:, c:c + step]
            scaled = b[:, None, :] / (self.evals[:, None, None] + alphas[None, :, None])  # (k, A, u)
            pred = (self.a @ scaled.reshape(k, -1)).reshape(self.a.shape[0], a_count, -1)
            resid = pred + self.y_mean[None, None, c:c + step] - y_test[:, None, c:c + step]
            out[:, c:c + step] = (resid * resid).sum(axis=0)
        return out


def ridge_path(
    x_train: np.ndarray | torch.Tensor,
    y_train: np.ndarray | torch.Tensor,
    x_test: np.ndarray | torch.Tensor,
    alphas: Sequence[float] | np.ndarray = DEFAULT_ALPHAS,
    *,
    standardize: bool = False,
) -> np.ndarray:
    """Ridge regression predictions for many penalties at once (closed form, one eigendecomposition).

    Solves ``min_W ||Yc - Xc W||^2 + alpha ||W||^2`` with ``Xc``, ``Yc`` centred on the training means
    (an unpenalised intercept), for every alpha, and predicts ``x_test``.

    Args:
        x_train: ``(n, D)`` training features.
        y_train: ``(n, U)`` training targets (no NaN).
        x_test: ``(m, D)`` features to predict.
        alphas: ``(A,)`` penalties, each > 0.
        standardize: also divide each feature by its training standard deviation.

    Returns:
        ``(A, m, U)`` float64 predictions.

    Example:
        >>> x = np.random.default_rng(0).normal(size=(20, 3)); y = x @ np.ones((3, 1))
        >>> bool(np.allclose(ridge_path(x, y, x, [1e-9])[0], y, atol=1e-6))
        True
    """
    xtr, ytr, xte = _as_array(x_train, "x_train"), _as_array(y_train, "y_train"), _as_array(x_test, "x_test")
    if ytr.ndim == 1:
        ytr = ytr[:, None]
    if xtr.ndim != 2 or xte.ndim != 2 or xtr.shape[1] != xte.shape[1] or ytr.shape[0] != xtr.shape[0]:
        raise ValueError(f"shapes do not fit: x_train {xtr.shape}, y_train {ytr.shape}, x_test {xte.shape}")
    alphas = _check_alphas(alphas)
    solver = _RidgeSolver(xtr, ytr, xte, standardize)
    return np.stack([solver.predict(a) for a in alphas])


def _check_alphas(alphas: object) -> np.ndarray:
    arr = np.atleast_1d(np.asarray(alphas, dtype=np.float64))
    if arr.ndim != 1 or arr.size == 0 or not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise ValueError(f"alphas must be a non-empty 1-D list of finite penalties > 0; got {alphas!r}")
    return arr


def _fold_ids(n: int, k: int, rng: np.random.Generator) -> np.ndarray:
    ids = np.empty(n, dtype=np.int64)
    ids[rng.permutation(n)] = np.arange(n) % k
    return ids


# ----------------------------------------------------------------------------------------------------
# noise ceiling
# ----------------------------------------------------------------------------------------------------

@dataclass
class NoiseCeiling:
    """Split-half noise ceiling of repeated measurements.

    Attributes:
        reliability: ``(U,)`` Spearman-Brown corrected split-half correlation per unit: the estimated
            correlation between two independent repetition-averaged measurements (of ``R`` repetitions
            each) - the reliability of the mean response.
        ceiling: ``(U,)`` ``sqrt(reliability)``: the expected Pearson r between a perfect model (the
            noise-free response) and the repetition-averaged response; NaN where reliability <= 0.
        mean: mean of ``ceiling`` over units where it is defined.
        ci: bootstrap confidence interval (over stimuli) of ``mean`` (percentiles re-centred on it).
        n_splits: random split-halves averaged.
        n_repetitions: repetitions per stimulus.
    """

    reliability: np.ndarray
    ceiling: np.ndarray
    mean: float
    ci: tuple[float, float]
    n_splits: int
    n_repetitions: int


def _split_halves(reps: np.ndarray, n_splits: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Half-means (S, N, U) of n_splits random partitions of the repetitions."""
    r = reps.shape[2]
    rng = np.random.default_rng([seed, 7919])
    h1, h2 = [], []
    with _quiet_nan():
        for _ in range(n_splits):
            perm = rng.permutation(r)
            h1.append(np.nanmean(reps[:, :, perm[: r // 2]], axis=2))
            h2.append(np.nanmean(reps[:, :, perm[r // 2:]], axis=2))
    return np.stack(h1), np.stack(h2)


_BOOT_SPLITS = 4
"""Split-halves used inside each bootstrap resample of the ceiling (the point estimate uses all)."""


def _spearman_brown(r: np.ndarray, factor: float = 2.0) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return factor * r / (1.0 + (factor - 1.0) * r)


def noise_ceiling(
    responses: np.ndarray | torch.Tensor,
    *,
    repetitions_axis: int | None = None,
    splits: int = 20,
    bootstrap: int = 1000,
    ci: float = 0.95,
    seed: int = 0,
) -> NoiseCeiling:
    """Split-half noise ceiling with the Spearman-Brown correction.

    For each of ``splits`` random partitions of the ``R`` repetitions into halves, the two half-means
    are correlated across stimuli per unit; the mean split-half r is stepped up to the full ``R``
    repetitions with Spearman-Brown, ``rel = 2 r / (1 + r)``, and the ceiling on a model's Pearson r
    with the repetition-averaged response is ``sqrt(rel)`` (for odd ``R`` the halves differ by one
    repetition and the factor 2 is approximate). NaN repetitions are ignored in the half-means;
    stimuli where a half has no valid repetition are left out for that unit.

    Args:
        responses: ``(N, U, R)`` (stimuli, units, repetitions), ``R >= 2``.
        repetitions_axis: axis of the repetitions (default 2).
        splits: random split-halves to average (the bootstrap resamples use the first 4 of them,
            which bounds their cost; the interval reflects the sampling of stimuli).
        bootstrap: resamples of stimuli for the confidence interval (0 = none).
        ci: confidence level.
        seed: seed of the splits and the bootstrap.

    Returns:
        :class:`NoiseCeiling`.

    Example:
        >>> rng = np.random.default_rng(0); s = rng.normal(size=(200, 3, 1))
        >>> nc = noise_ceiling(s + rng.normal(size=(200, 3, 4)), bootstrap=0)
        >>> round(nc.mean, 1)  # true value sqrt(1 / (1 + 1/4)) = 0.89
        0.9
    """
    _, reps = _check_responses(responses, None, repetitions_axis)
    if reps is None or reps.shape[2] < 2:
        raise ValueError("noise_ceiling needs responses (stimuli, units, repetitions) with >= 2 repetitions")
    if not isinstance(splits, int) or splits < 1:
        raise ValueError(f"splits must be an int >= 1; got {splits!r}")
    h1, h2 = _split_halves(reps, splits, seed)
    split_r = _split_pearson(h1, h2)
    reliability = _spearman_brown(_nanmean(split_r, axis=0))
    ceiling = np.sqrt(np.where(reliability > 0, reliability, np.nan))
    mean = float(_nanmean(ceiling)) if np.isfinite(ceiling).any() else math.nan
    interval = (math.nan, math.nan)
    if bootstrap:
        w = _bootstrap_weights(reps.shape[0], bootstrap, seed)
        boot = _boot_ceiling(h1[:_BOOT_SPLITS], h2[:_BOOT_SPLITS], w)
        # centre the resamples (first few splits) on the estimate from all splits
        shift = mean - float(_nanmean(_ceiling_of(h1[:_BOOT_SPLITS], h2[:_BOOT_SPLITS])))
        interval = _interval(_nanmean(boot, axis=1) + shift, ci, mean)
    return NoiseCeiling(reliability, ceiling, mean, interval, splits, reps.shape[2])


def _split_pearson(h1: np.ndarray, h2: np.ndarray, w: np.ndarray | None = None) -> np.ndarray:
    """Masked Pearson r of split half-means (S, N, U): (S, U), or (B, S, U) with weights (B, N)."""
    s, n, u = h1.shape
    flat = [h.transpose(1, 0, 2).reshape(n, s * u) for h in (h1, h2)]
    r = _masked_pearson(flat[0], flat[1], w)     # all splits in one matrix product
    return r.reshape(s, u) if w is None else r.reshape(-1, s, u)


def _ceiling_of(h1: np.ndarray, h2: np.ndarray) -> np.ndarray:
    """(U,) ceilings sqrt(Spearman-Brown(mean split-half r)) of split half-means (S, N, U)."""
    rel = _spearman_brown(_nanmean(_split_pearson(h1, h2), axis=0))
    return np.sqrt(np.where(rel > 0, rel, np.nan))


def _boot_ceiling(h1: np.ndarray, h2: np.ndarray, w: np.ndarray) -> np.ndarray:
    """(B, U) bootstrap ceilings from split half-means (S, N, U) and resample weights (B, N)."""
    rel = _spearman_brown(_nanmean(_split_pearson(h1, h2, w), axis=1))
    return np.sqrt(np.where(rel > 0, rel, np.nan))


# ----------------------------------------------------------------------------------------------------
# predictivity
# ----------------------------------------------------------------------------------------------------

@dataclass
class Predictivity:
    """Cross-validated ridge predictivity of one feature set for a set of units.

    Attributes:
        r: ``(U,)`` Pearson r per unit between held-out predictions and the (repetition-averaged)
            responses, computed within each outer fold and averaged over folds; NaN for units that
            could not be scored.
        r_folds: ``(folds, U)`` the per-fold values.
        mean, median: over scored units.
        ci: bootstrap interval (over stimuli) of ``mean``: percentiles of the resamples re-centred
            on ``mean`` (resampled correlations are biased low).
        alpha: ``(folds, U)`` penalty chosen by the inner cross-validation per outer fold and unit
            (a value of the ``alphas`` grid, in its ``alpha_units``).
        alpha_at_edge: fraction of those choices at the smallest or largest alpha of the grid (if
            large, widen the grid).
        ceiling: :class:`NoiseCeiling` when responses have repetitions, else None.
        normalized: ``(U,)`` ``r / ceiling`` per unit (None without repetitions).
        normalized_mean: ``mean(r) / mean(ceiling)`` over units where both are defined.
        normalized_ci: its bootstrap confidence interval (same resamples as ``ci``).
        n_stimuli, n_units: input sizes; n_units_scored: units with a defined r.
        n_nan: NaN response values masked (counted over repetitions when given);
        n_units_with_nan: units with at least one masked stimulus.
        predictions: ``(N, U)`` held-out predictions (NaN where masked).
        fold_of: ``(N,)`` outer fold of each stimulus.
    """

    r: np.ndarray
    r_folds: np.ndarray
    mean: float
    median: float
    ci: tuple[float, float]
    alpha: np.ndarray
    alpha_at_edge: float
    ceiling: NoiseCeiling | None
    normalized: np.ndarray | None
    normalized_mean: float
    normalized_ci: tuple[float, float]
    n_stimuli: int
    n_units: int
    n_units_scored: int
    n_nan: int
    n_units_with_nan: int
    predictions: np.ndarray = field(repr=False)
    fold_of: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0, dtype=np.int64))

    @property
    def ceiling_mean(self) -> float:
        """Mean noise ceiling (NaN without repetitions)."""
        return self.ceiling.mean if self.ceiling is not None else math.nan

    def summary(self) -> dict[str, float | int]:
        """Scalars of this result as a flat dict."""
        c = self.ceiling
        return {
            "predictivity_mean": self.mean, "predictivity_median": self.median,
            "predictivity_ci_low": self.ci[0], "predictivity_ci_high": self.ci[1],
            "ceiling_mean": c.mean if c else math.nan,
            "ceiling_ci_low": c.ci[0] if c else math.nan, "ceiling_ci_high": c.ci[1] if c else math.nan,
            "normalized_mean": self.normalized_mean,
            "normalized_ci_low": self.normalized_ci[0], "normalized_ci_high": self.normalized_ci[1],
            "n_stimuli": self.n_stimuli, "n_units": self.n_units, "n_units_scored": self.n_units_scored,
            "n_nan": self.n_nan, "n_units_with_nan": self.n_units_with_nan,
            "alpha_at_edge": self.alpha_at_edge,
        }


def _cv_predict(x: np.ndarray, y: np.ndarray, fold_of: np.ndarray, alphas: np.ndarray, inner_folds: int | None,
                alpha_per_unit: bool, standardize: bool, seed: int, relative: bool
                ) -> tuple[np.ndarray, np.ndarray]:
    """Held-out predictions (n, U) for complete data (no NaN) and chosen alphas (folds, U)."""
    folds = np.unique(fold_of)
    pred = np.empty_like(y)
    chosen = np.empty((int(fold_of.max()) + 1, y.shape[1]))
    for f in folds:
        test, train = fold_of == f, fold_of != f
        xtr, ytr = x[train], y[train]
        if inner_folds is None:     # exact leave-one-out, closed form
            solver = _RidgeSolver(xtr, ytr, None, standardize)
            sse = solver.loo_squared_errors(alphas * (solver.scale if relative else 1.0))
        else:
            inner_k = min(inner_folds, int(train.sum()))
            inner = _fold_ids(int(train.sum()), inner_k, np.random.default_rng([seed, int(f), 101]))
            sse = np.zeros((alphas.size, y.shape[1]))
            for g in range(inner_k):
                te, tr = inner == g, inner != g
                solver = _RidgeSolver(xtr[tr], ytr[tr], xtr[te], standardize)
                sse += solver.squared_errors(alphas * (solver.scale if relative else 1.0), ytr[te])
        if alpha_per_unit:
            best = np.argmin(sse, axis=0)
        else:
            var = ytr.var(axis=0)
            var[var <= 0] = 1.0
            best = np.full(y.shape[1], int(np.argmin((sse / var).sum(axis=1))))
        chosen[f] = alphas[best]
        solver = _RidgeSolver(xtr, ytr, x[test], standardize)
        pred[test] = solver.predict(alphas[best] * (solver.scale if relative else 1.0))
    return pred, chosen


def _fold_pearson(pred: np.ndarray, y: np.ndarray, fold_of: np.ndarray, folds: int,
                  weights: np.ndarray | None = None) -> np.ndarray:
    """Per-fold masked Pearson r of held-out predictions: (folds, U), or (folds, B, U) with weights."""
    out = []
    for f in range(folds):
        pf = np.where((fold_of == f)[:, None], pred, np.nan)
        out.append(_masked_pearson(pf, y, weights))
    return np.stack(out)


def predictivity(
    features: np.ndarray | torch.Tensor,
    responses: np.ndarray | torch.Tensor,
    *,
    alphas: Sequence[float] | np.ndarray = DEFAULT_ALPHAS,
    folds: int = 5,
    inner_folds: int | None = None,
    alpha_units: str = "relative",
    alpha_per_unit: bool = True,
    standardize: bool = False,
    seed: int = 0,
    repetitions_axis: int | None = None,
    ceiling_splits: int = 20,
    bootstrap: int = 1000,
    ci: float = 0.95,
) -> Predictivity:
    """Cross-validated ridge predictivity: how well a linear read-out of ``features`` predicts units.

    Stimuli are split into ``folds`` outer folds (seeded). For each, ridge regression is fit on the
    other folds and predicts the held-out stimuli; its penalty is chosen from ``alphas`` by an inner
    cross-validation on the training stimuli only (nested CV): exact leave-one-out in closed form
    (``inner_folds=None``, the default, as scikit-learn's ``RidgeCV``) or ``inner_folds``-fold. The
    choice is made separately for each unit by held-out squared error (``alpha_per_unit=True``) or
    shared by all units (minimum total variance-normalised error). Features are centred (and
    z-scored if ``standardize``) with training statistics; the intercept is not penalised. Every
    alpha is solved at once from one eigendecomposition (see :func:`ridge_path`). Each unit's score
    is the Pearson r between its held-out predictions and its (repetition-averaged) responses within
    each outer fold, averaged over folds (as Brain-Score). Correlating the predictions of all folds
    pooled together would be biased below zero when there is nothing to predict: each fold's model
    predicts near its training mean, which is anti-correlated with the held-out fold's mean.

    With repetitions (``(N, U, R)`` responses) the split-half noise ceiling is computed
    (:func:`noise_ceiling`) and ``normalized_mean = mean(r) / mean(ceiling)``; confidence intervals
    come from one bootstrap over stimuli shared by the score, the ceiling and their ratio.

    NaN responses are masked per unit: a unit is fit and scored on the stimuli where its mean
    response is defined (units with the same missing stimuli are solved together); ``n_nan`` and
    ``n_units_with_nan`` count them, and a unit with fewer than ``2 * folds`` (and 6) valid stimuli is
    left unscored (NaN).

    Args:
        features: ``(N, D)`` features of the ``N`` stimuli (e.g. one layer from :func:`activations`).
        responses: ``(N, U)`` or ``(N, U, R)`` responses of ``U`` units (``R`` repetitions).
        alphas: ridge penalties to choose from (> 0).
        alpha_units: ``"relative"`` (default): each alpha is multiplied by the mean eigenvalue of
            the (centred) training Gram matrix, which makes the grid independent of the scale of
            the activations; ``"absolute"``: used as given (as :func:`ridge_path`).
        folds: outer cross-validation folds (2 <= folds <= N).
        inner_folds: ``None`` (leave-one-out, closed form: one eigendecomposition per outer fold)
            or the number of inner folds (>= 2) for choosing alpha. The leave-one-out shortcut keeps
            the feature scaling of the whole training fold (exact when ``standardize=False``).
        alpha_per_unit: choose alpha per unit (default) or one alpha for all units.
        standardize: also z-score features with training-fold statistics (default: only centre).
            Off by default: it blows up features that are almost constant on the training stimuli
            (nearly dead ReLUs), whose held-out values then get huge weights; ridge on raw
            activations is the usual choice in the field.
        seed: seed of the folds, split-halves and bootstrap.
        repetitions_axis: axis of repetitions in 3-D responses (default 2).
        ceiling_splits: random split-halves averaged for the ceiling.
        bootstrap: resamples of stimuli for confidence intervals (0 = none).
        ci: confidence level of the intervals.

    Returns:
        :class:`Predictivity`.

    Example:
        >>> rng = np.random.default_rng(0); x = rng.normal(size=(100, 10))
        >>> y = x @ rng.normal(size=(10, 4)) + rng.normal(size=(100, 4))
        >>> predictivity(x, y, bootstrap=0).mean > 0.8
        True
    """
    x = _check_features(features)
    n = x.shape[0]
    y, reps = _check_responses(responses, n, repetitions_axis)
    alphas = _check_alphas(alphas)
    if alpha_units not in ("relative", "absolute"):
        raise ValueError(f"alpha_units must be 'relative' or 'absolute'; got {alpha_units!r}")
    if not isinstance(folds, int) or not 2 <= folds <= n:
        raise ValueError(f"folds must be an int with 2 <= folds <= number of stimuli ({n}); got {folds!r}")
    if inner_folds is not None and (not isinstance(inner_folds, int) or inner_folds < 2):
        raise ValueError(f"inner_folds must be None (leave-one-out) or an int >= 2; got {inner_folds!r}")
    if not isinstance(bootstrap, int) or bootstrap < 0:
        raise ValueError(f"bootstrap must be an int >= 0; got {bootstrap!r}")
    if not 0 < ci < 1:
        raise ValueError(f"ci must be in (0, 1); got {ci!r}")
    u = y.shape[1]
    n_nan = int(np.isnan(reps).sum()) if reps is not None else int(np.isnan(y).sum())
    valid = ~np.isnan(y)
    fold_of = _fold_ids(n, folds, np.random.default_rng([seed, 1]))
    pred = np.full((n, u), np.nan)
    chosen = np.full((folds, u), np.nan)
    patterns, group = np.unique(valid.T, axis=0, return_inverse=True)
    group = np.asarray(group).reshape(-1)
    min_valid = max(2 * folds, 6)
    for gi, pattern in enumerate(patterns):
        cols = np.flatnonzero(group == gi)
        rows = np.flatnonzero(pattern)
        sub_folds = fold_of[rows]
        if rows.size < min_valid or np.unique(sub_folds).size < 2:
            continue
        p, a = _cv_predict(x[rows], y[np.ix_(rows, cols)], sub_folds, alphas, inner_folds,
                           alpha_per_unit, standardize, seed, alpha_units == "relative")
        pred[np.ix_(rows, cols)] = p
        chosen[np.ix_(np.unique(sub_folds), cols)] = a[np.unique(sub_folds)]
    r_folds = _fold_pearson(pred, y, fold_of, folds)
    r = _nanmean(r_folds, axis=0)
    scored = np.isfinite(r)
    mean = float(r[scored].mean()) if scored.any() else math.nan
    median = float(np.median(r[scored])) if scored.any() else math.nan
    picked = chosen[np.isfinite(chosen)]
    at_edge = float(np.mean((picked == alphas.min()) | (picked == alphas.max()))) if alphas.size > 1 \
        and picked.size else 0.0

    nc = None
    normalized = None
    normalized_mean = math.nan
    interval = norm_interval = (math.nan, math.nan)
    if reps is not None and reps.shape[2] >= 2:
        nc = noise_ceiling(reps, splits=ceiling_splits, bootstrap=0, seed=seed)
        with np.errstate(invalid="ignore", divide="ignore"):
            normalized = r / nc.ceiling
        both = scored & np.isfinite(nc.ceiling)
        if both.any():
            normalized_mean = float(r[both].mean() / nc.ceiling[both].mean())
    if bootstrap:
        w = _bootstrap_weights(n, bootstrap, seed)
        boot_r = _nanmean(_fold_pearson(pred, y, fold_of, folds, w), axis=0)
        interval = _interval(_nanmean(boot_r, axis=1), ci, mean)
        if nc is not None:
            h1, h2 = _split_halves(reps, min(ceiling_splits, _BOOT_SPLITS), seed)
            boot_c = _boot_ceiling(h1, h2, w)
            # the resamples use the first few splits: centre them on the all-splits estimates
            few = _ceiling_of(h1, h2)
            nc.ci = _interval(_nanmean(boot_c, axis=1) + nc.mean - float(_nanmean(few)), ci, nc.mean)
            both = np.isfinite(boot_r) & np.isfinite(boot_c)
            with np.errstate(invalid="ignore", divide="ignore"):
                ratio = (np.where(both, boot_r, 0).sum(1) / np.where(both, boot_c, 0).sum(1))
            both_few = scored & np.isfinite(few)
            shift = normalized_mean - float(r[both_few].mean() / few[both_few].mean()) if both_few.any() else 0.0
            norm_interval = _interval(ratio + shift, ci, normalized_mean)
    return Predictivity(
        r=r, r_folds=r_folds, mean=mean, median=median, ci=interval, alpha=chosen, alpha_at_edge=at_edge, ceiling=nc,
        normalized=normalized, normalized_mean=normalized_mean, normalized_ci=norm_interval,
        n_stimuli=n, n_units=u, n_units_scored=int(scored.sum()), n_nan=n_nan,
        n_units_with_nan=int((~valid).any(axis=0).sum()), predictions=pred, fold_of=fold_of,
    )


# ----------------------------------------------------------------------------------------------------
# RSA
# ----------------------------------------------------------------------------------------------------

RDM_METRICS = ("correlation", "euclidean")
COMPARE_METHODS = ("spearman", "kendall_tau_a", "pearson")


def rdm(x: np.ndarray | torch.Tensor, metric: str = "correlation") -> np.ndarray:
    """Representational dissimilarity matrix of the rows (stimuli) of ``x``.

    Args:
        x: ``(N, D)`` features or responses of ``N`` stimuli. NaN entries (missing responses) are
            handled pairwise: each pair of stimuli uses the columns defined for both; Euclidean
            distances are then scaled by ``sqrt(D / D_pair)`` (as ``sklearn``'s ``nan_euclidean``).
        metric: ``"correlation"`` (``1 - Pearson r`` between the two response patterns, as
            ``scipy.spatial.distance.pdist(x, "correlation")``) or ``"euclidean"``.

    Returns:
        ``(N, N)`` symmetric float64 matrix with zeros on the diagonal.

    Example:
        >>> rdm(np.array([[1., 2, 3], [3, 2, 1], [2, 4, 6]])).round(3).tolist()
        [[0.0, 2.0, 0.0], [2.0, 0.0, 2.0], [0.0, 2.0, 0.0]]
    """
    if metric not in RDM_METRICS:
        raise ValueError(f"rdm metric must be one of {RDM_METRICS}; got {metric!r}")
    a = _as_array(x, "x")
    if a.ndim == 1:
        a = a[:, None]
    a = a.reshape(a.shape[0], -1)
    if np.isinf(a).any():
        raise ValueError("x contains inf values")
    nan = np.isnan(a)
    if not nan.any():
        if metric == "correlation":
            c = a - a.mean(axis=1, keepdims=True)
            norm = np.sqrt((c * c).sum(axis=1))
            with np.errstate(invalid="ignore", divide="ignore"):
                c = c / norm[:, None]
            d = 1.0 - c @ c.T
        else:
            sq = (a * a).sum(axis=1)
            d = np.sqrt(np.clip(sq[:, None] + sq[None, :] - 2.0 * a @ a.T, 0.0, None))
    else:  # pairwise-complete
        m = (~nan).astype(np.float64)
        a0 = np.where(nan, 0.0, a)
        sxy = a0 @ a0.T
        cnt = m @ m.T
        sx = a0 @ m.T            # sum of x_i over columns valid for j too
        sxx = (a0 * a0) @ m.T
        if metric == "correlation":
            with np.errstate(invalid="ignore", divide="ignore"):
                cov = sxy - sx * sx.T / cnt
                vx = sxx - sx * sx / cnt
                d = 1.0 - cov / np.sqrt(vx * vx.T)
        else:
            with np.errstate(invalid="ignore", divide="ignore"):
                d = np.sqrt(np.clip(sxx + sxx.T - 2.0 * sxy, 0.0, None) * a.shape[1] / cnt)
    d = 0.5 * (d + d.T)
    np.fill_diagonal(d, 0.0)
    return d


_rdm = rdm


def _rankdata(v: np.ndarray) -> np.ndarray:
    """Average ranks (1-based) of a 1-D array, ties sharing their mean rank."""
    order = np.argsort(v, kind="mergesort")
    sv = v[order]
    new = np.r_[True, sv[1:] != sv[:-1]]
    starts = np.flatnonzero(new)
    ends = np.r_[starts[1:], v.size]
    avg = (starts + ends + 1) / 2.0
    ranks = np.empty(v.size)
    ranks[order] = np.repeat(avg, ends - starts)
    return ranks


def _dense_ranks(m: np.ndarray, finite: np.ndarray) -> np.ndarray:
    """Dense integer ranks (0, 1, ...) of the finite entries of a matrix; -1 elsewhere."""
    out = np.full(m.shape, -1, dtype=np.int64)
    out[finite] = np.unique(m[finite], return_inverse=True)[1].reshape(-1)
    return out


def _ranks_from_dense(g: np.ndarray) -> np.ndarray:
    """Average ranks (1-based, ties averaged) of non-negative ints, by counting (no sort)."""
    counts = np.bincount(g)
    cum = np.cumsum(counts)
    return cum[g] - (counts[g] - 1) / 2.0


def _count_inversions(v: np.ndarray) -> int:
    """Number of pairs i < j with v[i] > v[j] for non-negative ints, O(n log max) via bitwise
    radix partitioning (vectorised: one pass per bit of the largest value)."""
    cur = np.asarray(v, dtype=np.int64).copy()
    n = cur.size
    if n < 2:
        return 0
    total = 0
    idx = np.arange(n)
    for b in range(int(cur.max()).bit_length() - 1, -1, -1):
        prefix = cur >> (b + 1)
        bit = (cur >> b) & 1
        new_group = np.r_[True, prefix[1:] != prefix[:-1]]
        starts = np.flatnonzero(new_group)
        gid = np.cumsum(new_group) - 1
        ones_incl = np.cumsum(bit)
        ones_excl = ones_incl - bit
        ones_before = ones_excl - ones_excl[starts][gid]       # ones earlier in the same group
        total += int(ones_before[bit == 0].sum())
        sizes = np.diff(np.r_[starts, n])
        ones_in = ones_incl[starts + sizes - 1] - ones_excl[starts]
        zeros_in = sizes - ones_in
        pos_in_group = idx - starts[gid]
        newpos = starts[gid] + np.where(bit == 0, pos_in_group - ones_before, zeros_in[gid] + ones_before)
        nxt = np.empty_like(cur)
        nxt[newpos] = cur
        cur = nxt
    return total


def _tie_pairs(v: np.ndarray) -> int:
    _, counts = np.unique(v, return_counts=True)
    return int((counts * (counts - 1) // 2).sum())


def kendall_tau_a(x: np.ndarray, y: np.ndarray) -> float:
    """Kendall's tau-a: (concordant - discordant pairs) / (n (n - 1) / 2), ties counting as neither.

    Unlike tau-b (``scipy.stats.kendalltau``'s default), tied pairs are not removed from the
    denominator, so a model that predicts ties is not rewarded (Nili et al. 2014). Equal to tau-b when
    neither input has ties. Runs in ``O(n log n)``.

    Example:
        >>> kendall_tau_a(np.array([1, 2, 3, 4]), np.array([1, 3, 2, 4]))
        0.6666666666666666
    """
    x = np.asarray(x, dtype=np.float64).ravel()
    y = np.asarray(y, dtype=np.float64).ravel()
    if x.size != y.size:
        raise ValueError(f"x and y must have the same length; got {x.size} and {y.size}")
    n = x.size
    if n < 2:
        return math.nan
    order = np.lexsort((y, x))          # by x, ties in x by y (so x-ties add no inversions)
    xs, ys = x[order], y[order]
    y_rank = np.unique(ys, return_inverse=True)[1].reshape(-1)
    dis = _count_inversions(y_rank)
    tot = n * (n - 1) // 2
    x_ties = _tie_pairs(xs)
    y_ties = _tie_pairs(ys)
    xy = np.unique(np.stack([xs, ys], axis=1), axis=0, return_counts=True)[1]
    both_ties = int((xy * (xy - 1) // 2).sum())
    con_minus_dis = tot - x_ties - y_ties + both_ties - 2 * dis
    return con_minus_dis / tot


def compare_rdms(a: np.ndarray, b: np.ndarray, method: str = "spearman") -> float:
    """Compare two RDMs (or their upper-triangle vectors) by Spearman, Kendall tau-a or Pearson.

    Args:
        a, b: ``(N, N)`` matrices (their strict upper triangles are used) or equal-length vectors.
        method: ``"spearman"``, ``"kendall_tau_a"`` or ``"pearson"``.

    Example:
        >>> d = rdm(np.random.default_rng(0).normal(size=(6, 4)))
        >>> compare_rdms(d, 2 * d + 1)
        1.0
    """
    if method not in COMPARE_METHODS:
        raise ValueError(f"compare must be one of {COMPARE_METHODS}; got {method!r}")
    va, vb = (_upper(np.asarray(m, dtype=np.float64)) for m in (a, b))
    if va.size != vb.size:
        raise ValueError(f"RDMs differ in size: {va.size} vs {vb.size} entries")
    ok = np.isfinite(va) & np.isfinite(vb)
    va, vb = va[ok], vb[ok]
    if va.size < 2:
        return math.nan
    if method == "kendall_tau_a":
        return float(kendall_tau_a(va, vb))
    if method == "spearman":
        va, vb = _rankdata(va), _rankdata(vb)
    return _pearson_vec(va, vb)


def _pearson_vec(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson r of two finite vectors (NaN if either is constant)."""
    a = a - a.mean()
    b = b - b.mean()
    den = math.sqrt(float((a * a).sum()) * float((b * b).sum()))
    return float(np.clip((a * b).sum() / den, -1.0, 1.0)) if den > 0 else math.nan


def _upper(m: np.ndarray) -> np.ndarray:
    if m.ndim == 2 and m.shape[0] == m.shape[1]:
        return m[np.triu_indices(m.shape[0], k=1)]
    if m.ndim == 1:
        return m
    raise ValueError(f"expected a square RDM or a vector; got shape {m.shape}")


@dataclass
class RSAResult:
    """Representational similarity of features and responses.

    Attributes:
        score: RDM correlation (``compare``) over all stimulus pairs.
        ci: bootstrap confidence interval over stimuli (NaN without bootstrap).
        bootstrap_scores: ``(B,)`` the resampled scores.
        rdm_metric, compare: the options used.
        n_stimuli: stimuli compared; n_nan: NaN response values masked (pairwise).
    """

    score: float
    ci: tuple[float, float]
    bootstrap_scores: np.ndarray = field(repr=False)
    rdm_metric: str = "correlation"
    compare: str = "spearman"
    n_stimuli: int = 0
    n_nan: int = 0


def rsa(
    features: np.ndarray | torch.Tensor,
    responses: np.ndarray | torch.Tensor,
    *,
    rdm: str = "correlation",
    compare: str = "spearman",
    bootstrap: int = 1000,
    ci: float = 0.95,
    seed: int = 0,
    repetitions_axis: int | None = None,
) -> RSAResult:
    """Representational similarity analysis: correlate the stimulus RDMs of features and responses.

    Both RDMs are built with ``rdm`` (responses averaged over repetitions first; NaN handled
    pairwise, see :func:`rdm`) and their strict upper triangles compared with ``compare``. The
    bootstrap resamples stimuli with replacement and indexes both RDMs; pairs made of two copies of
    the same stimulus (distance 0 by construction) are excluded, as in the RSA toolbox (Nili et al.
    2014).

    Args:
        features: ``(N, D)`` features.
        responses: ``(N, U)`` or ``(N, U, R)`` responses.
        rdm: RDM distance, ``"correlation"`` (1 - Pearson r) or ``"euclidean"`` (see :func:`rdm`).
        compare: ``"spearman"`` (default), ``"kendall_tau_a"`` or ``"pearson"``.
        bootstrap: resamples of stimuli for the confidence interval (0 = none).
        ci: confidence level.
        seed: bootstrap seed.
        repetitions_axis: axis of repetitions in 3-D responses (default 2).

    Returns:
        :class:`RSAResult`.

    Example:
        >>> x = np.random.default_rng(0).normal(size=(30, 8))
        >>> rsa(x, x @ np.random.default_rng(1).normal(size=(8, 50)), rdm="euclidean", bootstrap=0).score > 0.8
        True
    """
    rdm_metric = rdm
    if rdm_metric not in RDM_METRICS:
        raise ValueError(f"rdm must be one of {RDM_METRICS}; got {rdm_metric!r}")
    if compare not in COMPARE_METHODS:
        raise ValueError(f"compare must be one of {COMPARE_METHODS}; got {compare!r}")
    if not isinstance(bootstrap, int) or bootstrap < 0:
        raise ValueError(f"bootstrap must be an int >= 0; got {bootstrap!r}")
    x = _check_features(features)
    y, reps = _check_responses(responses, x.shape[0], repetitions_axis)
    n_nan = int(np.isnan(reps).sum()) if reps is not None else int(np.isnan(y).sum())
    da, db = _rdm(x, rdm_metric), _rdm(y, rdm_metric)
    score = compare_rdms(da, db, compare)
    n = x.shape[0]
    boots = np.full(bootstrap, np.nan)
    rng = np.random.default_rng([seed, 31])
    iu, ju = np.triu_indices(n, k=1)
    finite = np.isfinite(da) & np.isfinite(db)
    if compare != "pearson":
        # Dense integer ranks of every entry, computed once: a resample's ranks then come from counts
        # (O(pairs)) instead of a sort, and its ties are exactly the ties among the original values.
        da, db = _dense_ranks(da, finite), _dense_ranks(db, finite)
    for i in range(bootstrap):
        idx = np.sort(rng.integers(0, n, size=n))
        ii, jj = idx[iu], idx[ju]
        keep = (ii != jj) & finite[ii, jj]  # copies of one stimulus are not a pair
        ii, jj = ii[keep], jj[keep]
        a, b = da[ii, jj], db[ii, jj]
        if a.size < 2:
            continue
        if compare == "spearman":
            boots[i] = _pearson_vec(_ranks_from_dense(a), _ranks_from_dense(b))
        elif compare == "kendall_tau_a":
            boots[i] = kendall_tau_a(a, b)
        else:
            boots[i] = _pearson_vec(a, b)
    interval = _interval(boots, ci, score) if bootstrap else (math.nan, math.nan)
    return RSAResult(score=score, ci=interval, bootstrap_scores=boots, rdm_metric=rdm_metric,
                     compare=compare, n_stimuli=n, n_nan=n_nan)


# ----------------------------------------------------------------------------------------------------
# permutation test
# ----------------------------------------------------------------------------------------------------

@dataclass
class PermutationResult:
    """A score and its null distribution under shuffled stimulus labels.

    Attributes:
        observed: the score of the intact data (mean r for predictivity, the RDM correlation for RSA).
        null: ``(n_permutations,)`` scores with the responses' stimuli permuted.
        p_value: ``(1 + #{null >= observed}) / (1 + n_permutations)`` (one-sided, never 0).
        metric: ``"predictivity"`` or ``"rsa"``.
    """

    observed: float
    null: np.ndarray = field(repr=False)
    p_value: float = math.nan
    metric: str = "predictivity"


def permutation_test(
    features: np.ndarray | torch.Tensor,
    responses: np.ndarray | torch.Tensor,
    *,
    metric: str = "predictivity",
    n_permutations: int = 100,
    seed: int = 0,
    **options: Any,
) -> PermutationResult:
    """Is a score above chance? Recompute it with the stimuli of the responses shuffled.

    The bootstrap intervals of :func:`predictivity` are conditional on the fitted predictions and
    too narrow under the null; this test refits everything for each permutation (``n_permutations``
    times the cost of one call), which is the valid comparison with chance (for RSA it is the RSA
    toolbox's stimulus-label randomisation test).

    Args:
        features: ``(N, D)``.
        responses: ``(N, U)`` or ``(N, U, R)``.
        metric: ``"predictivity"`` or ``"rsa"``.
        n_permutations: shuffles.
        seed: seed of the shuffles (and of the folds inside each call).
        **options: passed to :func:`predictivity` or :func:`rsa` (``bootstrap`` is set to 0).

    Returns:
        :class:`PermutationResult`.

    Example:
        >>> rng = np.random.default_rng(0); x = rng.normal(size=(60, 5))
        >>> permutation_test(x, x @ rng.normal(size=(5, 3)), n_permutations=19).p_value
        0.05
    """
    if metric not in ("predictivity", "rsa"):
        raise ValueError(f"metric must be 'predictivity' or 'rsa'; got {metric!r}")
    if not isinstance(n_permutations, int) or n_permutations < 1:
        raise ValueError(f"n_permutations must be an int >= 1; got {n_permutations!r}")
    x = _check_features(features)
    y = _as_array(responses, "responses")
    if y.shape[0] != x.shape[0]:
        raise ValueError(f"features have {x.shape[0]} stimuli (rows) but responses have {y.shape[0]}; "
                         "row i of both must be the same stimulus")
    opts = {**options, "bootstrap": 0, "seed": seed}

    def score(resp: np.ndarray) -> float:
        if metric == "predictivity":
            return predictivity(x, resp, **opts).mean
        return rsa(x, resp, **opts).score

    observed = score(y)
    rng = np.random.default_rng([seed, 4242])
    null = np.array([score(y[rng.permutation(y.shape[0])]) for _ in range(n_permutations)])
    p = (1 + int(np.sum(null >= observed))) / (1 + n_permutations)
    return PermutationResult(observed=observed, null=null, p_value=p, metric=metric)


# ----------------------------------------------------------------------------------------------------
# synthetic brain
# ----------------------------------------------------------------------------------------------------

@dataclass
class SyntheticBrain:
    """Simulated recordings: noisy linear read-outs of known features.

    Attributes:
        responses: ``(N, U, R)`` simulated responses (signal + independent Gaussian noise per repetition).
        signal: ``(N, U)`` noise-free responses (each unit z-scored across stimuli).
        weights: ``(D, U)`` read-out weights (applied to the centred, or z-scored, features).
        ceiling: the true ceiling ``sqrt(1 / (1 + sigma^2 / R))`` (expected r between the signal and
            the repetition-averaged response), the same for every unit.
        noise_sd: per-repetition noise standard deviation ``sigma`` (signal variance is 1).
    """

    responses: np.ndarray
    signal: np.ndarray
    weights: np.ndarray
    ceiling: float
    noise_sd: float


def synthetic_responses(
    features: np.ndarray | torch.Tensor,
    *,
    n_units: int = 50,
    repetitions: int = 4,
    ceiling: float = 0.8,
    sparsity: float = 1.0,
    standardize: bool = False,
    seed: int = 0,
) -> SyntheticBrain:
    """A synthetic "brain": units that are noisy linear read-outs of ``features``.

    Each unit's signal is ``c(X) w`` with ``c`` the per-feature centring (or z-scoring, with
    ``standardize=True``) and ``w`` Gaussian (a fraction
    ``sparsity`` of the weights non-zero), rescaled to unit variance across stimuli; each repetition
    adds independent Gaussian noise of standard deviation ``sigma = sqrt(R (1/ceiling^2 - 1))``, so
    that the Pearson r between the signal and the mean of ``R`` repetitions is ``ceiling`` in
    expectation. Use it to check that the tools rank the source layer first and recover ``ceiling``.
    With centred features the units' Euclidean geometry follows the layer's (a Gaussian read-out
    preserves distances approximately), so RSA with Euclidean RDMs can find the layer as well.

    Args:
        features: ``(N, D)`` features (e.g. one layer of a known network).
        n_units: simulated units.
        repetitions: repetitions per stimulus (>= 1; >= 2 to have a noise ceiling).
        ceiling: target noise ceiling in (0, 1].
        sparsity: fraction of non-zero read-out weights per unit in (0, 1].
        standardize: z-score the features before the read-out (default: only centre them).
        seed: seed of weights and noise.

    Example:
        >>> sim = synthetic_responses(np.random.default_rng(0).normal(size=(50, 10)), n_units=3, seed=0)
        >>> sim.responses.shape, round(sim.ceiling, 2)
        ((50, 3, 4), 0.8)
    """
    x = _check_features(features)
    if not isinstance(n_units, int) or n_units < 1:
        raise ValueError(f"n_units must be an int >= 1; got {n_units!r}")
    if not isinstance(repetitions, int) or repetitions < 1:
        raise ValueError(f"repetitions must be an int >= 1; got {repetitions!r}")
    if not 0 < ceiling <= 1:
        raise ValueError(f"ceiling must be in (0, 1]; got {ceiling!r}")
    if not 0 < sparsity <= 1:
        raise ValueError(f"sparsity must be in (0, 1]; got {sparsity!r}")
    rng = np.random.default_rng(seed)
    z, _ = _standardize(x, x[:1], standardize)
    w = rng.normal(size=(x.shape[1], n_units))
    if sparsity < 1:
        w *= rng.random(size=w.shape) < sparsity
    s = z @ w
    s = s - s.mean(axis=0)
    sd = s.std(axis=0)
    sd[sd == 0] = 1.0
    s = s / sd
    noise_sd = math.sqrt(repetitions * (1.0 / ceiling**2 - 1.0))
    resp = s[:, :, None] + noise_sd * rng.normal(size=(*s.shape, repetitions))
    return SyntheticBrain(resp, s, w / sd, float(ceiling), noise_sd)


# ----------------------------------------------------------------------------------------------------
# tables and plots
# ----------------------------------------------------------------------------------------------------

@dataclass
class LayerScore:
    """One row of :class:`NeuralResults`: the scores of one layer of one model."""

    model: str
    layer: str
    depth: int
    n_features: int
    predictivity: float = math.nan
    predictivity_median: float = math.nan
    predictivity_ci_low: float = math.nan
    predictivity_ci_high: float = math.nan
    ceiling: float = math.nan
    ceiling_ci_low: float = math.nan
    ceiling_ci_high: float = math.nan
    normalized: float = math.nan
    normalized_ci_low: float = math.nan
    normalized_ci_high: float = math.nan
    rsa: float = math.nan
    rsa_ci_low: float = math.nan
    rsa_ci_high: float = math.nan
    n_stimuli: int = 0
    n_units: int = 0
    n_units_scored: int = 0
    n_nan: int = 0


_METRICS = {"predictivity": "predictivity (mean held-out r)", "normalized": "ceiling-normalised predictivity",
            "rsa": "RSA (RDM correlation)"}


@dataclass
class NeuralResults:
    """Per-layer, per-model scores, with export to dicts, JSON, CSV and a plot.

    Example:
        >>> res = NeuralResults([LayerScore("a", "conv1", 0, 10, predictivity=0.3)])
        >>> res.to_dicts()[0]["predictivity"]
        0.3
    """

    rows: list[LayerScore] = field(default_factory=list)

    def __add__(self, other: NeuralResults) -> NeuralResults:
        return NeuralResults(self.rows + other.rows)

    def to_dicts(self) -> list[dict[str, Any]]:
        """Rows as plain dicts (NaN kept as float NaN)."""
        return [asdict(r) for r in self.rows]

    def best(self, metric: str = "predictivity") -> dict[str, str]:
        """The best-scoring layer per model: ``{model: layer}``."""
        out: dict[str, tuple[str, float]] = {}
        for r in self.rows:
            v = getattr(r, metric)
            if math.isfinite(v) and (r.model not in out or v > out[r.model][1]):
                out[r.model] = (r.layer, v)
        return {m: lv[0] for m, lv in out.items()}

    def to_json(self, path: str | os.PathLike[str] | None = None) -> str:
        """JSON text (NaN written as null); written atomically to ``path`` if given."""
        rows = [{k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()}
                for d in self.to_dicts()]
        text = json.dumps({"rows": rows}, indent=2)
        if path is not None:
            atomic_write_text(Path(path), text + "\n")
        return text

    def to_csv(self, path: str | os.PathLike[str] | None = None) -> str:
        """CSV text, one row per (model, layer); written atomically to ``path`` if given."""
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=[f.name for f in fields(LayerScore)], lineterminator="\n")
        writer.writeheader()
        for d in self.to_dicts():
            writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in d.items()})
        if path is not None:
            atomic_write_text(Path(path), buf.getvalue())
        return buf.getvalue()

    def plot(self, path: str | os.PathLike[str] | None = None, metric: str = "predictivity",
             title: str | None = None) -> Any:
        """Score against layer depth, one line per model, with CI error bars.

        Args:
            path: PNG (or any matplotlib format) written atomically if given.
            metric: ``"predictivity"``, ``"normalized"`` or ``"rsa"``.
            title: figure title.

        Returns:
            The matplotlib ``Figure`` (Agg backend).
        """
        if metric not in _METRICS:
            raise ValueError(f"metric must be one of {tuple(_METRICS)}; got {metric!r}")
        import matplotlib
        matplotlib.use("Agg", force=False)
        from matplotlib.figure import Figure

        fig = Figure(figsize=(6.4, 4.0), dpi=100)
        ax = fig.add_subplot(1, 1, 1)
        models = list(dict.fromkeys(r.model for r in self.rows))
        layer_sets = {tuple(r.layer for r in self.rows if r.model == m) for m in models}
        for m in models:
            rows = sorted((r for r in self.rows if r.model == m), key=lambda r: r.depth)
            xs = [r.depth for r in rows]
            ys = np.array([getattr(r, metric) for r in rows])
            lo = np.array([getattr(r, f"{metric}_ci_low") for r in rows])
            hi = np.array([getattr(r, f"{metric}_ci_high") for r in rows])
            err = np.vstack([ys - lo, hi - ys])
            err = np.where(np.isfinite(err), err, 0.0)
            ax.errorbar(xs, ys, yerr=err, marker="o", capsize=3, label=m)
        if metric == "predictivity":
            ceil = [r.ceiling for r in self.rows if math.isfinite(r.ceiling)]
            if ceil:
                ax.axhline(float(np.mean(ceil)), color="grey", linestyle="--", linewidth=1,
                           label="noise ceiling")
        if len(layer_sets) == 1 and self.rows:
            names = sorted({(r.depth, r.layer) for r in self.rows})
            ax.set_xticks([d for d, _ in names])
            ax.set_xticklabels([n for _, n in names], rotation=30, ha="right")
            ax.set_xlabel("layer")
        else:
            ax.set_xlabel("layer depth (index in the layer list)")
        ax.set_ylabel(_METRICS[metric])
        values = [getattr(r, f"{metric}_ci_low") for r in self.rows] + [getattr(r, metric) for r in self.rows]
        finite = [v for v in values if math.isfinite(v)]
        if finite and min(finite) < 0.15:   # show chance level when scores come near it
            ax.axhline(0.0, color="black", linewidth=0.5)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        if title:
            ax.set_title(title)
        fig.tight_layout()
        if path is not None:
            atomic_savefig(fig, path)
        return fig


def score_layers(
    features: Mapping[str, np.ndarray | torch.Tensor],
    responses: np.ndarray | torch.Tensor,
    *,
    model: str = "model",
    metrics: Sequence[str] = ("predictivity", "rsa"),
    seed: int = 0,
    predictivity_options: Mapping[str, Any] | None = None,
    rsa_options: Mapping[str, Any] | None = None,
) -> NeuralResults:
    """Score every layer of one model: :func:`predictivity` and/or :func:`rsa` per layer.

    Args:
        features: ``{layer: (N, D)}`` in depth order (as :func:`activations` returns).
        responses: ``(N, U)`` or ``(N, U, R)``.
        model: name of the model (or training regime) in the table.
        metrics: any of ``"predictivity"``, ``"rsa"``.
        seed: seed passed to both (same folds and resamples for every layer and model).
        predictivity_options, rsa_options: extra keyword arguments.

    Returns:
        :class:`NeuralResults` with one row per layer.

    Example:
        >>> rng = np.random.default_rng(0); f = {"a": rng.normal(size=(40, 5)), "b": rng.normal(size=(40, 5))}
        >>> res = score_layers(f, f["a"] @ rng.normal(size=(5, 3)), metrics=["rsa"],
        ...                    rsa_options={"bootstrap": 0})
        >>> res.best("rsa")
        {'model': 'a'}
    """
    bad = [m for m in metrics if m not in ("predictivity", "rsa")]
    if bad or not metrics:
        raise ValueError("metrics must be a non-empty subset of ('predictivity', 'rsa'); "
                         f"got {list(metrics)!r}")
    if not isinstance(features, Mapping) or not features:
        raise TypeError("features must be a non-empty mapping {layer name: (N, D) features}")
    popt = dict(predictivity_options or {})
    ropt = dict(rsa_options or {})
    rows = []
    for depth, (layer, feats) in enumerate(features.items()):
        x = _check_features(feats)
        row = LayerScore(model=model, layer=layer, depth=depth, n_features=x.shape[1], n_stimuli=x.shape[0])
        if "predictivity" in metrics:
            p = predictivity(x, responses, seed=seed, **popt)
            row.predictivity, row.predictivity_median = p.mean, p.median
            row.predictivity_ci_low, row.predictivity_ci_high = p.ci
            row.normalized = p.normalized_mean
            row.normalized_ci_low, row.normalized_ci_high = p.normalized_ci
            if p.ceiling is not None:
                row.ceiling = p.ceiling.mean
                row.ceiling_ci_low, row.ceiling_ci_high = p.ceiling.ci
            row.n_units, row.n_units_scored, row.n_nan = p.n_units, p.n_units_scored, p.n_nan
        if "rsa" in metrics:
            s = rsa(x, responses, seed=seed, **ropt)
            row.rsa = s.score
            row.rsa_ci_low, row.rsa_ci_high = s.ci
            row.n_nan = s.n_nan
            if not row.n_units:
                y = _as_array(responses, "responses")
                row.n_units = int(y.shape[1]) if y.ndim > 1 else 1
        rows.append(row)
    return NeuralResults(rows)


def compare_models(
    models: Mapping[str, nn.Module],
    images: torch.Tensor,
    responses: np.ndarray | torch.Tensor,
    layers: str | Sequence[str] | Mapping[str, Sequence[str]],
    *,
    metrics: Sequence[str] = ("predictivity", "rsa"),
    batch_size: int = 64,
    pool: str | int | None = None,
    project: int | None = None,
    cache: str | os.PathLike[str] | None = None,
    device: str | torch.device | None = None,
    seed: int = 0,
    predictivity_options: Mapping[str, Any] | None = None,
    rsa_options: Mapping[str, Any] | None = None,
) -> NeuralResults:
    """Extract the given layers of several models and score them all against one set of responses.

    Args:
        models: ``{name: model}``, e.g. ``{"standard": m0, "weak": m1, "strong": m2}``.
        images: ``(N, C, H, W)`` preprocessed stimuli, row ``i`` = row ``i`` of ``responses``.
        responses: ``(N, U)`` or ``(N, U, R)``.
        layers: layer names shared by all models, or ``{model name: [layers]}``.
        metrics, seed, predictivity_options, rsa_options: see :func:`score_layers`.
        batch_size, pool, project, cache, device: see :func:`activations`.

    Returns:
        :class:`NeuralResults`, one row per (model, layer); ``.plot()`` draws one line per model.
    """
    results = NeuralResults()
    for name, model in models.items():
        names = layers[name] if isinstance(layers, Mapping) else layers
        feats = activations(model, images, names, batch_size=batch_size, pool=pool, project=project,
                            seed=seed, cache=cache, device=device)
        results = results + score_layers(feats, responses, model=name, metrics=metrics, seed=seed,
                                         predictivity_options=predictivity_options, rsa_options=rsa_options)
    return results
