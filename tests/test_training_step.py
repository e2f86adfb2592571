"""A step of each method and an epoch of the engine's loop: what they read back to the host; ELR+'s EMA arithmetic.

On a GPU every value read back (`.item()`, `if tensor:`, `F.one_hot`'s range check) makes the host
wait for the device, once a step; the CPU profiler sees the same reads, and the checks (conftest's `host_reads`) also
count values handed to Python (`.tolist()`, `.cpu()`) and blocking `.to(device)` calls, which a CPU runs without any
operator to see, so this guards the GPU path on a CPU. On a GPU (`pytest -m gpu`) torch's sync debug mode also turns
any wait into an error.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from elr_mri.config import RunConfig, load_config
from elr_mri.engine.execution import ExecutionPlan
from elr_mri.engine.methods import ELRPlusPair, Method, NetworkWithLossTerms, build_method, build_optimizer
from elr_mri.engine.runner import evaluate_split, predict_split
from elr_mri.engine.tracking import PredictionTracker
from elr_mri.losses import ELRLoss, one_hot_rows, sigmoid_rampup
from elr_mri.losses.elr import elr_terms

DIGITS = Path(__file__).parents[1] / "configs" / "digits" / "elr_sym40.yaml"
INPUT_SHAPE, NUM_CLASSES, NUM_EXAMPLES, BATCH = (1, 8, 8), 10, 64, 16
devices = ["cpu", pytest.param("cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs CUDA")])]


def _config(loss: str, *overrides: str) -> RunConfig:
    return load_config(DIGITS, [f"loss.name={loss}", "model.name=small_cnn", "model.hidden=8",
                                "elr_plus.ema_ramp_steps=10", *overrides])


def _method(cfg: RunConfig, device: str = "cpu") -> Method:
    plan = ExecutionPlan.from_config(cfg.train, torch.device(device))
    return build_method(cfg, INPUT_SHAPE, NUM_CLASSES, NUM_EXAMPLES, plan)


def _batch(seed: int, device: str = "cpu", with_pair: bool = True) -> dict:
    """A batch as the feeder hands it over: host tensors, pinned when a GPU trains, with the second
    stream's batch under "pair" (ELR+'s second network trains on it; the other methods ignore it)."""
    generator = torch.Generator().manual_seed(seed)
    batch: dict = {"image": torch.rand(BATCH, *INPUT_SHAPE, generator=generator),
                   "label": torch.randint(0, NUM_CLASSES, (BATCH,), generator=generator),
                   "index": torch.randperm(NUM_EXAMPLES, generator=generator)[:BATCH]}
    if device == "cuda":
        batch = {key: value.pin_memory() for key, value in batch.items()}
    return {**batch, "pair": _batch(seed + 1000, device, with_pair=False)} if with_pair else batch


@pytest.mark.parametrize("device", devices)
@pytest.mark.parametrize("loss", ["ce", "gce", "sce", "elr", "elr_plus", "elr_plus-epoch"])
def test_a_training_step_never_waits_for_the_device(loss: str, device: str, no_host_waits) -> None:
    loss, _, alternation = loss.partition("-")
    in_turn = [f"elr_plus.alternation={alternation}"] if alternation else []
    method = _method(_config(loss, "train.compile=false", *in_turn), device)  # the device's other defaults
    tracker = PredictionTracker(NUM_EXAMPLES, NUM_CLASSES, torch.device(device))
    batches = [_batch(seed, device, with_pair=not in_turn) for seed in range(4)]
    if in_turn:  # network 0, 1, 0, 1: both halves of an epoch
        batches = [{**batch, "network": k % 2} for k, batch in enumerate(batches)]
    first_calls = 2 if in_turn else 1  # each network's first-call set-up is not what we look at
    for batch in batches[:first_calls]:
        method.train_step(batch)
    with no_host_waits(device):
        total = None
        for batch in batches[first_calls:]:
            step_loss, logits = method.train_step(batch)
            if logits is not None:
                tracker.record(batch["index"].to(logits.device, non_blocking=True), logits)
            total = step_loss if total is None else total + step_loss  # as the epoch loop sums it


@pytest.mark.parametrize("loss", ["elr", "elr_plus"])
def test_fp16_steps_wait_for_the_device_only_with_an_unfused_optimizer(loss: str, host_reads) -> None:
    """fp16's loss scaling (GPUs without bf16: V100, T4), where `fused_optimizer: auto` is on: the fused step takes the
    scaler's overflow flag on the device. Unfused, torch's GradScaler reads it back once a network's step, the
    exception README states."""
    for fused, reads_a_step in ((True, 0), (False, 1)):
        method = _method(_config(loss, "train.compile=false", "train.precision=fp16", f"train.fused_optimizer={fused}"))
        method.train_step(_batch(0))  # first-call set-up (the scaler's state) is not what we look at
        with host_reads("cpu") as reads:
            for seed in (1, 2):
                method.train_step(_batch(seed))
        network_steps = 2 * len(method.target_tables())  # ELR+ steps both networks
        in_python = [read.split(" (")[0] for read in reads if not read.startswith("aten::")]
        assert in_python == ["item"] * (reads_a_step * network_steps) and bool(reads) == bool(reads_a_step), reads


@pytest.mark.parametrize("loss", ["ce", "elr", "elr_plus", "elr_plus-epoch"])
def test_an_epoch_of_the_engines_loop_reads_back_once(loss: str, host_reads) -> None:
    """The epoch loop as `train` runs it on device-resident batches: the feeder's batches (their indices too), the
    steps, the progress bar and the memorisation tracking read nothing back; the host reads one value an epoch,
    the mean loss for metrics.csv, however many steps the epoch has. A CPU sees no device, so any value handed to
    Python counts (`.tolist()` of a host tensor too): a batch's indices went through a Python list once a step."""
    from elr_mri.data import build_data
    from elr_mri.distributed import DistContext
    from elr_mri.engine.feeding import BatchFeeder
    from elr_mri.engine.runner import _train_epoch

    loss, _, alternation = loss.partition("-")
    in_turn = [f"elr_plus.alternation={alternation}"] if alternation else []
    cfg = _config(loss, "data.train_subset=200", "train.batch_size=32", "train.loader=device", "train.compile=false",
                  *in_turn)
    data = build_data(cfg.data)
    plan = ExecutionPlan.from_config(cfg.train, torch.device("cpu"))
    method = build_method(cfg, data.input_shape, data.num_classes, len(data.train), plan)
    feeder = BatchFeeder(data, cfg, DistContext(), plan.device)
    tracker = PredictionTracker(len(data.train), data.num_classes, plan.device)
    epochs = [feeder.train_epoch(epoch, method.batch_streams, method.streams_in_turn) for epoch in range(2)]
    _train_epoch(method, epochs[0], 0, tracker, show_progress=False)  # first-call set-up is not what we look at
    with host_reads("cpu") as reads:
        mean_loss = _train_epoch(method, epochs[1], 1, tracker, show_progress=True)
    assert feeder.on_device and len(epochs[1]) >= 6 and np.isfinite(mean_loss)
    float_read, *operators = reads
    assert float_read.startswith("__float__ (elr_mri/engine/runner.py:"), reads  # the epoch's mean loss
    assert sorted(operators) == ["aten::_local_scalar_dense ×1", "aten::item ×1"], reads  # that read, in torch


def test_elr_compiled_into_the_network_graph_trains_as_the_eager_loss() -> None:
    """`train.compile_step`: ELR's arithmetic runs in the compiled network's graph (no eager cross-entropy op is
    left in a step), and the losses, target table and weights follow the eager loss's, short batch included."""
    from torch._dynamo.utils import counters
    from torch.profiler import ProfilerActivity, profile

    torch._dynamo.reset()
    counters.clear()
    torch.manual_seed(0)
    eager = _method(_config("elr", "train.compile=false"))
    torch.manual_seed(0)
    fused = _method(_config("elr", "train.compile=true", "train.compile_step=true"))
    assert fused.elr_in_graph is not None and eager.elr_in_graph is None
    batches = [_batch(seed, with_pair=False) for seed in range(3)]
    batches.append({key: value[:5] for key, value in batches[0].items()})  # an epoch's short last batch: eager
    for batch in batches:
        (loss, logits), (fused_loss, fused_logits) = eager.train_step(batch), fused.train_step(batch)
        torch.testing.assert_close(fused_loss, loss, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(fused_logits, logits, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(fused.loss_fn.targets, eager.loss_fn.targets, rtol=1e-4, atol=1e-6)
    assert fused.loss_fn.steps_taken == eager.loss_fn.steps_taken == 4
    for name, weight in eager.model.state_dict().items():
        torch.testing.assert_close(fused.model.state_dict()[name], weight, rtol=1e-3, atol=1e-5)
    assert counters["stats"]["unique_graphs"] == 1
    with profile(activities=[ProfilerActivity.CPU]) as fused_step:
        fused.train_step(batches[1])
    with profile(activities=[ProfilerActivity.CPU]) as eager_step:
        eager.train_step(batches[1])
    assert "aten::nll_loss_forward" in {event.name for event in eager_step.events()}
    assert "aten::nll_loss_forward" not in {event.name for event in fused_step.events()}


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_elr_terms_inside_the_networks_autocast_region_stay_float32(dtype: torch.dtype) -> None:
    """`train.compile_step` computes ELR's terms inside the network's autocast region, where torch lowers matrix
    products to bf16/fp16. A confident example's ⟨t, p⟩ ≈ 0.9996 must not be computed there: bf16's spacing just
    below 1 is 2⁻⁸, so it would round to 1 and log(1 − ⟨t, p⟩) to −inf. The terms equal those computed outside the
    region from the same (rounded) logits."""
    network = torch.nn.Linear(4, 4, bias=False)
    with torch.no_grad():
        network.weight.copy_(torch.eye(4))  # the logits are the inputs, rounded to `dtype` as autocast's linear does
    with_terms = NetworkWithLossTerms(network, ELRLoss(3, 4, beta=0.7))
    inputs = torch.tensor([[12.0, 0.0, 0.0, 0.0], [9.0, 0.0, 0.0, 0.0], [0.0, 3.0, 0.0, 0.0]])
    labels = torch.tensor([0, 0, 1])
    old_rows = torch.tensor([[0.9997, 1e-4, 1e-4, 1e-4], [0.995, 0.002, 0.002, 0.001], [0.1, 0.7, 0.1, 0.1]])
    with ExecutionPlan(torch.device("cpu"), autocast_dtype=dtype, compile=False, channels_last=False).autocast():
        logits, *inside = with_terms(inputs, labels=labels, old_rows=old_rows)
    assert logits.dtype == dtype  # the region is active
    outside = elr_terms(logits.float(), labels, old_rows, 0.7, torch.float32)
    for name, got, expected in zip(("ce", "reg", "rows"), inside, outside, strict=True):
        assert got.dtype == torch.float32 and torch.equal(got, expected), name
    assert torch.isfinite(inside[1])


@pytest.mark.parametrize("loss", ["elr", "elr_plus"])
def test_a_step_the_fp16_loss_scaler_skips_still_moves_the_targets(loss: str) -> None:
    """fp16: a step whose scaled gradients overflow is skipped (weights kept, scale halved), but its forward pass was
    the network's prediction, and the targets average those (t ← βt + (1 − β)p, p from the forward pass, which the
    official code folds in before the backward; ELR+'s from the other network's average, before either steps). So
    the rows move as in the step applied, the tracker gets the same predictions, and ELR+'s EMA copies still
    average their (unchanged) networks."""
    methods = {}
    for skipped in (False, True):
        torch.manual_seed(0)
        np.random.seed(0)  # ELR+'s mixup weight
        method = _method(_config(loss, "train.precision=fp16", "train.compile=false"))
        method.train_step(_batch(0))  # a step applied: the networks move away from their EMA copies
        scalers = method.scalers if isinstance(method, ELRPlusPair) else [method.scaler]
        if skipped:
            for scaler in scalers:
                scaler.update(new_scale=2.0 ** 100)  # the scaled gradients overflow float16
        weights = [{name: value.clone() for name, value in net.state_dict().items()} for net in method.networks()]
        emas = [{name: value.clone() for name, value in ema.named_parameters()} for ema in getattr(method, "emas", [])]
        methods[skipped] = (method, method.train_step(_batch(1))[1], weights, emas, scalers)
    (applied, applied_logits, applied_before, *_), (method, logits, before, emas, scalers) = methods[False], methods[True]
    assert [scaler.get_scale() for scaler in scalers] == [2.0 ** 99] * len(scalers)  # the step was skipped...
    for net, weights in zip(method.networks(), before, strict=True):
        assert all(torch.equal(value, weights[name]) for name, value in net.state_dict().items() if "weight" in name)
    assert not torch.equal(applied.networks()[0].state_dict()["head.weight"], applied_before[0]["head.weight"])
    for tables, applied_tables in zip(method.target_tables(), applied.target_tables(), strict=True):
        assert torch.equal(tables, applied_tables)  # ...and its predictions moved the targets all the same
    assert torch.equal(logits, applied_logits)
    for ema, averaged in zip(getattr(method, "emas", []), emas):
        assert not torch.equal(dict(ema.named_parameters())["head.weight"], averaged["head.weight"])


def test_elr_plus_with_compiled_ema_forwards_trains_as_eager() -> None:
    """`train.compile_step` with ELR+: the EMA copies' forward passes are compiled too, and the pair trains as the
    eager one does."""
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    pairs = {}
    for compiled in (False, True):
        torch.manual_seed(0)
        np.random.seed(0)  # the mixup weight's generator
        settings = ["train.compile=true", "train.compile_step=true"] if compiled else ["train.compile=false"]
        pair = _method(_config("elr_plus", *settings))
        assert isinstance(pair, ELRPlusPair)
        batches = [_batch(seed) for seed in range(3)]
        batches.append({key: value[:5] if torch.is_tensor(value) else value for key, value in batches[0].items()})
        pairs[compiled] = (pair, [pair.train_step(batch) for batch in batches])
    (eager, eager_steps), (fused, fused_steps) = pairs[False], pairs[True]
    for (loss, logits), (fused_loss, fused_logits) in zip(eager_steps, fused_steps, strict=True):
        torch.testing.assert_close(fused_loss, loss, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(fused_logits, logits, rtol=1e-4, atol=1e-5)
    for k in range(2):
        torch.testing.assert_close(fused.losses[k].targets, eager.losses[k].targets, rtol=1e-4, atol=1e-6)
        for name, weight in eager.emas[k].state_dict().items():
            torch.testing.assert_close(fused.emas[k].state_dict()[name], weight, rtol=1e-3, atol=1e-5)
    # networks of one class share a graph: one for the trained pair, one for the EMA copies (no grad, batch statistics)
    assert counters["stats"]["unique_graphs"] == 2


@pytest.mark.parametrize("device", devices)
def test_evaluation_reads_back_once_a_split_not_once_a_batch(device: str, no_host_waits) -> None:
    method = _method(_config("elr", "train.compile=false"), device)
    batches = [_batch(seed, device, with_pair=False) for seed in range(3)]
    method.predict_proba(batches[0])  # first-call set-up (cuDNN's algorithm search) is not what we look at
    with no_host_waits(device):
        outputs = predict_split(method, batches)
    assert outputs is not None and outputs.predicted.device.type == device and len(outputs.predicted) == 3 * BATCH
    probs = torch.cat([method.predict_proba(batch).cpu() for batch in batches])
    labels = torch.cat([batch["label"] for batch in batches])
    score = evaluate_split(method, batches)
    assert score.accuracy == pytest.approx((probs.argmax(1) == labels).double().mean().item())
    in_top5 = (probs.topk(5, dim=1).indices == labels[:, None]).any(1)
    assert score.top5 == pytest.approx(in_top5.double().mean().item()) and score.top5 >= score.accuracy
    assert predict_split(method, []) is None and np.isnan(evaluate_split(method, None).accuracy)


def test_a_split_score_names_the_class_predicted_most_not_the_most_common_label() -> None:
    """The collapse warning names the class a network calls everybody: here every label is another class; a split
    without examples names none."""
    method = _method(_config("elr", "train.compile=false"))
    batches = [_batch(seed, with_pair=False) for seed in range(2)]
    counts = np.bincount(torch.cat([method.predict_proba(b).argmax(1) for b in batches]).numpy(), minlength=NUM_CLASSES)
    most = int(counts.argmax())
    for batch in batches:
        batch["label"] = torch.full_like(batch["label"], (most + 1) % NUM_CLASSES)
    score = evaluate_split(method, batches)
    assert (score.top_class, score.top_class_share, score.label_top_share) == (most, counts.max() / (2 * BATCH), 1.0)
    assert evaluate_split(method, None).top_class == -1  # no examples: no class, not class 0

@pytest.mark.parametrize("schedule", ["ramp", "running_average"])
def test_ema_copies_average_their_networks_parameters_with_the_scheduled_momentum(schedule: str) -> None:
    unread_ramp = ["elr_plus.ema_ramp_steps=40000"] if schedule == "running_average" else []  # default: not set
    cfg = _config("elr_plus", f"elr_plus.ema_schedule={schedule}", *unread_ramp)
    pair = _method(cfg)
    assert isinstance(pair, ELRPlusPair)
    for _ in range(3):  # move the networks away from their EMA copies first
        pair.train_step(_batch(pair.step))
    before = [{name: value.clone() for name, value in ema.named_parameters()} for ema in pair.emas]
    step = pair.step
    pair.train_step(_batch(10))
    # the official code's clock: its n-th step (n = step + 1) ramps the EMA at n + 1; 1 − 1/(n + 1) = 4/5 at n = 4
    decay = {"ramp": sigmoid_rampup(step + 2, cfg.elr_plus.ema_ramp_steps) * cfg.elr_plus.ema_decay,
             "running_average": 1.0 - 1.0 / (step + 2)}[schedule]
    assert 0.0 < decay < cfg.elr_plus.ema_decay  # still ramping: the ramp itself is checked
    for k in range(2):
        averaged = dict(pair.emas[k].named_parameters())
        for name, value in pair.nets[k].named_parameters():
            torch.testing.assert_close(averaged[name], decay * before[k][name] + (1.0 - decay) * value,
                                       rtol=1e-6, atol=1e-7)
        assert not torch.equal(averaged["head.weight"], before[k]["head.weight"])


def test_elr_plus_weight_averages_start_as_copies_of_their_networks() -> None:
    """README (ELR+, the differences left): each average starts as its own network's copy, where the official code
    builds it afresh with other random weights; the two networks themselves start apart."""
    pair = _method(_config("elr_plus"))
    assert isinstance(pair, ELRPlusPair)
    for ema, net in zip(pair.emas, pair.nets):
        averaged, current = ema.state_dict(), net.state_dict()
        assert averaged.keys() == current.keys() and all(torch.equal(averaged[k], current[k]) for k in current)
    assert not torch.equal(pair.nets[0].state_dict()["head.weight"], pair.nets[1].state_dict()["head.weight"])


@pytest.mark.parametrize("loss", ["ce", "elr_plus"])
def test_one_process_queues_no_multiplication_by_one(loss: str) -> None:
    """Alone, a rank's share of the global batch is 1: scaling the loss by it would give the same bits for a kernel in
    the step, one in its backward pass and one in the epoch's sum (two more for ELR+'s second network), each queued
    by the host that the CIFAR step is bound by."""
    from torch.utils._python_dispatch import TorchDispatchMode

    from elr_mri.engine.runner import _train_epoch

    class TimesOne(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.found = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
            factor = args[1] if func.overloadpacket is torch.ops.aten.mul and len(args) > 1 else None
            self.found += factor == 1 if isinstance(factor, float) else torch.is_tensor(factor) and factor.dim() == 0 \
                and bool(factor == 1)
            return func(*args, **(kwargs or {}))

    method = _method(_config(loss, "train.compile=false"))  # mixup's weight, drawn in [0.5, 1), is not 1
    batches = [{**_batch(seed), "global_batch_size": BATCH} for seed in range(2)]
    tracker = PredictionTracker(NUM_EXAMPLES, NUM_CLASSES, torch.device("cpu"))
    with TimesOne() as times_one:
        _train_epoch(method, batches, 0, tracker, show_progress=False)
    assert times_one.found == 0


def test_an_ema_update_is_two_multi_tensor_ops_whatever_the_number_of_parameters() -> None:
    """ELR+'s averages move with one multiply and one add over all their parameters, the decay a Python number: a loop
    over the parameters would launch two kernels per tensor from Python every step (≈200 for PreAct ResNet-18)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Ops(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.names: list[str] = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
            self.names.append(func.overloadpacket.__name__)
            return func(*args, **(kwargs or {}))

    pair = _method(_config("elr_plus"))
    assert isinstance(pair, ELRPlusPair) and len(pair.ema_pairs[0].averaged) == 10  # small_cnn's tensors
    with Ops() as ops:
        pair._update_ema(0)
    assert ops.names == ["_foreach_mul_", "_foreach_add_"]


@pytest.mark.parametrize("loss", ["elr", "elr_plus"])
def test_training_follows_evaluation_in_training_mode(loss: str) -> None:
    """Steps switch BatchNorm back to batch statistics after an evaluation; the EMA copies of ELR+
    always predict with batch statistics (as the official code) but without dropout."""
    method = _method(_config(loss))
    networks = method.nets if isinstance(method, ELRPlusPair) else [method.model]
    method.train_step(_batch(0))
    method.predict_proba(_batch(1))
    method.train_step(_batch(2))
    assert all(module.training for network in networks for module in network.modules())
    for ema in getattr(method, "emas", []):
        batch_norms = [m for m in ema.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
        assert batch_norms and all(m.training for m in batch_norms)
        assert not any(m.training for m in ema.modules() if m not in batch_norms)


def test_elr_plus_networks_train_on_their_own_batches_with_targets_from_the_other_ema() -> None:
    """Network 0 learns on the batch, network 1 on its "pair"; each loss's targets come from the other
    network's EMA copy on that network's own batch (official code: one loader per network)."""
    pair = _method(_config("elr_plus", "loss.beta=0"))  # β = 0: a target is the latest normalised prediction
    assert isinstance(pair, ELRPlusPair)
    batch = _batch(3)
    with torch.no_grad():
        expected = [F.softmax(pair.emas[1 - k](own["image"]), dim=1)
                    for k, own in enumerate((batch, batch["pair"]))]
    pair.train_step(batch)
    for k, own in enumerate((batch, batch["pair"])):
        torch.testing.assert_close(pair.losses[k].targets[own["index"]].float(), expected[k], rtol=1e-4, atol=1e-5)
        untouched = torch.ones(NUM_EXAMPLES, dtype=torch.bool)
        untouched[own["index"]] = False
        assert torch.all(pair.losses[k].targets[untouched] == pair.losses[k].targets[untouched][0])


def test_elr_plus_in_turn_a_batch_trains_its_network_alone_against_the_other_average() -> None:
    """elr_plus.alternation: epoch (the official single-device order): a batch marked for network 0 moves
    network 0, its EMA copy and its targets only, so network 1's average, which network 0 learns from, stands
    still for the whole of network 0's epoch; each network keeps its own step count."""
    pair = _method(_config("elr_plus", "loss.beta=0", "elr_plus.alternation=epoch", "elr_plus.coef_step=100"))
    assert isinstance(pair, ELRPlusPair) and pair.streams_in_turn
    ramp_steps: list[list[int]] = [[], []]  # the step each loss ramps λ at: the official code's n (1, 2, ...)
    for k, loss_fn in enumerate(pair.losses):
        loss_fn.forward = (lambda k, forward: lambda *args: (ramp_steps[k].append(args[-1]), forward(*args))[1])(
            k, loss_fn.forward)
    batch = {**_batch(4, with_pair=False), "network": 0}
    # the EMA copy's parameters: predicting with batch statistics, it still moves its (never read) running ones
    still = [{name: value.clone() for name, value in state}
             for state in (pair.nets[1].state_dict().items(), pair.emas[1].named_parameters(),
                           pair.losses[1].state_dict().items(), pair.nets[0].state_dict().items())]
    with torch.no_grad():
        expected = F.softmax(pair.emas[1](batch["image"]), dim=1)
    loss, logits = pair.train_step(batch)
    assert loss.shape == () and pair.network_steps == [1, 0]
    torch.testing.assert_close(pair.losses[0].targets[batch["index"]].float(), expected, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(F.softmax(logits, dim=1), expected, rtol=1e-4, atol=1e-5)
    for now, before in zip((pair.nets[1].state_dict(), dict(pair.emas[1].named_parameters()),
                            pair.losses[1].state_dict()), still):
        assert now.keys() == before.keys() and all(torch.equal(now[name], before[name]) for name in now)
    assert not torch.equal(pair.nets[0].state_dict()["head.weight"], still[3]["head.weight"])
    ema_before = {name: value.clone() for name, value in pair.emas[1].named_parameters()}
    loss, logits = pair.train_step({**_batch(5, with_pair=False), "network": 1})
    assert logits is None  # only network 0's half is tracked: the same average as with steps in turn
    assert pair.network_steps == [1, 1] and pair.step == 1 and ramp_steps == [[1], [1]]
    decay = sigmoid_rampup(2, 10) * 0.997  # network 1's first step, whatever network 0 has done
    for name, value in pair.nets[1].named_parameters():
        torch.testing.assert_close(dict(pair.emas[1].named_parameters())[name],
                                   decay * ema_before[name] + (1 - decay) * value, rtol=1e-6, atol=1e-7)
    with pytest.raises(RuntimeError, match="got a batch with a pair: the feeder was asked for the other order"):
        pair.train_step(_batch(6))


def test_elr_plus_predicts_with_the_mean_logits_of_its_two_trained_networks() -> None:
    pair = _method(_config("elr_plus"))
    assert isinstance(pair, ELRPlusPair)
    for seed in range(3):
        pair.train_step(_batch(seed))
    images = _batch(5)["image"]
    with torch.no_grad():
        expected = F.softmax((pair.nets[0].eval()(images) + pair.nets[1].eval()(images)) / 2, dim=1)
    torch.testing.assert_close(pair.predict_proba({"image": images}), expected)


def test_a_single_network_predicts_new_images_without_labels_or_indices() -> None:
    """Prediction reads the images (and an MRI model's ages) alone: new scans have no label and no row in the
    training set, as a notebook user who loads a run (`load_run`) and predicts finds."""
    method = _method(_config("elr"))
    images = _batch(5)["image"]
    with torch.no_grad():
        expected = F.softmax(method.networks()[0].eval()(images), dim=1)
    torch.testing.assert_close(method.predict_proba({"image": images}), expected)


def test_one_hot_rows_match_torch_one_hot() -> None:
    labels = torch.tensor([3, 0, 9, 3])
    expected = F.one_hot(labels, NUM_CLASSES)
    assert torch.equal(one_hot_rows(labels, NUM_CLASSES), expected.float())
    assert one_hot_rows(labels, NUM_CLASSES, torch.float64).dtype == torch.float64


def test_optim_momentum_is_adams_beta1() -> None:
    """Adam reads optim.momentum as β1 rather than ignoring a value the user set."""
    cfg = _config("ce", "optim.name=adam", "optim.lr=0.0001", "optim.momentum=0.5")
    optimizer = build_optimizer(cfg, torch.nn.Linear(2, 2))
    assert isinstance(optimizer, torch.optim.Adam) and optimizer.defaults["betas"] == (0.5, 0.999)


@pytest.mark.parametrize("name", ["sgd", "adam"])
def test_an_unfused_optimizer_keeps_torchs_multi_tensor_default(name: str) -> None:
    """fused=False passed to torch would also switch off its foreach kernels: a slower per-tensor loop on a GPU."""
    cfg = _config("ce", f"optim.name={name}")
    unfused, fused = (build_optimizer(cfg, torch.nn.Linear(2, 2), fused=f).defaults for f in (False, True))
    assert unfused["fused"] is None and unfused["foreach"] is None  # torch then picks foreach where it can
    assert fused["fused"] is True


def test_elr_plus_mixes_an_mri_models_age_with_the_images_weight_and_pairing() -> None:
    """The age is part of an MRI model's input: a mixed volume of two subjects is read with their mixed age, by the
    same weight and pairing as the volumes and the labels (the unmixed age would name the first subject alone)."""
    cfg = load_config(Path(__file__).parents[1] / "configs" / "adni" / "cpu_small.yaml",
                      ["loss.name=elr_plus", "elr_plus.alternation=epoch"])
    pair = build_method(cfg, (1, 72, 72, 72), 3, 8, ExecutionPlan.from_config(cfg.train, torch.device("cpu")))
    assert isinstance(pair, ELRPlusPair)
    seen: list[torch.Tensor] = []
    pair.nets[0].register_forward_pre_hook(lambda module, args, kwargs: seen.append(kwargs["age"].clone()),
                                           with_kwargs=True)
    ages = torch.tensor([60.0, 70.0, 80.0, 90.0])
    batch = {"image": torch.rand(4, 1, 72, 72, 72), "label": torch.tensor([0, 1, 2, 0]), "index": torch.arange(4),
             "age": ages, "network": 0}
    torch.manual_seed(1), np.random.seed(1)
    torch_state, numpy_state = torch.get_rng_state(), np.random.get_state()
    pair.train_step(batch)
    torch.set_rng_state(torch_state), np.random.set_state(numpy_state)  # the same draws: perm, then the weight
    perm = torch.randperm(4)
    mix = float(np.random.beta(cfg.elr_plus.mixup_alpha, cfg.elr_plus.mixup_alpha))
    mix = max(mix, 1.0 - mix)
    assert not torch.equal(perm, torch.arange(4)) and mix < 1.0  # a real mixup, or the check below is empty
    torch.testing.assert_close(seen[0], mix * ages + (1.0 - mix) * ages[perm])


def test_elr_plus_suspects_mislabels_from_the_mean_of_its_two_target_tables() -> None:
    """Each network keeps its own targets, from the other's average on its own batches: the mislabel table reads
    both, not the first network's alone."""
    pair = _method(_config("elr_plus"))
    assert isinstance(pair, ELRPlusPair)
    for seed in range(3):
        pair.train_step(_batch(seed))
    first, second = (loss.targets for loss in pair.losses)
    assert not torch.equal(first, second)
    torch.testing.assert_close(pair.targets(), (first + second) / 2, rtol=0, atol=0)


def test_optim_nesterov_reaches_sgd() -> None:
    cfg = _config("ce", "optim.nesterov=true")
    optimizer = build_optimizer(cfg, torch.nn.Linear(2, 2))
    assert isinstance(optimizer, torch.optim.SGD) and optimizer.param_groups[0]["nesterov"] is True


def test_an_epochs_training_loss_is_the_mean_of_its_steps_losses() -> None:
    """metrics.csv's train_loss: the mean over the epoch's steps of each step's loss, read back once."""
    from elr_mri.engine.runner import _train_epoch

    method = _method(_config("ce"))
    method.set_lr(0.0)  # the weights stay, so each step's loss is the network's cross-entropy on its batch
    batches = [_batch(seed, with_pair=False) for seed in range(3)]
    with torch.no_grad():
        expected = np.mean([F.cross_entropy(method.model.train()(b["image"]), b["label"]).item() for b in batches])
    tracker = PredictionTracker(NUM_EXAMPLES, NUM_CLASSES, torch.device("cpu"))
    assert _train_epoch(method, batches, 0, tracker, show_progress=False) == pytest.approx(expected, rel=1e-6)


def test_elr_plus_losses_take_their_settings_from_the_config() -> None:
    """λ, β, the λ ramp, CIFAR-100's label reweighting and the table's type, as the config names them (each loss's
    arithmetic with them is tested in test_losses.py)."""
    pair = _method(_config("elr_plus", "loss.lam=7", "loss.beta=0.9", "elr_plus.coef_step=40",
                           "elr_plus.reweight_labels=true", "loss.targets_dtype=bfloat16"))
    assert isinstance(pair, ELRPlusPair)
    for loss in pair.losses:
        assert (loss.lam, loss.beta, loss.coef_step, loss.reweight_labels, loss.targets.dtype) == (
            7.0, 0.9, 40, True, torch.bfloat16)


def test_elr_plus_without_mixup_trains_on_the_batch_itself() -> None:
    """elr_plus.mixup_alpha 0 turns mixup off: the network sees its batch unmixed (weight 1, not 0, which would
    feed it the paired images under the original labels)."""
    pair = _method(_config("elr_plus", "elr_plus.mixup_alpha=0", "elr_plus.alternation=epoch"))
    assert isinstance(pair, ELRPlusPair)
    seen: list[torch.Tensor] = []
    pair.nets[0].register_forward_pre_hook(lambda module, args: seen.append(args[0].clone()))
    batch = {**_batch(0, with_pair=False), "network": 0}
    pair.train_step(batch)
    assert torch.equal(seen[0], batch["image"])


def test_elr_plus_mixes_the_labels_with_the_images_weight_and_pairing() -> None:
    """A mixed image of examples i and perm[i] is scored against the same mix of their one-hot labels (the unmixed
    labels would teach the network that a blend is wholly its first example), with the weight and pairing the loss
    also mixes the targets with."""
    pair = _method(_config("elr_plus", "elr_plus.alternation=epoch"))
    assert isinstance(pair, ELRPlusPair)
    images: list[torch.Tensor] = []
    calls: list[tuple] = []
    pair.nets[0].register_forward_pre_hook(lambda module, args: images.append(args[0].clone()))
    pair.losses[0].register_forward_pre_hook(lambda module, args: calls.append(args))
    batch = {**_batch(0, with_pair=False), "network": 0}
    torch.manual_seed(1), np.random.seed(1)
    pair.train_step(batch)
    _, mixed_labels, _, perm, mix, _ = calls[0]
    assert not torch.equal(perm, torch.arange(BATCH)) and mix < 1.0  # a real mixup, or the check below is empty
    torch.testing.assert_close(images[0], mix * batch["image"] + (1.0 - mix) * batch["image"][perm])
    one_hot = F.one_hot(batch["label"], NUM_CLASSES).float()
    torch.testing.assert_close(mixed_labels, mix * one_hot + (1.0 - mix) * one_hot[perm])


def test_elr_plus_draws_its_mixup_weight_from_beta_alpha_alpha_folded_to_the_larger_share() -> None:
    """mixup's weight λ ~ Beta(α, α) (ELR+, after Zhang et al.), then max(λ, 1 − λ): each mix is mostly the network's
    own example. Mutation round 5: at the tested α = 1, Beta(α, 1) is the same law, and that mutant survived."""
    pair = _method(_config("elr_plus", "elr_plus.mixup_alpha=0.5"))
    assert isinstance(pair, ELRPlusPair)
    np.random.seed(5)
    drawn = [pair._draw_mixup(BATCH)[0] for _ in range(50)]
    np.random.seed(5)
    expected = [max(weight, 1.0 - weight) for weight in (np.random.beta(0.5, 0.5) for _ in range(50))]
    assert drawn == pytest.approx(expected) and min(drawn) >= 0.5


def test_an_elr_plus_step_of_both_networks_reports_the_mean_of_their_two_losses() -> None:
    """A step that trains both networks records one loss for the pair: their mean, not network 0's alone (mutation
    round 5: returning network 0's loss survived)."""
    pair = _method(_config("elr_plus"))
    assert isinstance(pair, ELRPlusPair)
    each: list[torch.Tensor] = []
    for loss in pair.losses:
        loss.register_forward_hook(lambda module, args, output: each.append(output.detach()))
    reported, _ = pair.train_step(_batch(4))
    assert len(each) == 2 and not torch.equal(each[0], each[1])
    torch.testing.assert_close(reported, (each[0] + each[1]) / 2)
