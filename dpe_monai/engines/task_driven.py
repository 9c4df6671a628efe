"""Task-driven fine-tuning of an enhancer with a frozen downstream network (GradProm, sum, HQG-style alternation)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from monai.engines import SupervisedTrainer
from monai.utils import CommonKeys as Keys
from torch.optim import Optimizer

from dpe_monai.engines.gradient_promotion import promote_gradients
from dpe_monai.engines.utils import PairedBatch

__all__ = ["TASK_MODES", "TaskDrivenTrainer"]

#: ``sum``: ``L_e + w L_t``; ``gradprom``: :func:`promote_gradients`; ``alternate``: HQG-style, even iterations
#: step on ``L_e``, odd ones on ``w L_t`` (the task network stays frozen, so the inner level is fixed).
TASK_MODES = ("sum", "gradprom", "alternate")


class TaskDrivenTrainer(SupervisedTrainer):
    """Fine-tune an enhancer for a downstream task, as a MONAI ``SupervisedTrainer``.

    Per iteration, with ``x`` the degraded input ``(B, C, H, W)`` in [0, 1], ``y`` the clean target and ``s`` the
    task label (e.g. a ``(B, 1, H, W)`` class-index map):

    1. ``g = G(x)`` (the enhancer, trained);
    2. ``L_e = loss_function(g, y)`` (enhancement loss, e.g. L1) and ``L_t = task_loss_function(T(g), s)`` with the
       task network ``T`` frozen (``requires_grad=False``, eval mode: it is never updated);
    3. the enhancer's gradient by ``mode`` (:data:`TASK_MODES`): the plain sum, GradProm (``g_e + w g_t`` only where
       the two gradients have a positive cosine, :func:`~dpe_monai.engines.gradient_promotion.promote_gradients`),
       or HQG-style alternation between the two losses;
    4. optimiser step and EMA update (``ema_network``, as in the enhancement trainer).

    ``engine.state.output`` has MONAI's keys (``Keys.IMAGE``, ``Keys.LABEL`` = clean image, ``Keys.PRED``,
    ``Keys.LOSS`` = ``L_e + w L_t``) plus floats ``"enhancement_loss"``, ``"task_loss"``, ``"task_loss_clean"``
    (the frozen task network's loss on the clean crops: the floor the task loss can reach), ``"cosine"`` (between
    the two gradients; NaN in ``sum``/``alternate`` mode, where it is not computed) and ``"promoted"``.

    Args:
        device: training device.
        max_epochs: number of epochs.
        train_data_loader: batches with the degraded image (``prepare_batch.input_key``), the clean image
            (``prepare_batch.target_key``) and the task label (``task_label_key``).
        network: the enhancer (e.g. the shipped ``GlobalLocalNet``).
        optimizer: the enhancer's optimiser.
        loss_function: enhancement loss ``(pred, clean) -> Tensor``.
        task_network: the downstream network, frozen here.
        task_loss_function: ``(task_network(pred), label) -> Tensor``.
        mode: one of :data:`TASK_MODES`.
        task_weight: ``w``.
        granularity: GradProm's cosine over all parameters (``"global"``) or per parameter tensor (``"tensor"``).
        task_label_key: batch key of the task label.
        prepare_batch: default :class:`~dpe_monai.engines.PairedBatch` (``lq`` -> ``image``).
        ema_network: an ``AveragedModel`` of ``network`` to update after every step (or None).
        kwargs: forwarded to ``SupervisedTrainer`` (``train_handlers``, ``epoch_length``, ``inferer``...).
    """

    def __init__(
        self,
        device: torch.device | str,
        max_epochs: int,
        train_data_loader: Any,
        network: torch.nn.Module,
        optimizer: Optimizer,
        loss_function: Callable,
        task_network: torch.nn.Module,
        task_loss_function: Callable,
        mode: str = "gradprom",
        task_weight: float = 1.0,
        granularity: str = "global",
        task_label_key: str = Keys.LABEL,
        prepare_batch: Callable | None = None,
        ema_network: torch.nn.Module | None = None,
        train_handlers: Sequence | None = None,
        **kwargs: Any,
    ) -> None:
        if mode not in TASK_MODES:
            raise ValueError(f"mode must be one of {TASK_MODES}, got {mode!r}")
        super().__init__(
            device=device,
            max_epochs=max_epochs,
            train_data_loader=train_data_loader,
            network=network,
            optimizer=optimizer,
            loss_function=loss_function,
            prepare_batch=prepare_batch or PairedBatch(),
            train_handlers=train_handlers,
            amp=False,
            **kwargs,
        )
        self.task_network = task_network.to(device).eval()
        for p in self.task_network.parameters():
            p.requires_grad_(False)
        self.task_loss_function = task_loss_function
        self.mode = mode
        self.task_weight = float(task_weight)
        self.granularity = granularity
        self.task_label_key = task_label_key
        self.ema_network = ema_network

    def _apply(self, params: list[torch.nn.Parameter], grads: Sequence[torch.Tensor]) -> None:
        for p, g in zip(params, grads):
            p.grad = g.detach()
        self.optimizer.step()

    def _iteration(self, engine: TaskDrivenTrainer, batchdata: dict[str, torch.Tensor]) -> dict:  # type: ignore[override]
        if batchdata is None:
            raise ValueError("Must provide batch data for current iteration.")
        batch = engine.prepare_batch(batchdata, engine.state.device, engine.non_blocking)
        inputs, targets = batch[:2]
        args, kwargs = (batch[2], batch[3]) if len(batch) == 4 else ((), {})
        label = torch.as_tensor(batchdata[engine.task_label_key]).to(engine.state.device)
        net = engine.network
        net.train()
        params = [p for group in engine.optimizer.param_groups for p in group["params"] if p.requires_grad]
        engine.optimizer.zero_grad(set_to_none=True)

        pred = engine.inferer(inputs, net, *args, **kwargs).float()
        loss_e = engine.loss_function(pred, targets)
        loss_t = engine.task_loss_function(engine.task_network(pred), label)
        w = engine.task_weight
        stats = {"cosine": float("nan"), "promoted": float("nan")}
        if engine.mode == "sum":
            (loss_e + w * loss_t).backward()
            engine.optimizer.step()
            stats["promoted"] = 1.0
        elif engine.mode == "alternate":
            task_step = engine.state.iteration % 2 == 0
            (w * loss_t if task_step else loss_e).backward()
            engine.optimizer.step()
            stats["promoted"] = float(task_step)
        else:
            g_e = torch.autograd.grad(loss_e, params, retain_graph=True, allow_unused=True)
            g_t = torch.autograd.grad(loss_t, params, allow_unused=True)
            grads, stats = promote_gradients(g_e, g_t, w, engine.granularity)
            engine._apply(params, grads)
        if engine.ema_network is not None:
            engine.ema_network.update_parameters(net)
        with torch.no_grad():  # the floor: the frozen task network's loss on the clean crops themselves
            loss_clean = engine.task_loss_function(engine.task_network(targets.float()), label)
        total = (loss_e + w * loss_t).detach()
        out = {
            Keys.IMAGE: inputs,
            Keys.LABEL: targets,
            Keys.PRED: pred.detach(),
            Keys.LOSS: total,
            "enhancement_loss": float(loss_e.detach()),
            "task_loss": float(loss_t.detach()),
            "task_loss_clean": float(loss_clean),
            **stats,
        }
        engine.state.output = out
        return out
