"""HyperLoRAConfig: every hyperparameter of the adapters, and the only place their defaults live.

Torch-free on purpose: the ``janus`` command reads these defaults for its ``--help`` without
paying for an import of torch.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

DEFAULT_TARGETS: tuple[str, ...] = (
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
)
ALL_LINEAR = "all-linear"
REGEX_PREFIX = "re:"
ACTIVATIONS: tuple[str, ...] = ("sigmoid", "tanh", "softplus", "identity")

TargetModules = tuple[str, ...] | str
"""Name suffixes (``("q_proj", "v_proj")``), ``"all-linear"``, or ``"re:<regex on full name>"``."""

_SUFFIX = re.compile(r"[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*")
_TARGETS_HELP = (
    "give a tuple of module name suffixes such as ('q_proj', 'v_proj'), 'all-linear', or a "
    "regex on the full module name written 're:<pattern>'"
)


def check_target_modules(value: str | Iterable[str]) -> TargetModules:
    """``value`` in its canonical form, or a ValueError that says what is accepted.

    A regex must be marked (``re:``): a bare string is never sniffed for regex characters, so
    ``"q_proj"`` cannot silently mean "every name that is exactly q_proj" or a pattern.
    """
    if isinstance(value, str):
        if value == ALL_LINEAR:
            return value
        if value.startswith(REGEX_PREFIX):
            pattern = value[len(REGEX_PREFIX) :]
            try:
                re.compile(pattern)
            except re.error as error:
                raise ValueError(f"target_modules {value!r}: bad regex ({error})") from None
            if not pattern:
                raise ValueError(f"target_modules {value!r}: the regex after 're:' is empty")
            return value
        raise ValueError(f"target_modules {value!r} is ambiguous: {_TARGETS_HELP}")
    suffixes = tuple(value)
    if not suffixes:
        raise ValueError(f"target_modules is empty; {_TARGETS_HELP}")
    bad = [s for s in suffixes if not isinstance(s, str) or not _SUFFIX.fullmatch(s)]
    if bad:
        raise ValueError(f"target_modules: {bad!r} are not module name suffixes; {_TARGETS_HELP}")
    return suffixes


def target_modules_from_text(text: str) -> TargetModules:
    """The command line's form: ``q_proj,v_proj``, ``all-linear`` or ``re:<pattern>``."""
    text = text.strip()
    if text == ALL_LINEAR or text.startswith(REGEX_PREFIX):
        return check_target_modules(text)
    return check_target_modules(t.strip() for t in text.split(",") if t.strip())


def target_modules_to_text(targets: TargetModules) -> str:
    """Inverse of :func:`target_modules_from_text` (for ``--help`` and messages)."""
    return targets if isinstance(targets, str) else ",".join(targets)


@dataclass(frozen=True)
class HyperLoRAConfig:
    """The adapters' hyperparameters: enough to rebuild them on a fresh base.

    ``W(ρ) = W_base + (alpha/rank) · B · diag(g(ρ)) · A`` on every layer ``target_modules``
    selects; ``g`` is a :class:`~janus.hyperlora.layer.RhoHyperNet` of width ``hyper_hidden``
    with ``fourier_features`` sin/cos pairs of ρ and a final ``activation``. ``dropout`` acts
    on the adapter's input. ``trainable_token_ids`` are embedding rows trained (and saved)
    with the adapter: the rows of newly added special tokens.
    """

    rank: int = 16
    alpha: float = 32.0
    dropout: float = 0.05
    hyper_hidden: int = 64
    fourier_features: int = 0
    activation: str = "sigmoid"
    target_modules: TargetModules = DEFAULT_TARGETS
    trainable_token_ids: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.rank < 1 or self.hyper_hidden < 1 or self.fourier_features < 0:
            raise ValueError(
                "need rank >= 1, hyper_hidden >= 1, fourier_features >= 0; got "
                f"{self.rank}, {self.hyper_hidden}, {self.fourier_features}"
            )
        if not self.alpha > 0 or not 0.0 <= self.dropout < 1.0:
            raise ValueError(
                f"need alpha > 0 and 0 <= dropout < 1; got {self.alpha}, {self.dropout}"
            )
        if self.activation not in ACTIVATIONS:
            raise ValueError(
                f"activation must be one of {list(ACTIVATIONS)}, got {self.activation!r}"
            )
        # Normalised once here, so equal configs compare equal and JSON round-trips exactly.
        object.__setattr__(self, "alpha", float(self.alpha))
        object.__setattr__(self, "dropout", float(self.dropout))
        object.__setattr__(self, "target_modules", check_target_modules(self.target_modules))
        ids = sorted({int(i) for i in self.trainable_token_ids})
        if ids and ids[0] < 0:
            raise ValueError(f"trainable_token_ids must be non-negative, got {ids}")
        object.__setattr__(self, "trainable_token_ids", tuple(ids))

    @property
    def scaling(self) -> float:
        """α/r, the LoRA scale."""
        return self.alpha / self.rank

    def replace(self, **changes: Any) -> HyperLoRAConfig:
        """A copy with ``changes`` (validated like any new config)."""
        unknown = sorted(changes.keys() - field_names())
        if unknown:
            raise TypeError(f"HyperLoRAConfig has no field(s) {unknown}; fields: {field_names()}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-native values (lists, not tuples), as saved in adapter_config.json."""
        data = dataclasses.asdict(self)
        if not isinstance(self.target_modules, str):
            data["target_modules"] = list(self.target_modules)
        data["trainable_token_ids"] = list(self.trainable_token_ids)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> HyperLoRAConfig:
        """Build from a mapping that may hold other keys too (a checkpoint's whole config)."""
        names = field_names()
        return cls(**{k: v for k, v in data.items() if k in names})


def field_names() -> list[str]:
    """The names of :class:`HyperLoRAConfig`'s fields, in declaration order."""
    return [f.name for f in dataclasses.fields(HyperLoRAConfig)]
