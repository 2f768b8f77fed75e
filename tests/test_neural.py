"""Tests of blurkit.neural: activations, ridge predictivity, noise ceiling, RSA, tables, CLI.

Independent references: numpy closed-form ridge (np.linalg.solve), numpy Pearson (np.corrcoef),
scipy.spatial.distance.pdist, scipy.stats.spearmanr / kendalltau, a direct O(n^2) Kendall tau-a,
plain torch forward passes; and simulations with known ground truth (synthetic brains).
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.spatial.distance import pdist, squareform
from scipy.stats import kendalltau, spearmanr
from torch import nn

from blurkit import neural as nu

FMNIST = Path("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz")


def small_cnn(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
        nn.Linear(128, 32),
    )


def stimuli(n: int) -> torch.Tensor:
    if FMNIST.is_file():
        with gzip.open(FMNIST, "rb") as f:
            data = np.frombuffer(f.read(), dtype=np.uint8, offset=16).reshape(-1, 28, 28)
        return torch.from_numpy(data[:n].astype(np.float32) / 255.0)[:, None]
    gen = torch.Generator().manual_seed(0)  # fallback: smooth random images
    x = torch.rand(n, 1, 7, 7, generator=gen)
    return nn.functional.interpolate(x, size=(28, 28), mode="bilinear", align_corners=False)


# --------------------------------------------------------------------------------------------- activations

def test_activations_match_plain_forward_and_pooling():
    net = small_cnn()
    x = stimuli(10)
    feats = nu.activations(net, x, ["1", "4", "10"], batch_size=3)
    with torch.no_grad():
        a1 = net[:2](x)
        a4 = net[:5](x)
        out = net(x)
    assert torch.allclose(feats["1"], a1.flatten(1), atol=1e-6)
    assert torch.allclose(feats["4"], a4.flatten(1), atol=1e-6)
    assert torch.allclose(feats["10"], out, atol=1e-6)
    assert list(feats) == ["1", "4", "10"]
    pooled = nu.activations(net, x, ["4"], pool="avg")["4"]
    assert torch.allclose(pooled, a4.mean(dim=(2, 3)), atol=1e-6)
    assert torch.allclose(nu.activations(net, x, ["4"], pool="max")["4"], a4.amax(dim=(2, 3)))
    grid = nu.activations(net, x, ["4"], pool=2)["4"]   # 14x14 map -> 2x2 grid of 7x7 means
    ref = a4.reshape(10, 16, 2, 7, 2, 7).mean(dim=(3, 5)).flatten(1)
    assert torch.allclose(grid, ref, atol=1e-6)
    assert net.training  # training flag restored


def test_activations_survive_inplace_relu():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(inplace=True), nn.Flatten())
    x = stimuli(4)
    feats = nu.activations(net, x, ["0", "1"])
    with torch.no_grad():
        ref = net[0](x)
    assert torch.allclose(feats["0"], ref.flatten(1), atol=1e-6) and feats["0"].min() < 0
    assert torch.allclose(feats["1"], ref.clamp(min=0).flatten(1), atol=1e-6)


def test_activations_projection_is_seeded_and_preserves_distances():
    net = small_cnn()
    x = stimuli(12)
    full = nu.activations(net, x, ["4"])["4"].double()  # 16 * 14 * 14 = 3136 features
    p1 = nu.activations(net, x, ["4"], project=2000, seed=3)["4"].double()
    p2 = nu.activations(net, x, ["4"], project=2000, seed=3)["4"].double()
    p3 = nu.activations(net, x, ["4"], project=2000, seed=4)["4"].double()
    assert p1.shape == (12, 2000)
    assert torch.equal(p1, p2) and not torch.equal(p1, p3)
    d_full, d_proj = pdist(full.numpy()), pdist(p1.numpy())
    assert np.max(np.abs(d_proj / d_full - 1)) < 0.15   # Johnson-Lindenstrauss, k = 2000
    small = nu.activations(net, x, ["10"], project=2000)["10"]   # 32 <= 2000 features: unchanged
    assert small.shape == (12, 32)


def test_activations_cache_roundtrip(tmp_path):
    net = small_cnn()
    x = stimuli(6)
    a = nu.activations(net, x, ["4"], pool=2, cache=tmp_path)
    files = list(tmp_path.glob("*.pt"))
    assert len(files) == 1 and not list(tmp_path.glob(".*tmp"))
    # a cached result is loaded, not recomputed: a hook that would fail proves it
    handle = net[4].register_forward_hook(lambda *a: (_ for _ in ()).throw(RuntimeError("recomputed")))
    b = nu.activations(net, x, ["4"], pool=2, cache=tmp_path)
    handle.remove()
    assert torch.equal(a["4"], b["4"])
    with torch.no_grad():
        net[0].weight.add_(1.0)       # other weights -> other key
    nu.activations(net, x, ["4"], pool=2, cache=tmp_path)
    nu.activations(net, x, ["4"], pool=1, cache=tmp_path)  # other options -> other key
    assert len(list(tmp_path.glob("*.pt"))) == 3


def test_activations_bad_input():
    net = small_cnn()
    with pytest.raises(ValueError, match=r"unknown layer name\(s\) 'conv9'.*valid names.*0, 1, 2"):
        nu.activations(net, stimuli(2), ["conv9"])
    with pytest.raises(ValueError, match="pool"):
        nu.activations(net, stimuli(2), ["1"], pool="median")
    with pytest.raises(ValueError, match="project"):
        nu.activations(net, stimuli(2), ["1"], project=0)
    assert nu.layer_names(net)[:3] == ["0", "1", "2"]


# --------------------------------------------------------------------------------------------- ridge

def _ridge_numpy(xtr, ytr, xte, alpha):
    mu, ym = xtr.mean(0), ytr.mean(0)
    xc = xtr - mu
    w = np.linalg.solve(xc.T @ xc + alpha * np.eye(xc.shape[1]), xc.T @ (ytr - ym))
    return (xte - mu) @ w + ym


@pytest.mark.parametrize("d", [7, 60])          # primal (D <= n) and dual (D > n) forms
def test_ridge_path_matches_closed_form_numpy(d):
    rng = np.random.default_rng(d)
    xtr, xte = rng.normal(size=(40, d)) * 3 + 1, rng.normal(size=(9, d))
    ytr = rng.normal(size=(40, 3))
    alphas = [1e-2, 1.0, 30.0, 1e4]
    got = nu.ridge_path(xtr, ytr, xte, alphas)
    for i, a in enumerate(alphas):
        np.testing.assert_allclose(got[i], _ridge_numpy(xtr, ytr, xte, a), rtol=1e-7, atol=1e-9)
    # standardize=True equals ridge on features z-scored with training statistics
    sd = xtr.std(0)
    got = nu.ridge_path(xtr, ytr, xte, [3.0], standardize=True)[0]
    ref = _ridge_numpy((xtr - xtr.mean(0)) / sd, ytr, (xte - xtr.mean(0)) / sd, 3.0)
    np.testing.assert_allclose(got, ref, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("d", [5, 40])
def test_closed_form_leave_one_out_matches_brute_force(d):
    rng = np.random.default_rng(10 + d)
    x, y = rng.normal(size=(25, d)), rng.normal(size=(25, 2))
    alphas = np.array([0.1, 3.0, 100.0])
    got = nu._RidgeSolver(x, y, None, False).loo_squared_errors(alphas)
    for i, a in enumerate(alphas):
        err = [(_ridge_numpy(np.delete(x, j, 0), np.delete(y, j, 0), x[j:j + 1], a) - y[j]) ** 2
               for j in range(25)]
        np.testing.assert_allclose(got[i], np.sum(err, axis=0)[0], rtol=1e-8)


def test_predictivity_pipeline_matches_manual_cv():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(60, 12))
    y = x @ rng.normal(size=(12, 4)) + 2 * rng.normal(size=(60, 4))
    res = nu.predictivity(x, y, alphas=[5.0], folds=4, bootstrap=0, alpha_units="absolute")
    r_folds = []
    for f in range(4):
        te, tr = res.fold_of == f, res.fold_of != f
        assert 14 <= te.sum() <= 16
        pred = _ridge_numpy(x[tr], y[tr], x[te], 5.0)
        r_folds.append([np.corrcoef(pred[:, u], y[te, u])[0, 1] for u in range(4)])
    np.testing.assert_allclose(res.r, np.mean(r_folds, axis=0), rtol=1e-9)
    assert res.mean == pytest.approx(np.mean(r_folds))
    assert np.all(res.alpha == 5.0)


def test_nested_cv_picks_small_alpha_for_clean_data_and_large_for_noise():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(80, 10))
    clean = x @ rng.normal(size=(10, 3))
    res = nu.predictivity(x, clean, bootstrap=0, alphas=np.logspace(-3, 5, 9))
    assert res.mean > 0.999 and np.median(res.alpha) <= 1e-1
    noise = rng.normal(size=(80, 3))
    res = nu.predictivity(x, noise, bootstrap=0, alphas=np.logspace(-3, 5, 9))
    assert np.median(res.alpha) >= 10   # relative to the mean eigenvalue: shrinks fits >= 10x
    shared = nu.predictivity(x, np.hstack([clean, noise]), bootstrap=0, alpha_per_unit=False)
    assert np.all(shared.alpha == shared.alpha[:, :1])   # one alpha per fold for all units


def test_predictivity_nan_masking_and_errors():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(50, 6))
    y = x @ rng.normal(size=(6, 5)) + rng.normal(size=(50, 5))
    clean = nu.predictivity(x, y, bootstrap=0)
    y_nan = y.copy()
    y_nan[[1, 7, 20], 0] = np.nan
    y_nan[:45, 4] = np.nan                    # 5 valid stimuli: cannot be scored
    res = nu.predictivity(x, y_nan, bootstrap=0)
    assert res.n_nan == 3 + 45 and res.n_units_with_nan == 2
    assert res.n_units_scored == 4 and np.isnan(res.r[4])
    np.testing.assert_allclose(res.r[1:4], clean.r[1:4])   # untouched units: same folds, same result
    assert np.isfinite(res.r[0]) and abs(res.r[0] - clean.r[0]) < 0.1
    with pytest.raises(ValueError, match="features have 50 stimuli .* responses have 49"):
        nu.predictivity(x, y[:49])
    with pytest.raises(ValueError, match="folds"):
        nu.predictivity(x, y, folds=1)
    with pytest.raises(ValueError, match="alphas"):
        nu.predictivity(x, y, alphas=[0.0, 1.0])
    with pytest.raises(ValueError, match="NaN/inf"):
        nu.predictivity(np.full((50, 2), np.nan), y)


# --------------------------------------------------------------------------------------------- noise ceiling

def test_spearman_brown_split_half_matches_direct_formula():
    rng = np.random.default_rng(4)
    reps = rng.normal(size=(30, 2, 2)) + rng.normal(size=(30, 2, 1))
    nc = nu.noise_ceiling(reps, splits=1, bootstrap=0)   # R = 2: the only split is rep 0 vs rep 1
    for u in range(2):
        r = np.corrcoef(reps[:, u, 0], reps[:, u, 1])[0, 1]
        assert nc.reliability[u] == pytest.approx(2 * r / (1 + r))
        assert nc.ceiling[u] == pytest.approx(np.sqrt(2 * r / (1 + r)))


def test_noise_ceiling_recovers_simulated_value():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(300, 20))
    for target in (0.5, 0.8):
        sim = nu.synthetic_responses(x, n_units=40, repetitions=4, ceiling=target, seed=6)
        nc = nu.noise_ceiling(sim.responses, bootstrap=300, seed=1)
        assert nc.ci[0] <= target <= nc.ci[1]
        assert abs(nc.mean - target) < 0.03
        # the simulation's own definition: r(signal, mean of repetitions)
        direct = np.mean([np.corrcoef(sim.signal[:, u], sim.responses[:, u].mean(1))[0, 1] for u in range(40)])
        assert abs(direct - target) < 0.03
    with pytest.raises(ValueError, match="repetitions"):
        nu.noise_ceiling(rng.normal(size=(10, 3)))


# --------------------------------------------------------------------------------------------- RSA

def test_rdm_matches_scipy_pdist_and_pairwise_nan():
    rng = np.random.default_rng(6)
    x = rng.normal(size=(15, 9))
    np.testing.assert_allclose(nu.rdm(x), squareform(pdist(x, "correlation")), atol=1e-12)
    np.testing.assert_allclose(nu.rdm(x, "euclidean"), squareform(pdist(x, "euclidean")), atol=1e-10)
    xn = x.copy()
    xn[2, 3] = xn[5, [0, 8]] = np.nan
    d = nu.rdm(xn)
    ok = ~np.isnan(xn[2]) & ~np.isnan(xn[5])
    assert d[2, 5] == pytest.approx(pdist(np.stack([xn[2, ok], xn[5, ok]]), "correlation")[0])
    de = nu.rdm(xn, "euclidean")
    assert de[2, 5] == pytest.approx(np.sqrt(9 / ok.sum() * np.sum((xn[2, ok] - xn[5, ok]) ** 2)))
    assert d[0, 1] == pytest.approx(pdist(x[:2], "correlation")[0])


def _tau_a_direct(x, y):
    dx = np.sign(x[:, None] - x[None, :])
    dy = np.sign(y[:, None] - y[None, :])
    n = x.size
    return np.triu(dx * dy, 1).sum() / (n * (n - 1) / 2)


def test_kendall_tau_a_and_spearman_against_references():
    rng = np.random.default_rng(7)
    a, b = rng.normal(size=200), rng.normal(size=200)
    b = a + b
    assert nu.kendall_tau_a(a, b) == pytest.approx(kendalltau(a, b).statistic)  # no ties: tau-a = tau-b
    ta, tb = rng.integers(0, 5, size=300), rng.integers(0, 4, size=300)
    tb = tb + ta // 2
    got = nu.kendall_tau_a(ta, tb)
    assert got == pytest.approx(_tau_a_direct(ta.astype(float), tb.astype(float)), abs=1e-12)
    assert abs(got - kendalltau(ta, tb).statistic) > 0.02   # with ties tau-a != tau-b
    for _ in range(5):
        v = rng.integers(0, 50, size=int(rng.integers(2, 400)))
        brute = int(np.triu(v[:, None] > v[None, :], 1).sum())
        assert nu._count_inversions(v) == brute
    da, db = nu.rdm(rng.normal(size=(20, 5))), nu.rdm(rng.normal(size=(20, 5)))
    iu = np.triu_indices(20, 1)
    assert nu.compare_rdms(da, db) == pytest.approx(spearmanr(da[iu], db[iu]).statistic)
    assert nu.compare_rdms(da, db, "kendall_tau_a") == pytest.approx(kendalltau(da[iu], db[iu]).statistic)
    tied = np.round(da * 4) / 4
    assert nu.compare_rdms(tied, db) == pytest.approx(spearmanr(tied[iu], db[iu]).statistic)


def test_rsa_bootstrap_excludes_identical_pairs_and_scores():
    rng = np.random.default_rng(8)
    x = rng.normal(size=(40, 6))
    y = x @ rng.normal(size=(6, 30)) + 0.5 * rng.normal(size=(40, 30))
    res = nu.rsa(x, y, rdm="euclidean", bootstrap=200, seed=1)
    iu = np.triu_indices(40, 1)
    dx, dy = squareform(pdist(x)), squareform(pdist(y))
    assert res.score == pytest.approx(spearmanr(dx[iu], dy[iu]).statistic)
    assert res.ci[0] < res.score < res.ci[1] and res.ci[0] > 0.5
    # the bootstrap drops pairs of copies (distance 0 in both RDMs, which would inflate the score):
    # every resample must be close to the full score, not systematically above it
    assert abs(np.median(res.bootstrap_scores) - res.score) < 0.05
    kt = nu.rsa(x, y, compare="kendall_tau_a", bootstrap=20)
    assert kt.score == pytest.approx(_tau_a_direct(nu.rdm(x)[iu], nu.rdm(y)[iu]))
    with pytest.raises(ValueError, match="rdm must be one of"):
        nu.rsa(x, y, rdm="cosine")
    with pytest.raises(ValueError, match="40 stimuli .* responses have 39"):
        nu.rsa(x, y[:39])


# --------------------------------------------------------------------------------------------- synthetic brain

@pytest.fixture(scope="module")
def brain():
    net = small_cnn(seed=1)
    layers = ["1", "4", "7", "10"]
    feats = nu.activations(net, stimuli(200), layers, pool=2)
    sim = nu.synthetic_responses(feats["4"], n_units=40, repetitions=4, ceiling=0.8, seed=2)
    return feats, sim


def test_synthetic_brain_source_layer_ranks_first_and_ceiling_recovered(brain):
    feats, sim = brain
    res = nu.score_layers(feats, sim.responses, model="cnn", metrics=["predictivity"],
                          predictivity_options={"bootstrap": 200})
    assert res.best("predictivity") == {"cnn": "4"}
    assert res.best("normalized") == {"cnn": "4"}
    row = {r.layer: r for r in res.rows}["4"]
    assert row.ceiling_ci_low <= 0.8 <= row.ceiling_ci_high
    assert row.normalized > 0.9
    others = [r.predictivity for r in res.rows if r.layer != "4"]
    assert row.predictivity > max(others) + 0.01


def test_synthetic_brain_rsa_ranks_source_layer_first(brain):
    feats, _ = brain
    # units read out the centred (not z-scored) features, so their Euclidean geometry follows the layer's
    sim = nu.synthetic_responses(feats["4"], n_units=60, repetitions=4, ceiling=0.8, standardize=False, seed=3)
    res = nu.score_layers(feats, sim.responses, model="cnn", metrics=["rsa"],
                          rsa_options={"bootstrap": 100, "rdm": "euclidean"})
    assert res.best("rsa") == {"cnn": "4"}
    row = {r.layer: r for r in res.rows}["4"]
    assert row.rsa_ci_low > 0.5


def test_shuffled_stimuli_give_chance_scores(brain):
    feats, sim = brain
    means, covered = [], 0
    for seed in (10, 11, 12):
        perm = np.random.default_rng(seed).permutation(sim.responses.shape[0])
        p = nu.predictivity(feats["4"], sim.responses[perm], bootstrap=100)
        means.append(p.mean)
        covered += p.ci[0] < 0 < p.ci[1]
    assert abs(np.mean(means)) < 0.02 and max(np.abs(means)) < 0.06 and covered >= 2
    r = nu.rsa(feats["4"], sim.responses[perm], bootstrap=200)
    assert r.ci[0] < 0 < r.ci[1] and abs(r.score) < 0.05


# --------------------------------------------------------------------------------------------- tables, CLI

def test_results_table_exports_and_plot(tmp_path):
    rows = [nu.LayerScore(m, f"l{i}", i, 10, predictivity=0.1 * i + (m == "b") * 0.05,
                          predictivity_ci_low=0.1 * i - 0.02, predictivity_ci_high=0.1 * i + 0.08, ceiling=0.7)
            for m in ("a", "b") for i in range(3)]
    res = nu.NeuralResults(rows)
    res.to_csv(tmp_path / "t.csv")
    text = (tmp_path / "t.csv").read_text().splitlines()
    assert text[0].startswith("model,layer,depth,n_features,predictivity") and len(text) == 7
    data = json.loads(res.to_json(tmp_path / "t.json"))
    assert data["rows"][4]["predictivity"] == pytest.approx(0.15) and data["rows"][0]["rsa"] is None
    res.plot(tmp_path / "p.png")
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"
    assert res.best() == {"a": "l2", "b": "l2"}


def _cli(capsys, *args: str) -> tuple[int, str, str]:
    from blurkit.cli import main

    code = main(["neural", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_end_to_end(tmp_path, capsys, monkeypatch):
    import inspect

    from PIL import Image

    imgs = (stimuli(48)[:, 0].numpy() * 255).astype(np.uint8)
    folder = tmp_path / "stim"
    folder.mkdir()
    for i, im in enumerate(imgs):
        Image.fromarray(im).save(folder / f"img{i:03d}.png")
    net = small_cnn(seed=3)
    torch.save(net.state_dict(), tmp_path / "net.pt")
    (tmp_path / "mynets.py").write_text("import torch\nfrom torch import nn\n\n" + inspect.getsource(small_cnn)
                                        + "\n\ndef build():\n    return small_cnn()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    x = torch.from_numpy(imgs.astype(np.float32) / 255)[:, None]
    x = (nn.functional.interpolate(x, size=(28, 28), mode="bilinear", antialias=True) - 0.449) / 0.226
    feats = nu.activations(net, x, ["4"], pool=2)["4"]
    resp = nu.synthetic_responses(feats, n_units=10, repetitions=2, seed=0).responses
    np.save(tmp_path / "resp.npy", resp)
    common = ["--stimuli", str(folder), "--model", "mynets:build", "--checkpoint", f"cnn={tmp_path / 'net.pt'}",
              "--image-size", "28"]
    code, out, err = _cli(capsys, *common, "--responses", str(tmp_path / "resp.npy"), "--layers", "1", "4",
                          "--pool", "2", "--bootstrap", "50", "--folds", "4", "--out", str(tmp_path / "out"))
    assert code == 0, err
    assert "normalised" in out and "wrote" in out
    table = (tmp_path / "out" / "neural_scores.csv").read_text()
    assert table.count("\ncnn,") == 2
    for name in ("predictivity.png", "normalized.png", "rsa.png", "neural_scores.json"):
        assert (tmp_path / "out" / name).is_file()
    rows = json.loads((tmp_path / "out" / "neural_scores.json").read_text())["rows"]
    assert max(rows, key=lambda r: r["predictivity"])["layer"] == "4"
    np.save(tmp_path / "short.npy", resp[:40])
    code, _, err = _cli(capsys, *common, "--responses", str(tmp_path / "short.npy"), "--layers", "4",
                        "--out", str(tmp_path))
    assert code == 2 and "48 stimulus images" in err and "40 response rows" in err
    code, _, err = _cli(capsys, *common, "--responses", str(tmp_path / "resp.npy"), "--layers", "conv9",
                        "--out", str(tmp_path))
    assert code == 2 and "valid names" in err
    code, out, _ = _cli(capsys, *common, "--list-layers")
    assert code == 0 and out.startswith("cnn: 0 1 2 3 4")
    (tmp_path / "r.h5").write_bytes(b"")
    code, _, err = _cli(capsys, *common, "--responses", str(tmp_path / "r.h5"), "--layers", "4", "--out", str(tmp_path))
    assert code == 2
    try:
        import h5py  # noqa: F401
    except ImportError:
        assert "needs h5py" in err


def test_cli_reads_csv_with_header_and_nan(tmp_path):
    from blurkit.commands.neural import load_responses

    (tmp_path / "r.csv").write_text("u1,u2\n1.5,2\n,3\n4,nan\n")
    arr = load_responses(tmp_path / "r.csv")
    assert arr.shape == (3, 2) and np.isnan(arr[1, 0]) and np.isnan(arr[2, 1]) and arr[0, 0] == 1.5


def test_cli_with_blurkit_checkpoint(tmp_path, capsys):
    from PIL import Image

    from blurkit.models import build_model
    from blurkit.train.checkpoint import save_checkpoint

    folder = tmp_path / "stim"
    folder.mkdir()
    imgs = (stimuli(30)[:, 0].numpy() * 255).astype(np.uint8)
    for i, im in enumerate(imgs):
        Image.fromarray(im).save(folder / f"{i:02d}.png")
    torch.manual_seed(0)
    net = build_model("small-cnn", 10, 1, width=4)
    info = {"name": "small-cnn", "num_classes": 10, "in_channels": 1, "image_size": 16, "blurpool": False,
            "options": {"width": 4}, "mean": [0.5], "std": [0.25]}
    save_checkpoint({"model": net.state_dict(), "model_info": info}, tmp_path / "run" / "last.pt")
    # the CLI must resize to 16 px and normalise with the checkpoint's mean/std, as training did
    x = torch.from_numpy(imgs.astype(np.float32) / 255)[:, None]
    x = (nn.functional.interpolate(x, size=(16, 16), mode="bilinear", antialias=True) - 0.5) / 0.25
    feats = nu.activations(net.eval(), x, ["features.2"], pool="avg")["features.2"]
    rotation = np.linalg.qr(np.random.default_rng(0).normal(size=(feats.shape[1], feats.shape[1])))[0]
    resp = feats.double().numpy() @ rotation     # same Euclidean geometry as the layer
    np.save(tmp_path / "resp.npy", resp)
    code, out, err = _cli(capsys, "--checkpoint", str(tmp_path / "run"), "--list-layers")
    assert code == 0 and "features.2" in out
    code, out, err = _cli(capsys, "--stimuli", str(folder), "--responses", str(tmp_path / "resp.npy"),
                          "--checkpoint", str(tmp_path / "run"), "--layers", "features.2", "--pool", "avg",
                          "--metrics", "rsa", "--rdm", "euclidean", "--bootstrap", "0", "--out", str(tmp_path / "o"))
    assert code == 0, err
    row = json.loads((tmp_path / "o" / "neural_scores.json").read_text())["rows"][0]
    assert row["model"] == "run" and row["rsa"] > 0.999  # only if resize and mean/std match training


def test_permutation_test_calibration():
    rng = np.random.default_rng(11)
    x = rng.normal(size=(60, 5))
    y = x @ rng.normal(size=(5, 4)) + rng.normal(size=(60, 4))
    res = nu.permutation_test(x, y, n_permutations=19, seed=1)
    assert res.p_value == pytest.approx(0.05) and res.observed > 0.5 and res.null.max() < 0.3
    # responses unrelated to the features: the observed score is one draw of the null, p is not small
    pvals = [nu.permutation_test(x, rng.normal(size=(60, 4)), n_permutations=19, seed=s).p_value for s in range(4)]
    assert sum(p <= 0.05 for p in pvals) <= 1 and np.mean(pvals) > 0.2
    r = nu.permutation_test(x, y, metric="rsa", n_permutations=19, rdm="euclidean")
    assert r.p_value == pytest.approx(0.05)
    with pytest.raises(ValueError, match="metric"):
        nu.permutation_test(x, y, metric="cka")


def test_activations_cache_tells_architectures_apart(tmp_path):
    """The same weights in another architecture (ReLU vs Tanh, stride 1 vs 2) must not share a cache entry."""
    def net(act, stride):
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv2d(3, 4, 3, stride=stride, padding=1), act)

    x = torch.rand(6, 3, 16, 16)
    for a, b in ((net(nn.ReLU(), 1), net(nn.Tanh(), 1)), (net(nn.ReLU(), 1), net(nn.ReLU(), 2))):
        cached_a = nu.activations(a, x, ["1"], cache=tmp_path)["1"]
        cached_b = nu.activations(b, x, ["1"], cache=tmp_path)["1"]
        assert torch.equal(cached_b, nu.activations(b, x, ["1"])["1"])
        assert not torch.equal(cached_a, cached_b) or cached_a.shape != cached_b.shape
