"""The Optuna samplers spx registers: TPE, CMA-ES, NSGA-II and QMC, each an
:class:`~spx.search.optuna_search.OptunaSearch` whose study uses that sampler.

``seeded`` says how many first trials each sampler draws from its seed alone, whatever the
results: TPE's startup trials and NSGA-II's first generation are random draws until that
many trials have finished; CMA-ES and QMC draw their first trial at random (later ones
depend on which trials finished, or failed, before they were asked).

>>> from spx.search.space import FloatRange
>>> s = TPE.from_context(StrategyContext({"x": FloatRange(0, 1)}, trials=2, seed=0))
>>> s.ask().number, TPE.seeded
(0, 10)
"""

from __future__ import annotations

import warnings

import optuna
from optuna.samplers import BaseSampler, CmaEsSampler, NSGAIISampler, QMCSampler, TPESampler

from spx.search.optuna_search import OptunaSearch
from spx.search.registry import SearchStrategy, StrategyContext, register


class Sampled(OptunaSearch, SearchStrategy):
    """An Optuna study asked with the sampler ``sampler`` builds from the sweep seed."""

    adaptive = True

    @classmethod
    def sampler(cls, seed: int) -> BaseSampler:
        raise NotImplementedError

    @classmethod
    def from_context(cls, ctx: StrategyContext) -> Sampled:
        return cls(
            ctx.space,
            ctx.trials,
            cls.sampler(ctx.seed),
            ctx.goals,
            ctx.storage_url,
            ctx.study_name,
            ctx.conditions,
            ctx.constraints,
            ctx.seed,
        )


@register
class TPE(Sampled):
    """Tree-structured Parzen estimator (Bergstra et al. 2011), multivariate."""

    name = "tpe"
    seeded = 10

    @classmethod
    def sampler(cls, seed: int) -> BaseSampler:
        # constant_liar: trials still running count as bad guesses, so parallel asks spread out.
        return TPESampler(
            seed=seed, multivariate=True, constant_liar=True, n_startup_trials=cls.seeded
        )


@register
class CmaEs(Sampled):
    """CMA-ES (Hansen and Ostermeier 2001) over numeric ranges."""

    name = "cmaes"
    title = "CMA-ES"
    seeded = 1
    multi_objective = False
    categorical = False

    @classmethod
    def sampler(cls, seed: int) -> BaseSampler:
        return CmaEsSampler(seed=seed, warn_independent_sampling=False, n_startup_trials=cls.seeded)


@register
class NSGA2(Sampled):
    """NSGA-II (Deb et al. 2002), a genetic algorithm for several objectives."""

    name = "nsga2"
    seeded = 50  # the first generation

    @classmethod
    def sampler(cls, seed: int) -> BaseSampler:
        return NSGAIISampler(seed=seed, population_size=cls.seeded)


@register
class QMC(Sampled):
    """Optuna's scrambled Sobol' quasi-Monte Carlo sampler."""

    name = "qmc"
    seeded = 1

    @classmethod
    def sampler(cls, seed: int) -> BaseSampler:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return QMCSampler(scramble=True, seed=seed, warn_independent_sampling=False)
