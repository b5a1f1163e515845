"""Attack suites as data: every attack with its foolbox class, norm and parameters.

``paper`` is the 42 attacks of the paper (22 L2, 12 L-inf, 6 L1, 2 L0): the 44
attack classes of foolbox 3.2.1 without ``BinarizationRefinementAttack`` and
``DatasetAttack`` (not attacks on a model), without ``SpatialAttack`` (rotations
and translations are not an Lp threat model), plus ``PointwiseAttack`` for L0,
which the paper took from foolbox 2.4 and foolbox 3.3.4 has. The paper does not
say under which norm it counted the distance-agnostic attacks (contrast
reduction, blur, blended noise, inversion, HopSkipJump); we count the contrast
reductions, the blur and HopSkipJump under L-inf and the rest under L2, which
gives the paper's counts per norm.

Parameters: foolbox's defaults are sized for GPUs. Where one would not finish in
the time budget on two CPU cores (``paper`` on DIM and biDIM for 200 images in at
most two hours) we lower the step counts; ``FOOLBOX_DEFAULTS`` lists what we
changed next to foolbox's values, and every report prints the suite it used.
"""
from __future__ import annotations

import fnmatch
from typing import Any

from ..core.norms import Norm
from .spec import AttackSpec
from .suite_files import is_suite_file, read_suite


L0, L1, L2, LINF = Norm.L0, Norm.L1, Norm.L2, Norm.LINF


def _spec(name: str, attack: str, norm: Norm, **kw: Any) -> AttackSpec:
    params = kw.pop("params", {})
    return AttackSpec(name, attack, norm, params, **kw)


# What we changed from foolbox 3.3.4's defaults, for the CPU budget.
FOOLBOX_DEFAULTS = {
    "L2CarliniWagnerAttack": {"binary_search_steps": 9, "steps": 10000},
    "EADAttack": {"binary_search_steps": 9, "steps": 10000},
    "BoundaryAttack": {"steps": 25000},
    "HopSkipJumpAttack": {"steps": 64, "max_gradient_eval_steps": 10000},
    "*BrendelBethgeAttack": {"steps": 1000},
    "GenAttack": {"steps": 1000},
    "LinearSearchBlendedUniformNoiseAttack": {"directions": 1000, "steps": 1000},
    "GaussianBlurAttack": {"steps": 1000},
    "SaltAndPepperNoiseAttack": {"steps": 1000},
    "PointwiseAttack": {"l2_binary_search": True, "init_attack": "SaltAndPepperNoiseAttack(steps=1000)"},
    "*Repeated*NoiseAttack": {"repeats": 100},
}

_BB = {"steps": 200}
# Pointwise: the L2 binary search refines pixel values and never removes a changed pixel, so it
# does nothing for the L0 count and costs ~10x the forward passes; the salt-and-pepper start
# uses 200 instead of 1000 steps.
_POINTWISE = {"l2_binary_search": False, "init_attack": {"attack": "SaltAndPepperNoiseAttack", "steps": 200}}

PAPER: tuple[AttackSpec, ...] = (
    # ---- L2 (22)
    _spec("L2 ContrastReduction", "L2ContrastReductionAttack", L2),
    _spec("L2 CarliniWagner", "L2CarliniWagnerAttack", L2, params={"binary_search_steps": 5, "steps": 200}),
    _spec("L2 DDN", "DDNAttack", L2, params={"steps": 100}),
    _spec("L2 DeepFool", "L2DeepFoolAttack", L2),
    _spec("L2 FGM", "L2FastGradientAttack", L2),
    _spec("L2 BasicIterative", "L2BasicIterativeAttack", L2),
    _spec("L2 PGD", "L2ProjectedGradientDescentAttack", L2),
    _spec("L2 AdditiveGaussianNoise", "L2AdditiveGaussianNoiseAttack", L2),
    _spec("L2 AdditiveUniformNoise", "L2AdditiveUniformNoiseAttack", L2),
    _spec("L2 ClippingAwareAdditiveGaussianNoise", "L2ClippingAwareAdditiveGaussianNoiseAttack", L2),
    _spec("L2 ClippingAwareAdditiveUniformNoise", "L2ClippingAwareAdditiveUniformNoiseAttack", L2),
    _spec("L2 RepeatedAdditiveGaussianNoise", "L2RepeatedAdditiveGaussianNoiseAttack", L2, params={"repeats": 20}),
    _spec("L2 RepeatedAdditiveUniformNoise", "L2RepeatedAdditiveUniformNoiseAttack", L2, params={"repeats": 20}),
    _spec("L2 ClippingAwareRepeatedAdditiveGaussianNoise", "L2ClippingAwareRepeatedAdditiveGaussianNoiseAttack", L2,
          params={"repeats": 20}),
    _spec("L2 ClippingAwareRepeatedAdditiveUniformNoise", "L2ClippingAwareRepeatedAdditiveUniformNoiseAttack", L2,
          params={"repeats": 20}),
    _spec("L2 LinearSearchBlendedUniformNoise", "LinearSearchBlendedUniformNoiseAttack", L2,
          params={"directions": 100, "steps": 100}, distance_param=True),
    _spec("L2 Inversion", "InversionAttack", L2, distance_param=True),
    _spec("L2 SaltAndPepperNoise", "SaltAndPepperNoiseAttack", L2, params={"steps": 200}),
    _spec("L2 NewtonFool", "NewtonFoolAttack", L2),
    _spec("L2 VirtualAdversarial", "VirtualAdversarialAttack", L2, params={"steps": 10}),
    _spec("L2 Boundary", "BoundaryAttack", L2, params={"steps": 2000}),
    _spec("L2 BrendelBethge", "L2BrendelBethgeAttack", L2, params=_BB, starting_points=True),
    # ---- L-inf (12)
    _spec("Linf FGSM", "LinfFastGradientAttack", LINF),
    _spec("Linf BasicIterative", "LinfBasicIterativeAttack", LINF),
    _spec("Linf PGD", "LinfProjectedGradientDescentAttack", LINF),
    _spec("Linf DeepFool", "LinfDeepFoolAttack", LINF),
    _spec("Linf AdditiveUniformNoise", "LinfAdditiveUniformNoiseAttack", LINF),
    _spec("Linf RepeatedAdditiveUniformNoise", "LinfRepeatedAdditiveUniformNoiseAttack", LINF, params={"repeats": 20}),
    _spec("Linf GenAttack", "GenAttack", LINF, params={"steps": 100}, targeted=True),
    _spec("Linf BinarySearchContrastReduction", "BinarySearchContrastReductionAttack", LINF, distance_param=True),
    _spec("Linf LinearSearchContrastReduction", "LinearSearchContrastReductionAttack", LINF,
          params={"steps": 100}, distance_param=True),
    _spec("Linf GaussianBlur", "GaussianBlurAttack", LINF, params={"steps": 100}, distance_param=True),
    _spec("Linf HopSkipJump", "HopSkipJumpAttack", LINF,
          params={"steps": 20, "max_gradient_eval_steps": 1000, "constraint": "linf"}),
    _spec("Linf BrendelBethge", "LinfinityBrendelBethgeAttack", LINF, params=_BB, starting_points=True),
    # ---- L1 (6)
    _spec("L1 FastGradient", "L1FastGradientAttack", L1),
    _spec("L1 BasicIterative", "L1BasicIterativeAttack", L1),
    _spec("L1 PGD", "L1ProjectedGradientDescentAttack", L1),
    _spec("L1 SparseL1Descent", "SparseL1DescentAttack", L1),
    _spec("L1 EAD", "EADAttack", L1, params={"binary_search_steps": 5, "steps": 200}),
    _spec("L1 BrendelBethge", "L1BrendelBethgeAttack", L1, params=_BB, starting_points=True),
    # ---- L0 (2)
    _spec("L0 Pointwise x10", "PointwiseAttack", L0, params=_POINTWISE, repeats=10),
    _spec("L0 BrendelBethge", "L0BrendelBethgeAttack", L0, params=_BB, starting_points=True),
)

EXTENDED: tuple[AttackSpec, ...] = PAPER + (
    _spec("L0 FMN", "L0FMNAttack", L0),
    _spec("L1 FMN", "L1FMNAttack", L1),
    _spec("L2 FMN", "L2FMNAttack", L2),
    _spec("Linf FMN", "LInfFMNAttack", LINF),
    _spec("Linf MI-FGSM", "LinfMomentumIterativeFastGradientMethod", LINF),
    _spec("L2 MI-FGM", "L2MomentumIterativeFastGradientMethod", L2),
    _spec("L1 MI-FGM", "L1MomentumIterativeFastGradientMethod", L1),
    _spec("Linf AdamPGD", "LinfAdamProjectedGradientDescentAttack", LINF),
    _spec("L2 AdamPGD", "L2AdamProjectedGradientDescentAttack", L2),
    _spec("L1 AdamPGD", "L1AdamProjectedGradientDescentAttack", L1),
    _spec("Linf AdamBasicIterative", "LinfAdamBasicIterativeAttack", LINF),
    _spec("L2 AdamBasicIterative", "L2AdamBasicIterativeAttack", L2),
    _spec("L1 AdamBasicIterative", "L1AdamBasicIterativeAttack", L1),
)


def _binflip(norm: Norm, steps: int = 300) -> AttackSpec:
    """BinFlip (ours, :mod:`dim.attacks.binflip`): greedy flips across a binarization's threshold, the best of
    8 candidates per step checked with real forward passes; not applicable to models without binarization."""
    return _spec(f"{norm.value} BinFlip", "binflip", norm, params={"steps": steps, "lookahead": 8}, adaptive=True)


def _knapsack_flips(norm: Norm) -> AttackSpec:
    """Knapsack flips (ours, :func:`dim.attacks.multinorm.flip_step`): many flips per step, by straight-through
    gain per unit of cost, 100 steps; not applicable to models without binarization."""
    return _spec(f"{norm.value} KnapsackFlips", "knapsack_flips", norm, params={"steps": 100, "loss": "ce"},
                 adaptive=True)


def _adaptive(norm: Norm) -> tuple[AttackSpec, ...]:
    """The adaptive attacks at one threshold (see :mod:`dim.attacks.adaptive`).

    AutoAttack runs on the model as it is (the reference evaluation); the BPDA attacks
    run only on models that binarize (elsewhere they are recorded as not applicable);
    the score attack follows the straight-through gradient whenever a model binarizes.
    """
    n = norm.value
    return (
        _spec(f"{n} AutoAttack", "autoattack", norm, params={"version": "standard"}, adaptive=True),
        _spec(f"{n} PGD-CE 100x5", "pgd", norm, params={"steps": 100, "restarts": 5, "loss": "ce"},
              adaptive=True, refines=f"{n} PGD"),
        _spec(f"{n} BPDA-PGD 100x5", "pgd", norm,
              params={"steps": 100, "restarts": 5, "loss": "ce", "gradient": "bpda"}, adaptive=True),
        _spec(f"{n} BPDA-APGD", "apgd", norm, params={"steps": 100, "targets": 9, "gradient": "bpda"},
              adaptive=True),
        _spec(f"{n} Score-MT", "score_mt", norm, params={"steps": 100, "restarts": 1, "gradient": "auto"},
              adaptive=True),
        _spec(f"{n} Square", "square", norm, params={"queries": 5000}, adaptive=True),
        _binflip(norm),
    )


def _adaptive_l1() -> tuple[AttackSpec, ...]:
    """L1, where the paper's attacks see zero gradients on binarized models.

    AutoAttack's L1 version on the model as it is (APGD-CE with 5 restarts and AutoAttack's L1 step
    schedule, APGD-T on 5 targets, FAB-T, Square); the same APGD through the straight-through gradient
    (BPDA; not applicable to models without binarization); and APGD-CE at 20 steps and at 100 steps with
    5 restarts, with the gradient a binarized model needs, for the convergence check; Square at L1
    (5,000 queries, black box: the paper's L1 attacks are all white box, so without it the check
    "black box does not beat white box" could not look at L1); BinFlip.
    """
    return (
        _spec("L1 AutoAttack", "autoattack", L1, params={"version": "standard"}, adaptive=True),
        _spec("L1 BPDA-APGD", "apgd", L1, params={"steps": 100, "targets": 5, "restarts": 5, "largereps": True,
                                                   "gradient": "bpda"}, adaptive=True),
        _spec("L1 APGD-CE 20x1", "apgd", L1, params={"steps": 20, "targets": 0, "largereps": True, "gradient": "auto"},
              adaptive=True),
        _spec("L1 APGD-CE 100x5", "apgd", L1, params={"steps": 100, "targets": 0, "restarts": 5, "largereps": True,
                                                       "gradient": "auto"},
              adaptive=True, refines="L1 APGD-CE 20x1"),
        _spec("L1 Square", "square", L1, params={"queries": 5000}, adaptive=True),
        _binflip(L1),
    )


# Greedy one-pixel moves, 16 checked per step, 48 moves (ours, :func:`dim.attacks.sparse.greedy_l0`); measured
# against PGD-L0 and Brendel-Bethge in benchmarks/results/eval_table1_n200*.
_GREEDY_L0 = _spec("L0 Greedy", "greedy_l0", L0, params={"steps": 48, "lookahead": 16, "gradient": "auto"},
                   adaptive=True)


def _adaptive_l0() -> tuple[AttackSpec, ...]:
    """L0 (pixels), where Pointwise and Brendel-Bethge are all the paper has.

    PGD-L0 (white box, ours after Croce & Hein 2019) with the gradient a binarized model needs (BPDA
    there, exact elsewhere), at 20 steps and at 100 steps with 5 restarts (the convergence check), and
    Sparse-RS (ours after Croce et al. 2022), the score-based black-box sparse attack, 3,000 queries;
    Greedy (ours), one checked pixel at a time with the same gradient; BinFlip.
    """
    return (
        _spec("L0 PGD-L0 20x1", "pgd_l0", L0, params={"steps": 20, "restarts": 1, "gradient": "auto"}, adaptive=True),
        _spec("L0 PGD-L0 100x5", "pgd_l0", L0, params={"steps": 100, "restarts": 5, "gradient": "auto"},
              adaptive=True, refines="L0 PGD-L0 20x1"),
        _spec("L0 Sparse-RS", "sparse_rs", L0, params={"queries": 3000}, adaptive=True),
        _GREEDY_L0,
        _binflip(L0, steps=50),
    )


# adaptive: beyond the paper, in every norm.
ADAPTIVE: tuple[AttackSpec, ...] = _adaptive(LINF) + _adaptive(L2) + _adaptive_l1() + _adaptive_l0()


# quick: the strongest cheap attacks per norm, within the main job's 15 minutes on two CPU cores. The paper's
# attacks see zero gradients on binarized models, so quick's white-box additions (targeted APGD at L-inf,
# APGD-CE at L1, PGD-L0 and L0 Greedy at L0) take the straight-through gradient where a model binarizes and the
# exact one elsewhere, so that they apply to every model; BinFlip at L2, L1 and L0 (nothing to flip on a model
# that does not binarize) and Square as a black box. How each choice was measured, and
# how far quick lies from the full suite: docs/notes.md and benchmarks/results/quick_vs_full*.json.
_QUICK_NAMES = ("L2 DDN", "Linf PGD", "Linf FGSM", "L1 SparseL1Descent")
QUICK: tuple[AttackSpec, ...] = tuple(s for s in PAPER if s.name in _QUICK_NAMES) + (
    _spec("Linf APGD 50 (9 targets)", "apgd", LINF, params={"steps": 50, "targets": 9, "gradient": "auto"},
          adaptive=True),
    _spec("Linf Square 500", "square", LINF, params={"queries": 500}, adaptive=True),
    _binflip(L2),
) + tuple(s for s in ADAPTIVE if s.name in ("L1 APGD-CE 20x1", "L1 BinFlip", "L0 PGD-L0 20x1", "L0 Greedy",
                                          "L0 BinFlip"))


def _bpda_autoattack(norm: Norm) -> AttackSpec:
    """AutoAttack through the straight-through gradient of a binarization.

    The reference AutoAttack on a binarized model sees zero gradients, so its APGD-CE,
    APGD-T and FAB-T do nothing and only Square works; run through BPDA all four attack.
    A suite of its own (an addition to a finished run, ``--suite bpda-autoattack``) because
    it costs about as much as AutoAttack itself and applies to binarized models only.
    """
    return _spec(f"{norm.value} BPDA-AutoAttack", "autoattack", norm,
                 params={"version": "standard", "gradient": "bpda"}, adaptive=True)


BPDA_AUTOATTACK: tuple[AttackSpec, ...] = (_bpda_autoattack(LINF), _bpda_autoattack(L2))

# knapsack-flips: many flips per step across a binarization's threshold, in every norm. A suite of its own, like
# bpda-autoattack (an addition to a finished run, ``--suite knapsack-flips``), because it came after the committed
# runs: on binarized models it finds more than BinFlip at L2, L1 and L0 (benchmarks/results/knapsack_flips.json).
KNAPSACK_FLIPS: tuple[AttackSpec, ...] = tuple(_knapsack_flips(nm) for nm in (LINF, L2, L1, L0))

# knapsack-flips-mt: the same flips, multi-targeted (one run per other class, the margin towards it), in every
# norm and, on a ramp, with L-inf's partial moves: cross-entropy through a temperature-scaled score can flatten
# where a margin towards one class still climbs. Nine runs of the cheapest strong attack on binarized models; an
# addition to a run.
KNAPSACK_FLIPS_MT: tuple[AttackSpec, ...] = tuple(
    _spec(f"{nm.value} KnapsackFlips-MT", "knapsack_flips", nm,
          params={"steps": 100, "loss": "targeted_margin", "targets": 9}, adaptive=True)
    for nm in (LINF, L2, L1, L0)) + (
    _spec("Linf PartialFlips-MT", "knapsack_flips", LINF,
          params={"steps": 100, "loss": "targeted_margin", "targets": 9, "partial": True}, adaptive=True),)

# ramp-autoattack: AutoAttack through a ramp binarization's own derivative and the straight-through gradient of any
# step behind it (gradient "smooth"). BPDA's identity sends gradient attacks to pixels outside the ramp's band, whose
# change the model does not see; the exact gradient of a model that also binarizes by a step is zero. Not applicable
# to models without a ramp. An addition to a run, like the two above.
RAMP_AUTOATTACK: tuple[AttackSpec, ...] = tuple(
    _spec(f"{nm.value} Smooth-AutoAttack", "autoattack", nm, params={"version": "standard", "gradient": "smooth"},
          adaptive=True) for nm in (LINF, L2, L1))

# ramp-flips: knapsack flips at L-inf whose moves may stop inside a ramp's band. Within 0.3 of a pixel, a whole
# flip across a band of 0.3-0.7 is out of reach for every pixel outside it; a move of 0.3 towards it still changes
# what the model sees. Not applicable to models without a ramp. An addition to a run.
RAMP_FLIPS: tuple[AttackSpec, ...] = (
    _spec("Linf PartialFlips", "knapsack_flips", LINF, params={"steps": 100, "loss": "ce", "partial": True},
          adaptive=True),)

# sparse-rs-10k: Sparse-RS at L0 with 10,000 queries where the adaptive suite spends 3,000: does a model's L0
# number hold under a larger black-box budget? It first ran as a suite file (benchmarks/suites/l0-sparse-rs-10k.toml,
# the same attack, named so by the runs it made); built in so that a preset can name it. An addition to a run.
SPARSE_RS_10K: tuple[AttackSpec, ...] = (
    _spec("L0 Sparse-RS 10k", "sparse_rs", L0, params={"queries": 10000}, adaptive=True),)

SUITES: dict[str, tuple[AttackSpec, ...]] = {"paper": PAPER, "extended": EXTENDED, "quick": QUICK,
                                             "adaptive": ADAPTIVE, "bpda-autoattack": BPDA_AUTOATTACK,
                                             "knapsack-flips": KNAPSACK_FLIPS, "ramp-autoattack": RAMP_AUTOATTACK,
                                             "ramp-flips": RAMP_FLIPS, "knapsack-flips-mt": KNAPSACK_FLIPS_MT,
                                             "sparse-rs-10k": SPARSE_RS_10K}


def get_suite(name: str) -> tuple[AttackSpec, ...]:
    """A suite by name, or a suite file (``mine.toml``, see :mod:`.suite_files`); ``a+b`` joins suites
    (``paper+adaptive``), keeping each attack once.

    ``a:PATTERN,PATTERN`` keeps the attacks of suite ``a`` whose name matches one of the
    shell-style patterns (``paper+adaptive:L2 AutoAttack,Linf AutoAttack``): a protocol of
    its own, recorded as the run's suite, where ``--only`` merely splits a suite's work
    between calls and leaves the rest of it to do.
    """
    out: dict[str, AttackSpec] = {}
    for part in name.split("+"):
        base, sep, patterns = part.partition(":")
        if is_suite_file(base):
            specs = read_suite(base.strip())
        else:
            try:
                specs = SUITES[base.strip()]
            except KeyError:
                raise ValueError(f"unknown suite {base.strip()!r}; expected one of {sorted(SUITES)}, a suite file "
                                 "(NAME.toml), or several joined by '+'") from None
        if sep:
            specs = select(specs, [p.strip() for p in patterns.split(",")], f"suite {base.strip()}:")
        out.update((s.name, s) for s in specs)
    return tuple(out.values())


def select(specs: tuple[AttackSpec, ...], patterns: list[str] | tuple[str, ...], what: str) -> tuple[AttackSpec, ...]:
    """The attacks of ``specs`` whose name matches one of the shell-style ``patterns``, in suite order;
    a pattern that matches none is refused, naming ``what`` gave it."""
    unmatched = [p for p in patterns if not any(fnmatch.fnmatchcase(s.name, p) for s in specs)]
    if unmatched:
        raise ValueError(f"{what} {unmatched}: no attack of the suite matches (attack names look like "
                         f"{specs[0].name!r}; patterns use * and ?)")
    return tuple(s for s in specs if any(fnmatch.fnmatchcase(s.name, p) for p in patterns))


def counts_per_norm(suite: tuple[AttackSpec, ...]) -> dict[Norm, int]:
    return {n: sum(1 for s in suite if s.norm is n) for n in Norm}
