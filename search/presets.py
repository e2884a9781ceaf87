"""The NAS comparisons a sweep's ``method:`` may name: a grid over the sweep's parameters
times the method's *arms*, the pipelines a fair comparison needs side by side (a
``variant`` axis; each arm sets full dotted keys; the pipelines are in nas.py).

>>> RandomNas.arms  # doctest: +NORMALIZE_WHITESPACE
({'nas.method': 'random-nas', 'prune.method': 'nodes'}, {'prune.method': 'nodes'},
 {'prune.method': 'none'})

i.e. the RS-selected node mask, a random node mask at the same sparsity (the "random
counterpart") and the dense parent. ``dass`` runs DASS and DARTS-then-prune; ``oto`` runs
DHSPG with its compact subnetwork and the dense model. Seeds come from the sweep's own
parameters (``train.seed: {values: [0, 1, 2]}``).

>>> from spx.search.space import Categorical
>>> s = Dass.from_context(StrategyContext({"train.seed": Categorical((0, 1))}, 1, 0))
>>> s.total, s.ask().params
(4, {'train.seed': 0, 'variant': {'nas.method': 'dass'}})
"""

from __future__ import annotations

from spx.errors import ConfigError
from spx.search.grid import GridSearch
from spx.search.registry import StrategyContext, register
from spx.search.space import Categorical, Space

VARIANT = "variant"


class NasPreset(GridSearch):
    """A grid over the sweep's axes times the arms."""

    @classmethod
    def check(cls, space: Space, objectives: int) -> None:
        if VARIANT in space:
            raise ConfigError(
                f"method {cls.name} adds its own {VARIANT!r} axis; rename yours or use "
                "method: grid",
                field=f"parameters.{VARIANT}",
            )
        super().check(space, objectives)

    @classmethod
    def from_context(cls, ctx: StrategyContext) -> NasPreset:
        arms = Categorical(cls.arms)
        return cls({**ctx.space, VARIANT: arms}, ctx.conditions, ctx.constraints)


@register
class RandomNas(NasPreset):
    """Random node-mask search (Farahani 2024, arXiv 2403.08265) beside its two baselines."""

    name = "random-nas"
    arms = (
        {"nas.method": "random-nas", "prune.method": "nodes"},
        {"prune.method": "nodes"},
        {"prune.method": "none"},
    )


@register
class Dass(NasPreset):
    """DASS (Mousavi et al. 2023, ACM TECS) beside DARTS-then-prune."""

    name = "dass"
    arms = ({"nas.method": "dass"}, {"nas.method": "darts"})


@register
class Oto(NasPreset):
    """OTOv2's compact subnetwork (Chen et al., ICLR 2023, DHSPG) beside the dense model."""

    name = "oto"
    arms = ({"prune.method": "oto"}, {"prune.method": "none"})
