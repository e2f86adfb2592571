"""Early-Learning Regularization (Liu, Niles-Weed, Razavian, Fernandez-Granda, NeurIPS 2020).

Cross-entropy plus λ·mean log(1 − ⟨t_i, p_i⟩), where t_i is a running average of the model's own
past predictions for example i. Early in training the predictions follow the clean pattern, so
pulling p_i towards t_i keeps the network from fitting the wrong labels later.
"""

from __future__ import annotations

import math
import operator
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from elr_mri.config.checks import BETA_AT_ONE
from elr_mri.distributed import gather_rows

__all__ = ["ELRLoss", "elr_regularizer", "elr_terms", "blend_rows", "update_targets", "at_least_fp32", "one_hot_rows",
           "sigmoid_rampup", "check_elr_settings", "check_batch_shapes", "check_class_count", "check_class_labels",
           "check_index_range", "check_index_shape", "check_table_batch", "index_rows", "non_integer_dtype", "PROB_CLAMP"]

PROB_CLAMP = 1e-4  # the official code clamps softmax to [1e-4, 1 − 1e-4] so log(1 − ⟨t, p⟩) stays finite


def sigmoid_rampup(step: float, length: float) -> float:
    """The ramp exp(−5(1 − s/L)²) of Laine & Aila, used for λ and the EMA momentum; 1 when L = 0."""
    if length <= 0:
        return 1.0
    phase = 1.0 - min(max(step, 0.0), length) / length
    return math.exp(-5.0 * phase * phase)


def at_least_fp32(logits: torch.Tensor) -> torch.Tensor:
    """Half-precision logits (autocast) are upcast: the log(1 − ⟨t, p⟩) term needs the range."""
    return logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits


def one_hot_rows(labels: torch.Tensor, num_classes: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """One-hot rows in `dtype`. Not `F.one_hot`: it checks the label range by reading it back to the
    host, a wait for the GPU at every step (labels are validated when a data set is built)."""
    rows = torch.zeros(len(labels), num_classes, dtype=dtype, device=labels.device)
    return rows.scatter_(1, labels.unsqueeze(1), 1.0)


def check_elr_settings(owner: str, num_examples: int, num_classes: int, lam: float, beta: float,
                       targets_dtype: torch.dtype = torch.float32) -> None:
    """What a target table and the ELR term need, checked once when a loss is built (ELR and ELR+). A NaN or
    infinite λ made every loss NaN or −inf from the first step; an integer table rounded every target to 0 (ELR
    then trained plain cross-entropy without a word), a bool one to 1 (−inf). A count that is no whole number (a float
    N from a split's fraction) failed in torch.zeros, "takes 1 positional argument but 2 were given"."""
    if not (_is_count(num_examples) and _is_count(num_classes)):
        raise ValueError(f"{owner} needs num_examples and num_classes as whole numbers (int), got {num_examples!r}, "
                         f"{num_classes!r}; pass int(...) of each")
    if num_examples <= 0 or num_classes <= 1:
        raise ValueError(f"{owner} needs num_examples > 0 and num_classes > 1, got {num_examples}, {num_classes}")
    if not (math.isfinite(lam) and lam >= 0):
        raise ValueError(f"{owner} lam must be a finite number >= 0, got {lam}")
    if not 0.0 <= beta < 1.0:
        raise ValueError(f"{owner} beta must be in [0, 1), got {beta}: {BETA_AT_ONE}")
    if not (isinstance(targets_dtype, torch.dtype) and targets_dtype.is_floating_point):
        raise ValueError(f"{owner} targets_dtype must be a torch floating-point type (torch.float32, torch.bfloat16 "
                         f"or torch.float16) to hold probabilities, got {targets_dtype!r}")


def _is_count(value: Any) -> bool:
    """Whether `value` is a whole number torch takes as a size: an int, NumPy's integers, an integer tensor of one
    element (anything with `__index__`), not a float and not a bool (True would be a table of one row)."""
    try:
        operator.index(value)
    except TypeError:
        return False
    return not isinstance(value, (bool, np.bool_))


def check_batch_shapes(owner: str, logits: torch.Tensor, labels: torch.Tensor, index: Any = None) -> None:
    """One row of labels (and one index) per row of logits, before any state changes.

    Shapes only: checking label or index values would copy device data to the host, a wait for the
    GPU at every step (the data sets validate their labels when they are built).
    """
    if logits.dim() != 2 or logits.shape[0] == 0:
        raise ValueError(f"{owner}: logits must have shape (batch > 0, classes), got {tuple(logits.shape)}")
    rows = logits.shape[0]
    label_rows = labels.shape[0] if labels.dim() else 1
    indices = None if index is None else index_rows(index)
    if label_rows != rows or indices not in (None, rows):
        given = f"{label_rows} labels" + ("" if indices is None else f" and {indices} indices")
        raise ValueError(f"{owner}: {rows} rows of logits but {given}; pass one per example of the batch")
    if index is not None:
        check_index_shape(owner, index, rows)


def check_class_labels(owner: str, logits: torch.Tensor, labels: Any) -> None:
    """Labels as class indices: a flat torch.long tensor on the logits' device. Another integer type (NumPy's int32),
    one-hot rows, a list or a tensor left on the CPU failed deep in torch, naming neither the loss nor the fix. The
    type, shape and device only: checking the values would make the host wait for the GPU at every step."""
    if (torch.is_tensor(labels) and labels.dtype == torch.long and labels.dim() == 1
            and labels.device == logits.device):
        return
    got = (f"{labels.dtype} on {labels.device}, shape {tuple(labels.shape)}" if torch.is_tensor(labels)
           else f"a {type(labels).__name__}")
    raise ValueError(f"{owner}: labels must be class indices, a 1-D torch.long tensor on the logits' device "
                     f"({logits.device}), got {got}; pass torch.as_tensor(labels).long().to(logits.device) "
                     "(one-hot rows: .argmax(1) first)")


def index_rows(index: Any) -> int:
    """How many indices `index` holds: a tensor, a NumPy array or a list (the official code passes a list)."""
    return index.numel() if torch.is_tensor(index) else int(np.size(index))


def check_index_shape(owner: str, index: Any, rows: int) -> None:
    """A flat vector of indices: a column of them (a data set that returns tensor([i])) selects a (rows, 1, C) block
    of the table, which fails deep in torch."""
    shape = tuple(index.shape if torch.is_tensor(index) else np.shape(index))
    if shape != (rows,):
        raise ValueError(f"{owner}: index must hold one data set index per example, shape ({rows},), got {shape}; "
                         f"flatten it (index.view(-1))")
    dtype = non_integer_dtype(index)  # a float index ended in torch's IndexError; a bool one selects rows as a mask
    if dtype is not None:
        raise ValueError(f"{owner}: index must hold whole data set indices (an integer dtype), got {dtype}; "
                         "pass index.long()")


def non_integer_dtype(positions: Any) -> torch.dtype | np.dtype | None:
    """The dtype of `positions` (a tensor, a NumPy array or a list used to index rows) where it is not an integer
    one, else None: its dtype only, so no device data is read."""
    if torch.is_tensor(positions):
        dtype = positions.dtype
        return dtype if dtype.is_floating_point or dtype.is_complex or dtype == torch.bool else None
    array_dtype = np.asarray(positions).dtype
    return None if array_dtype.kind in "iu" else array_dtype


def check_class_count(owner: str, logits: torch.Tensor, num_classes: int) -> None:
    """Logits as wide as the loss's classes: otherwise a broadcast fails in torch without naming either."""
    if logits.shape[1] != num_classes:
        raise ValueError(f"{owner}: logits have {logits.shape[1]} classes but the loss was built for {num_classes} "
                         f"(num_classes)")


def check_table_batch(owner: str, logits: torch.Tensor, targets: torch.Tensor, index: Any) -> None:
    """Logits as wide as the target table and on its device, and indices within its rows; torch's own errors there
    name neither the loss nor the fix (a table left on the CPU by a loss never moved with `.to(device)`)."""
    check_class_count(owner, logits, targets.shape[1])
    if logits.device != targets.device:
        raise ValueError(f"{owner}: logits are on {logits.device} but the target table is on {targets.device}; "
                         f"move the loss with the model (loss_fn.to(device))")
    check_index_range(owner, index, targets)


def check_index_range(owner: str, index: Any, targets: torch.Tensor) -> None:
    """Indices held on the host (a list, a NumPy array: the official code's, or a CPU tensor beside a GPU's table)
    within the table's rows: a negative one silently read and wrote a row from the end (-1: the last example's), one
    past the end was torch's IndexError naming neither the loss nor the fix. A tensor on the table's device (the
    engine's) is not read: on a GPU the host would wait for it at every step, and a CPU run takes the GPU's path; nor
    is anything under torch.compile, where reading would break the graph."""
    if torch.compiler.is_compiling() or (torch.is_tensor(index) and index.device == targets.device):
        return
    num_examples = targets.shape[0]
    values = index.numpy(force=True) if torch.is_tensor(index) else np.asarray(index)
    if values.size and not (values.min() >= 0 and values.max() < num_examples):
        raise ValueError(f"{owner}: index must hold data set positions 0 to {num_examples - 1} (num_examples "
                         f"{num_examples}), got {values.min()} to {values.max()}; index the training set from 0, "
                         "and build the loss with its size")


def blend_rows(rows: torch.Tensor, probs: torch.Tensor, beta: float) -> torch.Tensor:
    """Temporal ensembling of some rows of a target table: β·t + (1−β)·p̂/Σp̂, with p̂ detached.

    The arithmetic runs in at least float32 whatever the table's storage type (bf16/fp16 halve the memory of a
    large table); the result is in that working type."""
    work_dtype = torch.promote_types(rows.dtype, torch.float32)
    p_hat = probs.detach().to(work_dtype)
    return beta * rows.to(work_dtype) + (1.0 - beta) * p_hat / p_hat.sum(dim=1, keepdim=True)


def update_targets(targets: torch.Tensor, index: torch.Tensor, probs: torch.Tensor, beta: float,
                   global_batch_size: int | None = None) -> None:
    """`blend_rows` in place for the batch's examples.

    Under data parallelism the rows of the whole global batch are gathered first, so every
    process updates every visited example once with its own prediction and the tables agree
    (`global_batch_size`, the size of the batch this is a rank's slice of, spares that gathering a host read).
    """
    index, probs = gather_rows(index, probs.detach(), global_size=global_batch_size)
    targets[index] = blend_rows(targets[index], probs, beta).to(targets.dtype)


def elr_terms(logits: torch.Tensor, labels: torch.Tensor, old_rows: torch.Tensor, beta: float,
              stored_dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One batch of ELR without its state: (cross-entropy, mean log(1 − ⟨t, p⟩), the batch's new target rows as the
    table stores them). The regulariser reads the rows as stored (rounded to a bf16/fp16 table's type), as it would
    read them back from the table.

    Why without state: `ELRLoss.combine` writes the rows and weighs the terms, so this part can run inside the
    network's torch.compile graph (`train.compile_step`), where its ~40 small kernels would otherwise each
    be launched from Python every step.
    """
    logits = at_least_fp32(logits)
    ce = F.cross_entropy(logits, labels)
    probs = F.softmax(logits, dim=1).clamp(PROB_CLAMP, 1.0 - PROB_CLAMP)
    new_rows = blend_rows(old_rows, probs, beta).to(stored_dtype)
    return ce, elr_regularizer(probs, new_rows), new_rows


def elr_regularizer(probs: torch.Tensor, batch_targets: torch.Tensor) -> torch.Tensor:
    """mean log(1 − ⟨t, p⟩): minimising it pushes p towards the targets t."""
    return torch.log(1.0 - (batch_targets.to(probs.dtype) * probs).sum(dim=1)).mean()


class ELRLoss(nn.Module):
    """ELR (Liu et al., "Early-Learning Regularization Prevents Memorization of Noisy Labels", NeurIPS 2020) with
    its table of per-example targets t, one row per training example::

        p = clamp(softmax(logits), 1e-4, 1 − 1e-4)
        t[i] ← β·t[i] + (1 − β)·p̂_i / Σp̂_i        (p̂ = p detached; written before the term reads it)
        loss = CE(logits, labels) + λ · mean_i log(1 − ⟨t[i], p_i⟩)

    as the authors' code (`elr_loss` in ELR/model/loss.py). Why: early in training the predictions follow the
    clean pattern, so pulling p_i towards their running average keeps the network from fitting the wrong labels
    later. The loss goes negative as ⟨t, p⟩ → 1; that is expected.

    Arguments: ``num_examples`` (N, the training set's size: the table's rows), ``num_classes`` (C), ``lam`` (λ)
    and ``beta`` (β); the defaults, λ = 3 and β = 0.7, are the paper's CIFAR-10 symmetric-noise values (its
    CIFAR-100 ones: λ = 7, β = 0.9). ``targets_dtype`` bfloat16/float16 halves a large table's memory (its
    arithmetic stays in float32).

    Call as ``loss_fn(logits, labels, index)``: ``labels`` are class indices, a torch.long tensor of shape (B,) on the
    logits' device; ``index`` holds the batch's data set indices, shape (B,), the rows of the table. It returns the batch mean (there is no ``reduction``), in float32 at least (autocast's bf16/fp16
    logits are upcast first). Every call writes the batch's rows, so call it on training batches only
    (a validation loss is plain cross-entropy). ``targets`` is a registered buffer, so it is saved in
    ``state_dict()`` (checkpoint it with the model) and moves with ``.to(device)``.

    Data parallelism: under ``nn.DataParallel`` call it on the gathered logits, outside the wrapper. Under
    DistributedDataParallel every rank calls it at every step on its own slice; the rows of all ranks are
    gathered (an all-gather), so every rank's table holds the whole global batch's rows, as one process's would.
    Passing ``global_batch_size`` (the size of the global batch) spares a host wait there (see `combine`).

    ``lam_ramp_steps`` > 0 ramps λ in with `sigmoid_rampup` over that many training steps while the
    targets already gather the predictions. Where a network spends its first epochs predicting the
    class prior (small 3D cohorts), full λ from step one would pull every prediction onto the
    majority class; the ramp lets the early-learning phase happen first. ``lam_start_steps`` > 0
    keeps λ at 0 (plain cross-entropy) for that many steps and starts the ramp there: the term then
    acts from the end of the early-learning phase, before memorisation, instead of from a network
    still at the class prior. The step count is saved with the state (as extra state, a Python int:
    no device sync per step).
    """

    targets: torch.Tensor  # the buffer registered in __init__ (nn.Module types attributes Tensor | Module)

    def __init__(self, num_examples: int, num_classes: int, lam: float = 3.0, beta: float = 0.7,
                 targets_dtype: torch.dtype = torch.float32, lam_ramp_steps: int = 0,
                 lam_start_steps: int = 0) -> None:
        super().__init__()
        check_elr_settings("ELRLoss", num_examples, num_classes, lam, beta, targets_dtype)
        for name, steps in (("lam_ramp_steps", lam_ramp_steps), ("lam_start_steps", lam_start_steps)):
            if steps < 0:
                raise ValueError(f"ELRLoss {name} must be >= 0, got {steps}")
        self.num_classes = num_classes
        self.lam = lam
        self.beta = beta
        self.lam_ramp_steps = lam_ramp_steps
        self.lam_start_steps = lam_start_steps
        self.steps_taken = 0
        self.register_load_state_dict_pre_hook(_count_from_zero_if_absent)
        self.register_buffer("targets", torch.zeros(num_examples, num_classes, dtype=targets_dtype))

    def forward(self, logits: torch.Tensor, labels: torch.Tensor, index: torch.Tensor,
                global_batch_size: int | None = None) -> torch.Tensor:
        """The batch mean of CE + λ·regulariser, the batch's table rows written first. ``logits``: shape (B, C);
        ``labels``: class indices, a torch.long tensor of shape (B,) on the logits' device; ``index``: the batch's data
        set indices, shape (B,), an integer tensor, NumPy array or list."""
        check_class_labels("ELRLoss", logits, labels)
        check_batch_shapes("ELRLoss", logits, labels, index)
        check_table_batch("ELRLoss", logits, self.targets, index)
        return self.combine(index, *self.terms(logits, labels, self.targets[index]), global_batch_size=global_batch_size)

    def terms(self, logits: torch.Tensor, labels: torch.Tensor,
              old_rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """`elr_terms` with this loss's β and table type: (CE, regulariser, new rows); changes nothing."""
        return elr_terms(logits, labels, old_rows, self.beta, self.targets.dtype)

    @torch.compiler.disable  # traced, the step count (a Python int) would recompile the loss at every step
    def combine(self, index: torch.Tensor, ce: torch.Tensor, reg: torch.Tensor, new_rows: torch.Tensor,
                global_batch_size: int | None = None) -> torch.Tensor:
        """Store the batch's new target rows (every rank's under data parallelism: the tables stay equal), count
        the step and return CE + λ·regulariser. Called after `terms`, so a label out of range, which fails the
        cross-entropy, changes no row. An example drawn twice in one batch (class-balanced batches drawn with
        replacement) is regularised towards the row its own prediction made; the table keeps one of them.

        Under torchrun, `global_batch_size` (the size of the global batch this is a rank's slice of, which each
        training batch carries) tells every rank the slices' lengths; without it they are exchanged and read back,
        one host wait a step."""
        new_rows = new_rows.to(torch.promote_types(new_rows.dtype, torch.float32))
        index, new_rows = gather_rows(index, new_rows, global_size=global_batch_size)
        self.targets[index] = new_rows.to(self.targets.dtype)
        lam = self.current_lam()
        self.steps_taken += 1
        return ce + lam * reg

    def current_lam(self) -> float:
        """λ at this step: 0 before `lam_start_steps`, then ramped in over `lam_ramp_steps`."""
        if self.steps_taken < self.lam_start_steps:
            return 0.0
        return self.lam * sigmoid_rampup(self.steps_taken - self.lam_start_steps, self.lam_ramp_steps)

    def get_extra_state(self) -> dict[str, Any]:
        return {"steps_taken": self.steps_taken}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.steps_taken = int(state["steps_taken"])


def _count_from_zero_if_absent(module: nn.Module, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
    """Checkpoints written before the λ ramp existed hold no step count; they had no ramp, so 0 is exact."""
    state_dict.setdefault(f"{prefix}_extra_state", {"steps_taken": 0})
