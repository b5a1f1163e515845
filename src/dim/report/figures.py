"""PNG figures: the accuracy-versus-epsilon curves of a report, and the paper's Figure 3 (t-SNE of the latent
codes of each of the ten internal models)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .. import data as data_mod
from ..checkpoint import load_model
from ..core.device import DeviceLike, device_of
from ..evaluation import metrics
from ..fileio import atomic_write
from . import tables


def figure3(model_dir: Path, out_png: Path, n: int = 1000, data_dir: Path | None = None, seed: int = 0,
            device: DeviceLike = None) -> Path:
    """One panel per internal model: its 10-d latents of ``n`` test images, t-SNE to 2-d, coloured by digit."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.manifold import TSNE

    model = load_model(model_dir, device=device)
    if not hasattr(model, "latents"):
        raise ValueError(f"{model_dir}: model {model.card['model']!r} has no internal-model latents")
    x, y = data_mod.load_split(model.card.get("dataset", "mnist"), "test", data_dir, limit=n)
    with torch.no_grad():
        z = torch.cat([model.latents(torch.from_numpy(x[i:i + 1000]).to(device_of(model))).cpu()
                       for i in range(0, len(x), 1000)], dim=1).numpy()  # (K, N, latent)
    k_models = len(z)
    cols = min(5, k_models)
    rows = -(-k_models // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3 * cols, 3.2 * rows), squeeze=False)
    for ax in axes.flat[k_models:]:
        ax.set_visible(False)
    for k, ax in enumerate(axes.flat[:k_models]):
        emb = TSNE(n_components=2, init="pca", perplexity=min(30.0, (len(y) - 1) / 3), random_state=seed).fit_transform(z[k])
        sc = ax.scatter(emb[:, 0], emb[:, 1], c=y, cmap="tab10" if k_models <= 10 else "tab20", s=3,
                        vmin=-0.5, vmax=k_models - 0.5)
        ax.set_title(f"internal model {k}")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(sc, ax=axes, ticks=range(k_models), label="class", shrink=0.8)
    fig.suptitle(f"t-SNE of the internal models' latents ({model.card['model']}, {len(y)} test images)")
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
    return out_png


def plot_curves(results: list[metrics.ModelResult], out: Path, within: Path | None = None) -> list[Path]:
    """Accuracy versus epsilon per norm, worst case over attacks, one line per model; each PNG written atomically
    (``within``: through no symbolic link below that folder)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    paths = []
    for norm in tables.NORM_ORDER:
        have = [r for r in results if norm in r.norms]
        if not have:
            continue
        threat = have[0].threat
        grid = np.linspace(0, threat.grid(norm)[-1], 200)
        fig, ax = plt.subplots(figsize=(5, 3.6))
        for r in have:
            ax.plot(grid, 100 * metrics.accuracy_curve(r.norms[norm].distances, grid), label=r.paper_name)
        ax.axvline(threat.threshold(norm), color="grey", ls=":", lw=1)
        ax.set_xlabel(f"{norm.label} perturbation size")
        ax.set_ylabel("accuracy (%)")
        ax.set_ylim(0, 100)
        ax.set_title(f"All {norm.label} attacks (worst case per sample)")
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = out / f"accuracy_vs_eps_{norm.value}.png"
        atomic_write(path, lambda fh, fig=fig: fig.savefig(fh, format="png", dpi=120), within)
        plt.close(fig)
        paths.append(path)
    return paths
