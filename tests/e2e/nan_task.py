"""A custom task for the end-to-end tests: digits-mlp whose loss is NaN at model.width 13."""

import math

from spx.workers.tasks import DigitsMLP


class NaNAtWidth13(DigitsMLP):
    def build_model(self, cfg):
        model = super().build_model(cfg)
        model.poisoned = cfg.model.width == 13
        return model

    def loss(self, model, batch):
        loss = super().loss(model, batch)
        return loss * math.nan if model.poisoned else loss
