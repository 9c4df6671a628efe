"""Conditional-GAN trainer for paired enhancement (degraded -> clean), on MONAI's Ignite engines."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from monai.engines import AdversarialTrainer
from monai.engines.utils import default_metric_cmp_fn
from monai.utils import AdversarialKeys
from monai.utils import CommonKeys as Keys
from torch.optim import Optimizer

from dpe_monai.engines.utils import PairedBatch, autocast, make_ema, resolve_amp_dtype
from dpe_monai.losses import discriminator_loss

__all__ = ["ConditionalGANTrainer"]


def _set_requires_grad(net: torch.nn.Module | None, flag: bool) -> None:
    if net is not None:
        for p in net.parameters():
            p.requires_grad_(flag)


class ConditionalGANTrainer(AdversarialTrainer):
    """Paired conditional-GAN training loop (BasicSR-style) as a MONAI ``AdversarialTrainer``.

    MONAI's ``AdversarialTrainer`` shows the discriminator the *input* as the real sample, which is wrong for
    degraded -> clean enhancement. This subclass overrides the iteration. Per iteration, with ``x`` the
    degraded input ``(B, C, H, W)`` in [0, 1] and ``y`` the clean target:

    1. ``g = G(x)``;
    2. discriminator step (if a discriminator is given): ``d_loss_function(D(y | x), D(g.detach() | x))``;
    3. generator step with the discriminator frozen (``requires_grad=False``):
       ``g_loss_function.components(g, y, D(g | x))["total"]`` (``DPELoss``: L1 + L_RFL + lambda_G L_adv),
       skipped during the first ``d_warmup_iterations`` iterations;
    4. EMA update of the generator weights (if ``ema_decay``).

    ``engine.state.output`` carries MONAI's keys, so stock handlers work: ``Keys.IMAGE`` (input), ``Keys.LABEL``
    (clean), ``Keys.PRED`` (enhanced), ``Keys.LOSS`` (generator total), plus ``AdversarialKeys.*`` and the
    loss components ``"l1"``, ``"rfl"``, ``"adv"`` as floats.

    Args:
        device: training device.
        max_epochs: number of epochs.
        train_data_loader: yields dicts with the degraded image under ``prepare_batch.input_key`` and the clean one
            under ``prepare_batch.target_key``.
        g_network: the generator (e.g. ``DPENet``).
        g_optimizer: its optimiser.
        g_loss_function: a ``DPELoss`` (anything with ``components(pred, target, fake_logits) -> dict`` with a
            ``"total"`` entry, or a plain callable ``(pred, target) -> Tensor``).
        d_network: the discriminator (e.g. ``DPEDiscriminator``) or None to train without the adversarial term.
        d_optimizer: its optimiser (required with ``d_network``).
        d_loss_function: ``(real_logits, fake_logits) -> Tensor``.
        precision: ``"fp32"``, ``"bf16"``, ``"fp16"`` (CUDA) or ``"auto"`` (bf16 where the hardware has it).
        channels_last: use channels-last memory format for 2-D networks and batches.
        d_warmup_iterations: train only the discriminator for this many first iterations.
        ema_decay: keep an EMA copy of the generator (``self.ema_network``) with this decay; None disables it.
        ema_network: an existing ``AveragedModel`` of ``g_network`` to update instead (e.g. built by a bundle config
            with :func:`dpe_monai.engines.make_ema`, so evaluators and checkpoints can refer to it).
        kwargs: forwarded to ``AdversarialTrainer`` (``train_handlers``, ``key_train_metric``, ``epoch_length``...).
    """

    def __init__(
        self,
        device: torch.device | str,
        max_epochs: int,
        train_data_loader: Any,
        g_network: torch.nn.Module,
        g_optimizer: Optimizer,
        g_loss_function: Callable,
        d_network: torch.nn.Module | None = None,
        d_optimizer: Optimizer | None = None,
        d_loss_function: Callable = discriminator_loss,
        prepare_batch: Callable | None = None,
        precision: str = "fp32",
        channels_last: bool = False,
        d_warmup_iterations: int = 0,
        ema_decay: float | None = None,
        ema_network: torch.nn.Module | None = None,
        train_handlers: Sequence | None = None,
        metric_cmp_fn: Callable = default_metric_cmp_fn,
        decollate: bool = False,
        optim_set_to_none: bool = True,
        **kwargs: Any,
    ) -> None:
        if d_network is not None and d_optimizer is None:
            raise ValueError("d_optimizer is required when d_network is given")
        self.amp_dtype = resolve_amp_dtype(precision, device)
        self.channels_last = channels_last
        if channels_last:
            g_network.to(memory_format=torch.channels_last)
            if d_network is not None:
                d_network.to(memory_format=torch.channels_last)
        if ema_network is None and ema_decay:
            ema_network = make_ema(g_network, ema_decay)
        self.ema_network = ema_network
        self.d_warmup_iterations = int(d_warmup_iterations)
        super().__init__(
            device=device,
            max_epochs=max_epochs,
            train_data_loader=train_data_loader,
            g_network=g_network,
            g_optimizer=g_optimizer,
            g_loss_function=g_loss_function,
            recon_loss_function=g_loss_function,
            d_network=d_network if d_network is not None else torch.nn.Identity(),
            d_optimizer=d_optimizer,
            d_loss_function=d_loss_function,
            prepare_batch=prepare_batch or PairedBatch(channels_last=channels_last),
            train_handlers=train_handlers,
            metric_cmp_fn=metric_cmp_fn,
            decollate=decollate,
            optim_set_to_none=optim_set_to_none,
            amp=False,  # precision is handled here, for CPU bf16 as well as CUDA
            **kwargs,
        )
        self.has_discriminator = d_network is not None
        use_scaler = self.amp_dtype == torch.float16
        self.state.g_scaler = torch.amp.GradScaler("cuda") if use_scaler else None
        self.state.d_scaler = torch.amp.GradScaler("cuda") if use_scaler and self.has_discriminator else None

    def _step(self, loss: torch.Tensor, optimizer: Optimizer, scaler: torch.amp.GradScaler | None) -> None:
        if scaler is None:
            loss.backward()
            optimizer.step()
        else:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()

    def _generator_loss(self, fakes: torch.Tensor, targets: torch.Tensor, fake_logits: torch.Tensor | None) -> dict:
        loss_fn = self.state.g_loss_function
        if hasattr(loss_fn, "components"):
            return loss_fn.components(fakes, targets, fake_logits)
        return {"total": loss_fn(fakes, targets)}

    def _iteration(self, engine: ConditionalGANTrainer, batchdata: dict[str, torch.Tensor]) -> dict:  # type: ignore[override]
        if batchdata is None:
            raise ValueError("Must provide batch data for current iteration.")
        batch = engine.prepare_batch(batchdata, engine.state.device, engine.non_blocking)
        inputs, targets = batch[:2]
        args, kwargs = (batch[2], batch[3]) if len(batch) == 4 else ((), {})
        if targets is None:
            raise ValueError("training needs the clean target in the batch")
        g_net, d_net = engine.state.g_network, engine.state.d_network if engine.has_discriminator else None
        dev, dtype = engine.state.device, engine.amp_dtype
        update_g = engine.state.iteration > engine.d_warmup_iterations
        g_net.train()

        with autocast(dev, dtype), torch.set_grad_enabled(update_g):
            fakes = engine.g_inferer(inputs, g_net, *args, **kwargs).float()
        out: dict[str, Any] = {Keys.IMAGE: inputs, Keys.LABEL: targets, AdversarialKeys.REALS: targets}

        if d_net is not None:
            _set_requires_grad(d_net, True)
            d_net.train()
            engine.state.d_optimizer.zero_grad(set_to_none=engine.optim_set_to_none)
            with autocast(dev, dtype):
                real_logits = d_net(targets, inputs).float()
                fake_logits_d = d_net(fakes.detach(), inputs).float()
            d_loss = engine.state.d_loss_function(real_logits, fake_logits_d)
            engine._step(d_loss, engine.state.d_optimizer, engine.state.d_scaler)
            out[AdversarialKeys.REAL_LOGITS] = real_logits.detach()
            out[AdversarialKeys.DISCRIMINATOR_LOSS] = d_loss.detach()

        comps: dict[str, torch.Tensor] = {}
        if update_g:
            fake_logits = None
            if d_net is not None:
                _set_requires_grad(d_net, False)  # frozen discriminator during the generator update
                with autocast(dev, dtype):
                    fake_logits = d_net(fakes, inputs).float()
                out[AdversarialKeys.FAKE_LOGITS] = fake_logits.detach()
            comps = engine._generator_loss(fakes, targets, fake_logits)
            engine.state.g_optimizer.zero_grad(set_to_none=engine.optim_set_to_none)
            engine._step(comps["total"], engine.state.g_optimizer, engine.state.g_scaler)
            if engine.ema_network is not None:
                engine.ema_network.update_parameters(g_net)

        total = comps.get("total", torch.zeros((), device=fakes.device)).detach()
        out.update(
            {
                Keys.PRED: fakes.detach(),
                AdversarialKeys.FAKES: fakes.detach(),
                Keys.LOSS: total,
                AdversarialKeys.GENERATOR_LOSS: total,
                AdversarialKeys.RECONSTRUCTION_LOSS: comps.get("l1", total).detach(),
            }
        )
        for name in ("l1", "rfl", "adv"):
            if name in comps:
                out[name] = float(comps[name].detach())
        engine.state.output = out
        return out
