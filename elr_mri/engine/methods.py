"""Training methods the engine drives: one network with a loss, or the ELR+ pair.

Both expose the same small surface (train_step, predict_proba, targets, set_lr, state_dict), so
the epoch loop, evaluation and checkpoints do not care which one runs.
"""

from __future__ import annotations

import copy
from typing import Any, NamedTuple, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from elr_mri.config import RunConfig
from elr_mri.distributed import DistContext, scaled_to_global_batch
from elr_mri.engine.execution import ExecutionPlan
from elr_mri.engine.feeding import Batch
from elr_mri.losses import ELRLoss, ELRPlusLoss, build_loss, one_hot_rows, sigmoid_rampup, targets_dtype
from elr_mri.losses.elr import elr_terms
from elr_mri.models import build_model

__all__ = ["Method", "SingleNetwork", "ELRPlusPair", "build_method", "build_optimizer"]



class Method(Protocol):
    """What the engine needs of a training method; see `SingleNetwork` and `ELRPlusPair`."""

    batch_streams: int  # independently shuffled walks over the training set each epoch (ELR+: one per network)
    streams_in_turn: bool  # 2 streams one after the other, each batch marked with the "network" it trains; else
    # each batch of the first stream carries the same-numbered batch of the second under "pair"

    def train_step(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor | None]:
        """One optimisation step; returns (detached loss, logits on the un-mixed batch for tracking, or None
        when this batch's predictions are not tracked).

        Both stay on the device: reading a value back would make the host wait for the GPU every step.
        """

    def predict_proba(self, batch: Batch) -> torch.Tensor:
        """Class probabilities for a batch (its "image" and, for MRI models, "age")."""

    def targets(self) -> torch.Tensor | None:
        """The ELR target table (examples × classes), or None for losses without one."""

    def target_tables(self) -> list[torch.Tensor]:
        """The target tables as stored, no copy (none for losses without one)."""

    def set_lr(self, lr: float) -> None: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...

    def end_training(self) -> None:
        """Drop what only training steps use (the DDP and compiled wrappers); prediction needs none of it."""

    def networks(self) -> list[nn.Module]:
        """The networks whose mean logits prediction reads: the one model, or ELR+'s two trained networks."""


def build_optimizer(cfg: RunConfig, model: nn.Module, fused: bool = False) -> torch.optim.Optimizer:
    """SGD, or Adam with optim.momentum as its β1 (the same role: how much of the past gradient is kept);
    `fused`: torch's single-kernel implementation (`ExecutionPlan.fused_optimizer`). Otherwise `fused` is left
    unset, not False: an explicit False also turns off torch's default multi-tensor (foreach) kernels."""
    o, fused_or_default = cfg.optim, (True if fused else None)
    if o.name == "sgd":
        return torch.optim.SGD(model.parameters(), lr=o.lr, momentum=o.momentum,
                               weight_decay=o.weight_decay, nesterov=o.nesterov, fused=fused_or_default)
    return torch.optim.Adam(model.parameters(), lr=o.lr, betas=(o.momentum, 0.999), weight_decay=o.weight_decay,
                            fused=fused_or_default)


def build_method(cfg: RunConfig, input_shape: tuple[int, ...], num_classes: int, num_examples: int,
                 plan: ExecutionPlan, dist: DistContext = DistContext()) -> Method:
    if cfg.loss.name == "elr_plus":
        return ELRPlusPair(cfg, input_shape, num_classes, num_examples, plan, dist)
    model = plan.place_model(build_model(cfg.model, input_shape, num_classes))
    loss_fn = build_loss(cfg.loss, num_examples, num_classes).to(plan.device)
    return SingleNetwork(model, loss_fn, build_optimizer(cfg, model, plan.fused_optimizer), plan, dist)


class NetworkWithLossTerms(nn.Module):
    """The network followed by ELR's stateless terms (`elr_terms`, as `ELRLoss.terms`), one module for torch.compile
    (`train.compile_step`): the loss's arithmetic joins the network's graph, and its CUDA graph under
    reduce-overhead, where it would otherwise be ~40 small kernels launched from Python every step. Returns
    (logits, cross-entropy, regulariser, the batch's new target rows); `ELRLoss.combine` does the rest. Only β and
    the table's type are kept, not the loss: the 45,000-row target table never enters the graph, only the batch's
    rows do."""

    def __init__(self, network: nn.Module, loss_fn: ELRLoss) -> None:
        super().__init__()
        self.network = network
        self.beta, self.stored_dtype = loss_fn.beta, loss_fn.targets.dtype

    def forward(self, images: torch.Tensor, labels: torch.Tensor, old_rows: torch.Tensor,
                **extra: torch.Tensor) -> tuple[torch.Tensor, ...]:
        logits = self.network(images, **extra)
        return (logits, *elr_terms(logits, labels, old_rows, self.beta, self.stored_dtype))


class SingleNetwork:
    """One network trained with CE, GCE, SCE or ELR."""

    batch_streams = 1
    streams_in_turn = False

    def __init__(self, model: nn.Module, loss_fn: nn.Module, optimizer: torch.optim.Optimizer,
                 plan: ExecutionPlan, dist: DistContext = DistContext()) -> None:
        self.model = model
        # ELR's loss terms compiled into the step's graph (train.compile_step); None: the loss runs after the model
        self.elr_in_graph = loss_fn if plan.compiles_step and isinstance(loss_fn, ELRLoss) else None
        network = NetworkWithLossTerms(model, self.elr_in_graph) if self.elr_in_graph is not None else model
        # DDP outermost, as torch.compile expects it (it splits the graph at DDP's gradient buckets)
        self.trained = plan.compiled(_data_parallel(network, dist, plan.device))
        self.loss_fn = loss_fn
        self.optimizer = optimizer
        self.plan = plan
        self.scaler = plan.grad_scaler()

    def train_step(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        _ensure_training(self.trained, self.model)
        images, labels, index, extra = _unpack(batch, self.plan)
        global_batch_size = batch.get("global_batch_size")
        if self.elr_in_graph is not None:
            with self.plan.autocast():
                logits, *terms = self.trained(images, labels=labels, old_rows=self.elr_in_graph.targets[index],
                                              **extra)
            loss = self.elr_in_graph.combine(index, *terms, global_batch_size=global_batch_size)
        else:
            with self.plan.autocast():
                logits = self.trained(images, **extra)
            loss = self.loss_fn(logits.float(), labels, index, global_batch_size=global_batch_size)
        _step(self.optimizer, self.scaler, scaled_to_global_batch(loss, len(labels), global_batch_size))
        return loss.detach(), logits.detach()

    @torch.no_grad()
    def predict_proba(self, batch: Batch) -> torch.Tensor:
        images, extra = _model_inputs(batch, self.plan)
        self.model.eval()
        with self.plan.autocast():
            logits = self.model(images, **extra)
        return F.softmax(logits.float(), dim=1)

    def targets(self) -> torch.Tensor | None:
        return getattr(self.loss_fn, "targets", None)

    def target_tables(self) -> list[torch.Tensor]:
        table = self.targets()
        return [] if table is None else [table]

    def set_lr(self, lr: float) -> None:
        _set_lr(self.optimizer, lr)

    def state_dict(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "loss": self.loss_fn.state_dict(),
                "optimizer": self.optimizer.state_dict(), "scaler": self.scaler.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.loss_fn.load_state_dict(state["loss"])
        self.optimizer.load_state_dict(state["optimizer"])
        _load_scaler_state(self.scaler, state["scaler"])

    def end_training(self) -> None:
        self.trained, self.elr_in_graph = self.model, None

    def networks(self) -> list[nn.Module]:
        return [self.model]


class ELRPlusPair:
    """ELR+: two networks, each with an EMA copy; net k learns from the other net's EMA targets.

    Each network has its own batches (the feeder's two streams: as the official code's two loaders, the
    networks walk the data in independent orders), either a step each in turn every step or, with
    `elr_plus.alternation: epoch` (the official single-device order), network 0 a whole epoch and then
    network 1. The *other* network's EMA predicts network k's un-mixed batch and loss k folds that into its
    targets; then network k takes a step on its own mixup of its batch (lam = max(lam, 1 − lam)) and its
    EMA copy's weights follow with the scheduled momentum. As in the official code (its single-device branch; its two-GPU-process branch
    copies the averages once per epoch and validates network 1 with network 2's average), the EMA copies
    predict with their BatchNorm layers in training mode (statistics of the batch, not averaged ones;
    dropout stays off) and inference averages the logits of the two trained networks. Under data parallelism the targets stay exact
    (gathered) and the EMA copies agree across ranks; mixup pairs are drawn within each rank's slice.
    """

    batch_streams = 2

    def __init__(self, cfg: RunConfig, input_shape: tuple[int, ...], num_classes: int, num_examples: int,
                 plan: ExecutionPlan, dist: DistContext = DistContext()) -> None:
        self.cfg = cfg.elr_plus
        self.num_classes = num_classes
        self.plan = plan
        self.nets = [plan.place_model(build_model(cfg.model, input_shape, num_classes)) for _ in range(2)]
        self.emas = [_batch_statistics_mode(copy.deepcopy(net).requires_grad_(False)) for net in self.nets]
        self.ema_pairs = [EmaPairs.match(ema, net) for ema, net in zip(self.emas, self.nets)]
        # the EMA copies' forward passes each step, compiled with `train.compile_step`: eager, each is a whole
        # network's kernels launched one by one from Python
        self.ema_runs = [plan.compiled(ema) if plan.compiles_step else ema for ema in self.emas]
        self.trained = [plan.compiled(_data_parallel(net, dist, plan.device)) for net in self.nets]
        self.losses = [
            ELRPlusLoss(num_examples, num_classes, lam=cfg.loss.lam, beta=cfg.loss.beta,
                        coef_step=self.cfg.coef_step, reweight_labels=self.cfg.reweight_labels,
                        targets_dtype=targets_dtype(cfg.loss)).to(plan.device)
            for _ in range(2)
        ]
        self.optimizers = [build_optimizer(cfg, net, plan.fused_optimizer) for net in self.nets]
        self.scalers = [plan.grad_scaler() for _ in range(2)]
        self.streams_in_turn = self.cfg.alternation == "epoch"
        self.network_steps = [0, 0]  # equal at every epoch's end, where checkpoints are written

    @property
    def step(self) -> int:
        """Steps network 0 has taken: each network's, at an epoch's end."""
        return self.network_steps[0]

    def train_step(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Network batch["network"] trains on `batch` alone (`elr_plus.alternation: epoch`: the streams come in
        turn), or network 0 on `batch` and network 1 on batch["pair"]. Returns the mean loss and, for network
        0's batches, network 1's EMA logits on `batch` (the targets' source for those examples) for tracking:
        in either order the tracker sees the same network's average."""
        if ("network" in batch) != self.streams_in_turn:
            raise RuntimeError(f"ELR+ with elr_plus.alternation = {self.cfg.alternation} got a batch "
                               f"{'marked for one network' if 'network' in batch else 'with a pair'}: the feeder "
                               "was asked for the other order")
        if self.streams_in_turn:
            k = int(batch["network"])
            own, global_size = _unpack(batch, self.plan), batch.get("global_batch_size")
            target_logits = self._fold_targets(k, own, global_size)
            loss = self._network_step(k, own, global_size)
            self.network_steps[k] += 1
            return loss, target_logits if k == 0 else None
        own_batches = (batch, batch["pair"])
        unpacked = [_unpack(own, self.plan) for own in own_batches]
        global_sizes = [own.get("global_batch_size") for own in own_batches]
        # both networks' targets before either step
        folded = [self._fold_targets(k, own, global_sizes[k]) for k, own in enumerate(unpacked)]
        losses = [self._network_step(k, own, global_sizes[k]) for k, own in enumerate(unpacked)]
        self.network_steps = [steps + 1 for steps in self.network_steps]
        return (losses[0] + losses[1]) / 2, folded[0]

    def _fold_targets(self, k: int, own: tuple, global_batch_size: int | None) -> torch.Tensor:
        """The other network's EMA logits on network k's un-mixed batch, folded into network k's targets."""
        images, _, index, extra = own
        with torch.no_grad(), self.plan.autocast():
            # a copy: under CUDA graphs a replay reuses its outputs' memory, and tracking reads these after the steps
            logits = self.ema_runs[1 - k](images, **extra).to(torch.float32, copy=True)
        self.losses[k].update_targets(index, logits, global_batch_size)
        return logits

    def _network_step(self, k: int, own: tuple, global_batch_size: int | None) -> torch.Tensor:
        """Network k's step on its own mixup of its batch, then its EMA copy's; returns the detached loss."""
        images, labels, index, extra = own
        one_hot = one_hot_rows(labels, self.num_classes)
        mix_lam, perm = self._draw_mixup(len(labels))
        mixed_images, mixed_labels = (mix_lam * t + (1.0 - mix_lam) * t[perm] for t in (images, one_hot))
        mixed_extra = {key: mix_lam * t + (1.0 - mix_lam) * t[perm] for key, t in extra.items()}
        _ensure_training(self.trained[k], self.nets[k])
        with self.plan.autocast():
            logits = self.trained[k](mixed_images, **mixed_extra)
        loss = self.losses[k](logits.float(), mixed_labels, index, perm, mix_lam, self.network_steps[k] + 1)
        _step(self.optimizers[k], self.scalers[k], scaled_to_global_batch(loss, len(labels), global_batch_size))
        self._update_ema(k)
        return loss.detach()

    def _draw_mixup(self, batch_size: int) -> tuple[float, torch.Tensor]:
        """The mixup weight from NumPy's generator on the host, as the official code draws it, and
        the pairing drawn where the batch lives: neither makes the host wait for the device."""
        perm = torch.randperm(batch_size, device=self.plan.device)
        if self.cfg.mixup_alpha <= 0:
            return 1.0, perm
        mix_lam = float(np.random.beta(self.cfg.mixup_alpha, self.cfg.mixup_alpha))
        return max(mix_lam, 1.0 - mix_lam), perm

    def _ema_decay(self, steps_before: int) -> float:
        """The weight of the average so far at a network's step n = steps_before + 1, as the official code
        computes it: min(1 − 1/(n + 1), γ), or the ramp at n + 1 (its λ ramp, in the loss, is at n)."""
        if self.cfg.ema_schedule == "running_average":
            return min(1.0 - 1.0 / (steps_before + 2), self.cfg.ema_decay)
        return sigmoid_rampup(steps_before + 2, self.cfg.ema_ramp_steps) * self.cfg.ema_decay

    @torch.no_grad()
    def _update_ema(self, k: int) -> None:
        """ema ← decay·ema + (1 − decay)·net over the parameters with multi-tensor kernels, as torch's
        optimizers do: on a GPU, two launches per tensor (≈200 for ResNet-18) add up every step."""
        decay = self._ema_decay(self.network_steps[k])
        pairs = self.ema_pairs[k]
        torch._foreach_mul_(pairs.averaged, decay)
        torch._foreach_add_(pairs.averaged, pairs.current, alpha=1.0 - decay)

    @torch.no_grad()
    def predict_proba(self, batch: Batch) -> torch.Tensor:
        images, extra = _model_inputs(batch, self.plan)
        for net in self.nets:
            net.eval()
        with self.plan.autocast():
            logits = [net(images, **extra).float() for net in self.nets]
        return F.softmax((logits[0] + logits[1]) / 2, dim=1)

    def targets(self) -> torch.Tensor:
        return (self.losses[0].targets.float() + self.losses[1].targets.float()) / 2

    def target_tables(self) -> list[torch.Tensor]:
        return [loss.targets for loss in self.losses]

    def set_lr(self, lr: float) -> None:
        for optimizer in self.optimizers:
            _set_lr(optimizer, lr)

    def state_dict(self) -> dict[str, Any]:
        parts: dict[str, list[Any]] = {"nets": self.nets, "emas": self.emas, "losses": self.losses,
                                       "optimizers": self.optimizers, "scalers": self.scalers}
        if self.network_steps[0] != self.network_steps[1]:
            raise RuntimeError(f"ELR+ saved part-way through an epoch (network steps {self.network_steps}); "
                               "checkpoints are written at epochs' ends")
        return {**{key: [p.state_dict() for p in pair] for key, pair in parts.items()}, "step": self.step}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pairs: tuple[tuple[str, list[Any]], ...] = (("nets", self.nets), ("emas", self.emas), ("losses", self.losses),
                                                    ("optimizers", self.optimizers))
        for key, pair in pairs:
            for part, part_state in zip(pair, state[key]):
                part.load_state_dict(part_state)
        for scaler, scaler_state in zip(self.scalers, state["scalers"]):
            _load_scaler_state(scaler, scaler_state)
        self.network_steps = [int(state["step"])] * 2

    def end_training(self) -> None:
        self.trained, self.ema_runs = list(self.nets), list(self.emas)

    def networks(self) -> list[nn.Module]:
        return list(self.nets)


class EmaPairs(NamedTuple):
    """An EMA copy's parameters beside its network's, matched by name once.

    Only parameters are averaged, as in the official code: the EMA copy predicts with batch statistics,
    so BatchNorm's running averages are not read. Why match once: walking both modules every step cost
    0.55 ms of host time per network (PreAct ResNet-18, this CPU), time in which a GPU waits. The
    tensors stay valid: load_state_dict and the updates write into them in place.
    """

    averaged: list[torch.Tensor]
    current: list[torch.Tensor]

    @classmethod
    def match(cls, ema: nn.Module, net: nn.Module) -> EmaPairs:
        ema_params, net_params = dict(ema.named_parameters()), dict(net.named_parameters())
        return cls([ema_params[name].data for name in net_params], [param.data for param in net_params.values()])


def _batch_statistics_mode(model: nn.Module) -> nn.Module:
    """`model` in evaluation mode except its BatchNorm layers, which normalise with the batch's own
    statistics: the official ELR+ code runs its EMA copies in training mode."""
    model.eval()
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.train()
    return model


def _data_parallel(model: nn.Module, dist: DistContext, device: torch.device) -> nn.Module:
    """DDP-wrapped under torchrun, the model itself otherwise (the module is what checkpoints hold)."""
    if not dist.enabled:
        return model
    device_ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=device_ids)


def _ensure_training(run: nn.Module, model: nn.Module) -> None:
    """Training mode for `run` (the model, wrapped or compiled) once evaluation has switched `model` off.

    Why not call train() every step: it walks every submodule, 0.34 ms of host time for ResNet-34
    on this CPU and twice that through the compiled wrapper, which holds the model twice.
    """
    if not model.training:
        run.train()


def _step(optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler, loss: torch.Tensor) -> None:
    """Backward and update, through the fp16 loss scaler (a pass-through when disabled)."""
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()


def _unpack(batch: Batch, plan: ExecutionPlan) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """(images, labels, index, extra model inputs) of a training batch."""
    images, extra = _model_inputs(batch, plan)
    labels, index = (batch[key].to(plan.device, non_blocking=True) for key in ("label", "index"))
    return images, labels, index, extra


def _model_inputs(batch: Batch, plan: ExecutionPlan) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """(images, extra model inputs): MRI batches carry the subject's age. Prediction reads these alone, so a batch of
    new scans or images needs no label or data set index."""
    extra = {"age": batch["age"].to(plan.device, dtype=torch.float32, non_blocking=True)} if "age" in batch else {}
    return plan.place_input(batch["image"]), extra


def _load_scaler_state(scaler: torch.amp.GradScaler, state: dict[str, Any]) -> None:
    """A disabled scaler (fp32 and bf16 runs) saves `{}`, which an enabled one refuses: a resume that
    switches to fp16 starts its scaler afresh instead."""
    if state:
        scaler.load_state_dict(state)


def _set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
