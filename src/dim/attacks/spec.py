"""What one attack of a suite is (:class:`AttackSpec`), how a run's config records it, and which attacks are black
boxes: the schema every suite, adapter and the runner share."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any, Mapping

from ..core.norms import Norm, ThreatModel


@dataclass(frozen=True)
class AttackSpec:
    """One attack of a suite. ``name`` is its stable key in the results store."""
    name: str
    attack: str                                  # foolbox class name (or an adapter of ours, see adapters)
    norm: Norm
    params: Mapping[str, Any] = field(default_factory=dict)
    repeats: int = 1                             # independent runs (different seeds), best per sample
    targeted: bool = False                       # GenAttack is targeted only: target = runner-up class
    starting_points: bool = False                # Brendel-Bethge: start from the best adversarial so far
    distance_param: bool = False                 # distance-agnostic attack: pass distance=<norm>
    adaptive: bool = False                       # beyond the paper's protocol: own rows in Table 1
    refines: str | None = None                   # the same attack with more steps/restarts than this one
    threat: ThreatModel | None = None            # bound by the runner for the run's data; None: the paper's

    @property
    def threshold(self) -> float:
        """The epsilon this attack is run and counted at (the dataset's threshold of its norm)."""
        return self.threat.threshold(self.norm) if self.threat is not None else self.norm.threshold

    @property
    def grid(self) -> tuple[float, ...]:
        """The epsilons of a fixed-epsilon attack: ``params["epsilons"]`` when a suite gives them, else the
        dataset's threat model's grid; the threshold is always on it."""
        if "epsilons" in self.params:
            return tuple(sorted({float(e) for e in self.params["epsilons"]} | {self.threshold}))
        return self.threat.grid(self.norm) if self.threat is not None else self.norm.grid

    def bind(self, threat: ThreatModel | None) -> "AttackSpec":
        """This attack at the thresholds of ``threat`` (what the runner hands to an adapter)."""
        return self if threat is None else replace(self, threat=threat)


# Fields added after the first runs were stored: written into a run's config only when they differ
# from their default, so that a run stored before they existed still resumes. (``threat`` is never
# stored with an attack: the run's config records the threat model once.)
OPTIONAL_FIELDS = ("adaptive", "refines", "threat")


def spec_dict(spec: AttackSpec) -> dict[str, Any]:
    """``spec`` as the run's config records it (and reuse compares it): the optional fields only where they
    differ from their default, never the thresholds it is bound to (the config records those once)."""
    d = asdict(spec)
    for name in OPTIONAL_FIELDS:
        if name == "threat" or d[name] == AttackSpec.__dataclass_fields__[name].default:
            del d[name]
    d["norm"] = spec.norm.value
    d["params"] = dict(spec.params)
    return d

# Attacks that use no gradient of the model (decision- or score-based, or model-agnostic
# corruptions). The sanity check "black-box does not beat white-box" compares these with the rest.
BLACK_BOX = frozenset({
    "L2ContrastReductionAttack", "L2AdditiveGaussianNoiseAttack", "L2AdditiveUniformNoiseAttack",
    "L2ClippingAwareAdditiveGaussianNoiseAttack", "L2ClippingAwareAdditiveUniformNoiseAttack",
    "L2RepeatedAdditiveGaussianNoiseAttack", "L2RepeatedAdditiveUniformNoiseAttack",
    "L2ClippingAwareRepeatedAdditiveGaussianNoiseAttack", "L2ClippingAwareRepeatedAdditiveUniformNoiseAttack",
    "LinearSearchBlendedUniformNoiseAttack", "InversionAttack", "SaltAndPepperNoiseAttack", "BoundaryAttack",
    "LinfAdditiveUniformNoiseAttack", "LinfRepeatedAdditiveUniformNoiseAttack", "GenAttack",
    "BinarySearchContrastReductionAttack", "LinearSearchContrastReductionAttack", "GaussianBlurAttack",
    "HopSkipJumpAttack", "PointwiseAttack", "square", "sparse_rs",
})


# Ensembles of white-box and black-box attacks: AutoAttack's standard version ends with Square, so
# its number is never worse than Square's. They stay out of both sides of the black-box check, or
# the check could never fire on a model evaluated with AutoAttack.
ENSEMBLES = frozenset({"autoattack"})


def is_ensemble(attack: str) -> bool:
    """``attack`` mixes gradient attacks with a black-box one (see :data:`ENSEMBLES`)."""
    return attack in ENSEMBLES


def is_black_box(attack: str) -> bool:
    """``attack`` is an :attr:`AttackSpec.attack` (foolbox class or adapter key)."""
    return attack in BLACK_BOX


# What a suite file may set for an attack, with the type each must have (``norm`` is a norm's name).
FILE_FIELDS: dict[str, type | tuple[type, ...]] = {
    "name": str, "attack": str, "norm": str, "params": dict, "repeats": int, "targeted": bool,
    "starting_points": bool, "distance_param": bool, "adaptive": bool, "refines": str}


def spec_from_dict(d: Mapping[str, Any], where: str) -> AttackSpec:
    """An :class:`AttackSpec` from a suite file's table; a missing, unknown or mistyped field is refused, naming
    ``where`` it was found."""
    unknown = sorted(set(d) - set(FILE_FIELDS))
    if unknown:
        raise ValueError(f"{where}: unknown field(s) {unknown}; an attack has {sorted(FILE_FIELDS)}")
    for key in ("name", "attack", "norm"):
        if key not in d:
            raise ValueError(f"{where}: missing {key!r} (every attack needs name, attack and norm)")
    for key, value in d.items():
        kind = FILE_FIELDS[key]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise ValueError(f"{where}: {key} = {value!r} is {type(value).__name__}, expected {kind.__name__}")
    try:
        norm = Norm(d["norm"])
    except ValueError:
        raise ValueError(f"{where}: norm {d['norm']!r}, expected one of {[n.value for n in Norm]}") from None
    if d.get("repeats", 1) < 1:
        raise ValueError(f"{where}: repeats must be at least 1, got {d['repeats']}")
    rest = {k: v for k, v in d.items() if k not in ("name", "attack", "norm", "params")}
    return AttackSpec(d["name"], d["attack"], norm, dict(d.get("params", {})), **rest)
