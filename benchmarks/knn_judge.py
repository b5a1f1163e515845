"""A model-free judge of adversarial points: the vote of their nearest training images.

A robustness number counts every point inside the threat model's ball as the digit it started from. At L0 12 or
L1 8 a few added pixels can close the top of a 4, and the result may read as a 9 to anyone: such a point is not a
failure of the model but of the threat model. Nobody here can label thousands of points by eye, so this module asks
a judge that was never attacked and has no gradient: the ``k`` training images nearest to the point in pixels
(Euclidean distance, the training split's own labels; about 97% accurate on MNIST's clean test images with ``k``
of 3 to 5). If the nearest training digits of an adversarial "9" are mostly 9s while those of its clean image were
4s, the attack moved the image to where 9s are; if they are still 4s, the point is a 4 with specks, and the model
was wrong. It is a proxy for a person, not a person: it is used to bound how much of a union figure may be the
threat model's, never to raise the figure.
"""
from __future__ import annotations

import numpy as np
import torch


def knn_vote(queries: np.ndarray, ref_x: torch.Tensor, ref_y: torch.Tensor, k: int,
             skip: np.ndarray | None = None, chunk: int = 500) -> np.ndarray:
    """The majority label of each query's ``k`` nearest reference images (ties go to the nearer ones).

    ``queries`` (N, ...) and ``ref_x`` (M, ...) are images of the same shape, ``ref_y`` (M,) their labels; ``skip``
    (N,) gives, per query, the index of a reference image that must not vote (the query's own source image when
    the queries are points of the reference set; -1: none)."""
    if k < 1 or k > len(ref_y):
        raise ValueError(f"k must be between 1 and the {len(ref_y)} reference images, got {k}")
    ref = ref_x.flatten(1).to(torch.float64)
    ref_sq = (ref ** 2).sum(1)
    num_classes = int(ref_y.max()) + 1
    rank_bonus = torch.linspace(1e-3, 0.0, k, dtype=torch.float64)      # the nearer neighbour wins a tie
    out = []
    for i in range(0, len(queries), chunk):
        q = torch.from_numpy(np.asarray(queries[i:i + chunk])).flatten(1).to(torch.float64)
        d = (q ** 2).sum(1, keepdim=True) - 2 * q @ ref.T + ref_sq
        if skip is not None:
            s = torch.from_numpy(np.asarray(skip[i:i + chunk]))
            rows = torch.nonzero(s >= 0).flatten()
            d[rows, s[rows]] = float("inf")
        idx = d.topk(k, largest=False).indices                                  # (b, k), nearest first
        votes = torch.zeros(len(q), num_classes, dtype=torch.float64)
        votes.scatter_add_(1, ref_y[idx].long(), 1.0 + rank_bonus.expand(len(q), k))
        out.append(votes.argmax(1).numpy())
    return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)


def judge(labels: np.ndarray, clean_votes: np.ndarray, broken: dict[str, np.ndarray], preds: dict[str, np.ndarray],
          votes: dict[str, np.ndarray], union_broken: np.ndarray) -> dict:
    """What the judge says of the points that broke the model.

    Per norm, for each sample that norm broke (``broken[norm]``, bool (N,)): the judge's vote on the adversarial
    point is the class the model gave it (``to_adversarial_class``), the sample's own class (``to_own_class``) or
    another. Over the samples broken in some norm (``union_broken``): those with at least one breaking point that
    the judge gives the model's class (``some_point_to_adversarial_class``) and, among them, those whose clean image
    the judge reads as its own class (``..._clean_read_right``: the attack moved a digit the judge knew), with
    their ``true->adversarial`` pairs, the most common first."""
    per_norm = {}
    moved = np.zeros(len(labels), dtype=bool)
    for nm, b in broken.items():
        to_adv = b & (votes[nm] == preds[nm])
        moved |= to_adv
        per_norm[nm] = {"broken": int(b.sum()), "to_adversarial_class": int(to_adv.sum()),
                        "to_own_class": int((b & (votes[nm] == labels)).sum())}
    moved &= union_broken
    known = moved & (clean_votes == labels)
    pairs: dict[str, int] = {}
    for i in np.flatnonzero(known):
        for nm, b in broken.items():
            if b[i] and votes[nm][i] == preds[nm][i]:
                key = f"{labels[i]}->{preds[nm][i]}"
                pairs[key] = pairs.get(key, 0) + 1
                break
    return {"clean_read_right": float((clean_votes == labels).mean()), "per_norm": per_norm,
            "broken_in_some_norm": int(union_broken.sum()),
            "some_point_to_adversarial_class": int(moved.sum()),
            "some_point_to_adversarial_class_clean_read_right": int(known.sum()),
            "pairs": sorted(pairs.items(), key=lambda kv: -kv[1])[:12],
            "per_sample": "".join("1" if m else "0" for m in known)}
