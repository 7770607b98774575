"""Keras's `fit` over a built model: training-mode forward, backward through every layer,
one optimizer step per batch on the trainable weights only."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

import numpy as np

from seqcli.build import BuiltModel
from seqcli.errors import DivergedError
from seqcli.layers import regularizers
from seqcli.runtime.model import model_input, named_out_of_memory, run_layer
from seqcli.training.data import output_shape_for
from seqcli.training.losses import Loss
from seqcli.training.metrics import Metric, get_metric
from seqcli.training.optimizers import Optimizer


@dataclass
class History:
    """Per-epoch metrics, as Keras's `History.history`."""

    history: dict[str, list[float]] = field(default_factory=dict)

    def add(self, metrics: dict[str, float]) -> None:
        """Append one epoch's metrics."""
        for name, value in metrics.items():
            self.history.setdefault(name, []).append(value)


@dataclass(frozen=True)
class TrainingPlan:
    """What a training step asks of a built model's layers, looked up once for all its steps
    (each layer's options are pydantic attributes, slow to read by the dozen at every batch)."""

    built: BuiltModel
    """The model the plan was made for."""
    leaves: list
    """Its computing layers (`LayerInfo`), in execution order."""
    trainable_before: list[bool]
    """Per layer: whether some layer before it has trainable weights (it then needs its input
    gradient)."""
    regularized: list[tuple[str, dict]]
    """(key, regularizer) of each trainable weight that has a regularizer, in layer order."""
    constrained: list[tuple[str, dict]]
    """(key, constraint) of each trainable weight that has a constraint, in layer order."""
    activity: list[bool]
    """Per layer: whether its output adds a penalty to the loss (`has_output_penalty`)."""


def training_plan(built: BuiltModel) -> TrainingPlan:
    """The `TrainingPlan` of `built`."""
    leaves = built.leaves()
    trainable_before, seen = [], False
    regularized, constrained, activity = [], [], []
    for info in leaves:
        trainable_before.append(seen)
        seen = seen or bool(info.trainable_keys)
        for options, found in ((info.layer.weight_regularizers(), regularized),
                               (info.layer.weight_constraints(), constrained)):
            found.extend((f"{info.path}/{name}", option) for name, option in options.items()
                         if f"{info.path}/{name}" in info.trainable_keys)
        activity.append(info.layer.has_output_penalty())
    return TrainingPlan(built, leaves, trainable_before, regularized, constrained, activity)


def _plan_for(built: BuiltModel, plan: TrainingPlan | None) -> TrainingPlan:
    """`plan` when it was made for `built`, else `built`'s own `training_plan`."""
    return plan if plan is not None and plan.built is built else training_plan(built)


def train_step(built: BuiltModel, weights: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray,
               loss: Loss, optimizer: Optimizer, rng: np.random.Generator,
               plan: TrainingPlan | None = None):
    """One batch: forward in training mode, loss, backward, update. Returns (loss, the
    batch's outputs, their mask or None); frozen weights are never written. `plan`: the
    model's `training_plan`, made once for many steps (made here when None)."""
    plan = _plan_for(built, plan)
    leaves = plan.leaves
    caches, output_grads = [], []
    h, mask = x, None
    penalty = weight_penalty(built, weights, plan)  # Keras adds model.losses to the loss
    for info, activity in zip(leaves, plan.activity):
        layer = info.layer
        own = info.own_weights(weights)
        with named_out_of_memory(info, len(h)):
            if mask is not None and layer.takes_mask:
                out, cache = layer.forward_train(own, h, rng, mask=mask)
            else:
                out, cache = layer.forward_train(own, h, rng)
        mask = layer.compute_mask(h, mask)
        h = out
        caches.append(cache)
        if activity:
            penalty += layer.output_penalty(out)
        output_grads.append(layer.output_penalty_gradient(out) if activity else None)
    value = loss.value(y, h, mask) + penalty
    trainable_before = plan.trainable_before
    gradients: dict[str, np.ndarray] = {}
    grad = loss.gradient(y, h, mask)
    for index in range(len(leaves) - 1, -1, -1):
        info = leaves[index]
        if not trainable_before[index] and not info.trainable_keys:
            break  # nothing at or before this layer learns
        if output_grads[index] is not None:
            grad = grad + output_grads[index]
        with named_out_of_memory(info, len(x)):
            grad, layer_grads = info.layer.backward(info.own_weights(weights), caches[index],
                                                    grad, input_grad=trainable_before[index])
        prefix = info.path + "/"
        for name, value_grad in layer_grads.items():
            if prefix + name in info.trainable_keys:
                gradients[prefix + name] = value_grad
    for key, regularizer in plan.regularized:
        if key in gradients:
            gradients[key] = gradients[key] + regularizers.penalty_gradient(regularizer,
                                                                            weights[key])
    ordered = {key: gradients[key] for key in built.weight_shapes if key in gradients}
    optimizer.apply(weights, ordered)
    apply_constraints(built, weights, plan)
    return value, h, mask


def weight_penalty(built: BuiltModel, weights: dict[str, np.ndarray],
                   plan: TrainingPlan | None = None) -> float:
    """The regularizers' penalties on the trainable weights, as Keras's `Layer.losses`
    counts them (a frozen weight's regularizer adds nothing)."""
    plan = _plan_for(built, plan)
    return sum((regularizers.penalty(regularizer, weights[key])
                for key, regularizer in plan.regularized), 0.0)


def apply_constraints(built: BuiltModel, weights: dict[str, np.ndarray],
                      plan: TrainingPlan | None = None) -> None:
    """Project each trainable weight that has a constraint, in place, as Keras's optimizer
    does after every update."""
    plan = _plan_for(built, plan)
    for key, constraint in plan.constrained:
        regularizers.constrain(constraint, weights[key])


def _forward_with_penalty(built: BuiltModel, weights: dict[str, np.ndarray], x: np.ndarray,
                          plan: TrainingPlan):
    """(output, its mask, the layers' activity and weight penalties) at inference, as
    Keras's `test_step` counts them in the loss."""
    h, mask, penalty = x, None, weight_penalty(built, weights, plan)
    for info, activity in zip(plan.leaves, plan.activity):
        h, mask = run_layer(info, weights, h, mask)
        if activity:
            penalty += info.layer.output_penalty(h)
    return h, mask, penalty


def default_metrics(loss: Loss) -> list[str]:
    """The metrics `fit` reports besides the loss: accuracy for the classification losses."""
    return ["accuracy"] if loss.classification else []


def evaluate(built: BuiltModel, weights: dict[str, np.ndarray], x, y, loss: Loss,
             batch_size: int, metrics: list[str] | None = None,
             on_batch: Callable[[int], None] | None = None) -> dict[str, float]:
    """Keras's `evaluate` in inference mode: the loss (with the layers' activity penalties)
    of each batch, averaged weighted by the batches' sizes, then each metric accumulated over
    the whole set (`metrics`: Keras's names; default `default_metrics(loss)`).
    `on_batch(rows)` after each batch. ValueError for an unknown metric name."""
    trackers = make_metrics(output_shape_for(built, np.shape(x)[1:]), y, loss, metrics)
    plan = training_plan(built)
    total = 0.0
    for start in range(0, len(x), batch_size):
        xb = model_input(built, x[start:start + batch_size], start)
        yb = np.asarray(y[start:start + batch_size])
        out, mask, penalty = _forward_with_penalty(built, weights, xb, plan)
        total += (loss.value(yb, out, mask) + penalty) * len(xb)
        for tracker in trackers:
            tracker.update(yb, out, mask)
        if on_batch is not None:
            on_batch(len(xb))
    results = {"loss": total / max(len(x), 1)}
    results.update((tracker.name, tracker.result()) for tracker in trackers)
    return results


def make_metrics(output_shape: tuple, y, loss: Loss,
                 names: list[str] | None) -> list[Metric]:
    """Fresh metrics of `names` (default: `default_metrics(loss)`) for the targets `y` of
    outputs of per-sample shape `output_shape` (see `output_shape_for`): a ValueError for an
    unknown name, an InputDataError for targets a metric cannot take."""
    names = default_metrics(loss) if names is None else names
    return [get_metric(name, y, output_shape) for name in names]


def fit(built: BuiltModel, weights: dict[str, np.ndarray], x, y, *, loss: Loss,
        optimizer: Optimizer, epochs: int, batch_size: int, shuffle: bool, seed: int,
        validation: tuple | None = None, metrics: list[str] | None = None,
        on_epoch_end: Callable[[int, dict[str, float], float], None] | None = None,
        on_batch_end: Callable[[int, int, Callable[[], dict[str, float]]], None] | None = None,
        ) -> History:
    """Keras's `fit`: `epochs` passes over (x, y) in batches (reshuffled each epoch unless
    `shuffle` is False), the loss and `metrics` (Keras's names; default
    `default_metrics(loss)`) accumulated over each epoch's training batches, and evaluated on
    `validation`; `on_epoch_end(epoch, metrics, seconds)` after each, and `on_batch_end(
    batches done, batches in the epoch, the running metrics)` after each batch (the metrics
    so far, as Keras's progress bar shows them, computed when called). A DivergedError as
    soon as a batch's loss, or at an epoch's end a weight, is NaN or infinite."""
    import time

    rng = np.random.default_rng(seed)
    history = History()
    rows = len(x)
    output_shape = output_shape_for(built, np.shape(x)[1:])
    plan = training_plan(built)
    for epoch in range(epochs):
        start_time = time.monotonic()
        order = rng.permutation(rows) if shuffle else np.arange(rows)
        total, trackers = 0.0, make_metrics(output_shape, y, loss, metrics)
        for start in range(0, rows, batch_size):
            index = order[start:start + batch_size]
            xb = model_input(built, x[index], index)
            yb = np.asarray(y[index])
            value, output, mask = train_step(built, weights, xb, yb, loss, optimizer, rng,
                                             plan=plan)
            if not math.isfinite(value):
                raise DivergedError(f"the loss became {_number(value)} at epoch {epoch + 1}, "
                                    f"batch {start // batch_size + 1}", epoch)
            total += value * len(index)
            for tracker in trackers:
                tracker.update(yb, output, mask)
            if on_batch_end is not None:
                on_batch_end(start // batch_size + 1, -(-rows // batch_size),
                             partial(_results, total / (start + len(index)), trackers))
        check_weights_finite(weights, epoch)
        results = _results(total / max(rows, 1), trackers)
        if validation is not None:
            for name, value in evaluate(built, weights, *validation, loss, batch_size,
                                        metrics).items():
                results[f"val_{name}"] = value
        history.add(results)
        if on_epoch_end is not None:
            on_epoch_end(epoch, results, time.monotonic() - start_time)
    return history


def _results(loss: float, trackers) -> dict[str, float]:
    """The loss and each metric's result so far, as `History` records them."""
    results = {"loss": loss}
    results.update((tracker.name, tracker.result()) for tracker in trackers)
    return results


def check_weights_finite(weights: dict[str, np.ndarray], epoch: int) -> None:
    """A DivergedError when some weight became NaN or infinite during epoch `epoch` (from 0)."""
    for key, array in weights.items():
        if not np.isfinite(array).all():
            raise DivergedError(f"the weight {key} became NaN or Inf during epoch {epoch + 1}",
                                epoch)


def _number(value: float) -> str:
    """NaN, Inf or -Inf, as numpy prints them in messages."""
    return "NaN" if math.isnan(value) else ("Inf" if value > 0 else "-Inf")
