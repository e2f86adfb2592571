"""Loss values and gradients against hand computations, and the ELR target table's behaviour."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from elr_mri.config import LossConfig
from elr_mri.losses import CrossEntropy, ELRLoss, ELRPlusLoss, GCELoss, SCELoss, build_loss, sigmoid_rampup
from elr_mri.losses.elr import elr_terms


def _softmax(row: list[float]) -> np.ndarray:
    e = np.exp(np.array(row) - max(row))
    return e / e.sum()


def test_elr_value_and_target_update_match_hand_computation() -> None:
    logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]], dtype=torch.float64)
    labels = torch.tensor([0, 1])
    index = torch.tensor([3, 1])
    loss_fn = ELRLoss(num_examples=5, num_classes=3, lam=3.0, beta=0.7).double()
    old = torch.rand(5, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    loss_fn.targets.copy_(old)

    loss = loss_fn(logits, labels, index)

    expected_ce, expected_reg = 0.0, 0.0
    for row, (i, y) in enumerate(zip(index.tolist(), labels.tolist())):
        p = np.clip(_softmax(logits[row].tolist()), 1e-4, 1 - 1e-4)
        t = 0.7 * old[i].numpy() + 0.3 * p / p.sum()
        np.testing.assert_allclose(loss_fn.targets[i].numpy(), t, rtol=1e-12)
        expected_ce += -math.log(_softmax(logits[row].tolist())[y]) / 2
        expected_reg += math.log(1 - float(t @ p)) / 2
    assert loss.item() == pytest.approx(expected_ce + 3.0 * expected_reg, rel=1e-10)
    untouched = [0, 2, 4]
    assert torch.equal(loss_fn.targets[untouched], old[untouched])


def test_elr_gradient_is_ce_gradient_plus_regulariser_gradient() -> None:
    # d/dz of λ·log(1 − ⟨t, p⟩) with p = softmax(z) (no clamp active) is
    # −λ/(1 − ⟨t,p⟩) · p ⊙ (t − ⟨t,p⟩) per example, divided by the batch size.
    logits = torch.tensor([[0.3, -0.2, 0.9]], dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([2])
    loss_fn = ELRLoss(num_examples=1, num_classes=3, lam=3.0, beta=0.0).double()
    loss_fn(logits, labels, torch.tensor([0])).backward()

    p = F.softmax(logits.detach(), dim=1)[0]
    t = p / p.sum()  # beta = 0: the target is the current prediction itself
    tp = float(t @ p)
    grad_reg = -3.0 / (1 - tp) * p * (t - tp)
    grad_ce = p - F.one_hot(labels, 3)[0].double()
    torch.testing.assert_close(logits.grad[0], grad_ce + grad_reg)


def test_elr_targets_are_a_buffer_that_round_trips_and_moves() -> None:
    loss_fn = ELRLoss(10, 4)
    loss_fn(torch.randn(3, 4), torch.tensor([0, 1, 2]), torch.tensor([7, 8, 9]))
    state = loss_fn.state_dict()
    assert set(state) == {"targets", "_extra_state"} and state["targets"].shape == (10, 4)
    fresh = ELRLoss(10, 4)
    fresh.load_state_dict(state)
    assert torch.equal(fresh.targets, loss_fn.targets)
    assert fresh.steps_taken == 1  # a resumed λ ramp goes on where it stopped
    older = ELRLoss(10, 4)
    older.load_state_dict({"targets": state["targets"]})  # a checkpoint from before the ramp: still loads
    assert older.steps_taken == 0
    assert fresh.double().targets.dtype == torch.float64  # buffers follow .to()/.double()


def test_elr_loss_goes_negative_once_predictions_agree_with_targets() -> None:
    loss_fn = ELRLoss(1, 2, lam=3.0, beta=0.0)
    logits = torch.tensor([[8.0, -8.0]])
    assert loss_fn(logits, torch.tensor([0]), torch.tensor([0])).item() < 0


def test_elr_lambda_ramps_in_over_steps_while_targets_gather() -> None:
    logits, labels, index = torch.tensor([[1.0, -0.5, 0.2]], dtype=torch.float64), torch.tensor([1]), torch.tensor([0])
    ramped = ELRLoss(1, 3, lam=3.0, beta=0.7, lam_ramp_steps=4).double()
    plain = ELRLoss(1, 3, lam=3.0, beta=0.7).double()
    ce = F.cross_entropy(logits, labels).item()
    for step in range(6):
        full = plain(logits, labels, index).item()
        assert ramped(logits, labels, index).item() == pytest.approx(ce + sigmoid_rampup(step, 4) * (full - ce), rel=1e-10)
    torch.testing.assert_close(ramped.targets, plain.targets)  # the ramp scales λ only
    with pytest.raises(ValueError, match="lam_ramp_steps"):
        ELRLoss(1, 3, lam_ramp_steps=-1)
    assert build_loss(LossConfig(name="elr", lam_ramp_steps=7), 5, 3).lam_ramp_steps == 7


def test_elr_start_keeps_plain_cross_entropy_then_ramps_from_there() -> None:
    logits, labels, index = torch.tensor([[1.0, -0.5, 0.2]], dtype=torch.float64), torch.tensor([1]), torch.tensor([0])
    delayed = ELRLoss(1, 3, lam=3.0, beta=0.7, lam_start_steps=3, lam_ramp_steps=4).double()
    plain = ELRLoss(1, 3, lam=3.0, beta=0.7).double()
    ce = F.cross_entropy(logits, labels).item()
    for step in range(9):
        full = plain(logits, labels, index).item()
        share = 0.0 if step < 3 else sigmoid_rampup(step - 3, 4)
        assert delayed(logits, labels, index).item() == pytest.approx(ce + share * (full - ce), rel=1e-10)
    torch.testing.assert_close(delayed.targets, plain.targets)  # targets gather during the plain-CE steps too
    with pytest.raises(ValueError, match="lam_start_steps"):
        ELRLoss(1, 3, lam_start_steps=-1)
    assert build_loss(LossConfig(name="elr", lam_start_steps=5), 5, 3).lam_start_steps == 5


def test_elr_at_lambda_0_is_cross_entropy_bit_for_bit() -> None:
    """λ = 0 is the CE control of an ELR config (`--set loss.lam=0`): its loss and gradient must be CE's exactly, on
    a saturated prediction too, whose β = 0 target would make the term −inf without the clamp (0 · −inf is NaN)."""
    logits = torch.randn(64, 10, generator=torch.Generator().manual_seed(0)) * 4
    logits[0, 3] = 200.0
    labels = torch.randint(0, 10, (64,), generator=torch.Generator().manual_seed(1))
    elr, plain = logits.clone().requires_grad_(), logits.clone().requires_grad_()
    loss_fn = ELRLoss(64, 10, lam=0.0, beta=0.0)
    for _ in range(2):  # the second step reads the targets the first wrote
        elr.grad = plain.grad = None
        ours, ce = loss_fn(elr, labels, torch.arange(64)), F.cross_entropy(plain, labels)
        ours.backward(), ce.backward()
        assert torch.equal(ours, ce) and torch.equal(elr.grad, plain.grad)


@pytest.mark.parametrize("beta", [-0.1, 1.0])
def test_elr_rejects_beta_outside_unit_interval(beta: float) -> None:
    """β = 1 says why it is refused: the targets would stay zeros and the loss be plain cross-entropy."""
    with pytest.raises(ValueError, match=rf"beta must be in \[0, 1\), got {beta}: at 1 the ELR targets would never move"):
        ELRLoss(5, 3, beta=beta)


def test_gce_matches_formula_and_limits() -> None:
    logits = torch.tensor([[1.0, 2.0, 0.0]])
    labels = torch.tensor([1])
    p_y = _softmax([1.0, 2.0, 0.0])[1]
    assert GCELoss(q=0.7)(logits, labels).item() == pytest.approx((1 - p_y**0.7) / 0.7, rel=1e-6)
    assert GCELoss(q=1.0)(logits, labels).item() == pytest.approx(1 - p_y, rel=1e-6)  # MAE end
    assert GCELoss(q=1e-4)(logits, labels).item() == pytest.approx(-math.log(p_y), rel=1e-3)  # CE end


def test_gce_gradient_stays_finite_where_the_labels_probability_underflows() -> None:
    """A label the network rules out (p_y = 0 in float32): d(p^q)/dp = q·p^(q−1) is infinite at 0, and times
    softmax's zero gradient it is NaN, which an optimiser step would write into every weight."""
    logits = torch.tensor([[0.0, -200.0], [1.0, 0.0]], requires_grad=True)
    loss = GCELoss(q=0.7)(logits, torch.tensor([1, 0]))
    loss.backward()
    p_y = _softmax([1.0, 0.0])[0]  # the ruled-out label's probability is read as 1e-7, the loss's floor
    assert loss.item() == pytest.approx(((1 - 1e-7**0.7) / 0.7 + (1 - p_y**0.7) / 0.7) / 2, rel=1e-6)
    assert torch.isfinite(logits.grad).all()


def test_sce_is_weighted_ce_plus_reverse_ce() -> None:
    logits = torch.tensor([[1.0, 2.0, 0.0]])
    labels = torch.tensor([0])
    p = _softmax([1.0, 2.0, 0.0])
    rce = -(p[1] + p[2]) * math.log(1e-4)  # log of the one-hot's zeros, clamped to 1e-4
    expected = 0.1 * -math.log(p[0]) + 1.0 * rce
    assert SCELoss(3, alpha=0.1, beta=1.0)(logits, labels).item() == pytest.approx(expected, rel=1e-5)
    # a weight of 0 leaves the other term alone: RCE alone, or plain CE (SCE's ablations)
    assert SCELoss(3, alpha=0.0, beta=1.0)(logits, labels).item() == pytest.approx(rce, rel=1e-5)
    assert SCELoss(3, alpha=1.0, beta=0.0)(logits, labels).item() == pytest.approx(-math.log(p[0]), rel=1e-5)
    # a batch's loss is the mean of its examples' losses, both terms alike
    pair = SCELoss(3, alpha=0.1, beta=1.0)(torch.tensor([[1.0, 2.0, 0.0], [0.0, 0.0, 0.0]]), torch.tensor([0, 2]))
    uniform_rce = -(2 / 3) * math.log(1e-4)
    assert pair.item() == pytest.approx((expected + 0.1 * math.log(3) + uniform_rce) / 2, rel=1e-5)
    # the config's sce_alpha weighs the CE term, its sce_beta the reverse one
    built = build_loss(LossConfig(name="sce", sce_alpha=0.0, sce_beta=1.0), 5, 3)
    assert built(logits, labels).item() == pytest.approx(rce, rel=1e-5)


@pytest.mark.parametrize("setting", [{"num_classes": 1}, {"alpha": math.nan}, {"alpha": math.inf}, {"beta": -1.0}])
def test_sce_refuses_weights_that_would_train_nonsense(setting: dict) -> None:
    """β = −1 gave a loss that falls as mass moves onto the wrong classes, α = NaN a NaN loss (∞ an infinite one),
    one class a loss of 0: each trained without a word."""
    arguments = {"num_classes": 3, **setting}
    with pytest.raises(ValueError, match=r"SCELoss needs num_classes > 1 and finite weights alpha, beta >= 0"):
        SCELoss(**arguments)


@pytest.mark.parametrize("q", [0.0, -0.5, 1.5, math.nan])
def test_gce_refuses_a_q_outside_0_to_1(q: float) -> None:
    """(1 − p^q)/q is 0/0 at q = 0: a NaN loss from the first step; past 1 it is no longer between CE and MAE."""
    with pytest.raises(ValueError, match=r"^GCE q must be in \(0, 1\], got "):
        GCELoss(q=q)


def test_ce_equals_torch_cross_entropy() -> None:
    logits, labels = torch.randn(6, 5), torch.randint(0, 5, (6,))
    assert CrossEntropy()(logits, labels).item() == pytest.approx(F.cross_entropy(logits, labels).item())


def test_sigmoid_rampup_shape() -> None:
    assert sigmoid_rampup(0, 100) == pytest.approx(math.exp(-5))
    assert sigmoid_rampup(-30, 100) == pytest.approx(math.exp(-5))  # clipped to the ramp's start, as Laine & Aila's
    assert sigmoid_rampup(50, 100) == pytest.approx(math.exp(-5 * 0.25))
    assert sigmoid_rampup(100, 100) == 1.0 == sigmoid_rampup(500, 100) == sigmoid_rampup(3, 0)


def test_elr_plus_mixes_targets_and_ramps_lambda() -> None:
    torch.manual_seed(0)
    loss_fn = ELRPlusLoss(num_examples=6, num_classes=3, lam=3.0, beta=0.7, coef_step=10).double()
    index = torch.tensor([0, 2, 5])
    other_ema_logits = torch.randn(3, 3, dtype=torch.float64)
    loss_fn.update_targets(index, other_ema_logits)
    expected_t = 0.3 * F.softmax(other_ema_logits, dim=1)
    torch.testing.assert_close(loss_fn.targets[index], expected_t)

    logits = torch.randn(3, 3, dtype=torch.float64)
    perm, mix = torch.tensor([2, 0, 1]), 0.8
    one_hot = F.one_hot(torch.tensor([0, 1, 2]), 3).double()
    mixed_labels = mix * one_hot + (1 - mix) * one_hot[perm]
    loss = loss_fn(logits, mixed_labels, index, perm, mix, step=5)

    q = mix * expected_t + (1 - mix) * expected_t[perm]
    p = F.softmax(logits, dim=1).clamp(1e-4, 1 - 1e-4)
    ce = -(mixed_labels * F.log_softmax(logits, dim=1)).sum(1).mean()
    reg = torch.log(1 - (q * p).sum(1)).mean()
    assert loss.item() == pytest.approx((ce + sigmoid_rampup(5, 10) * 3.0 * reg).item(), rel=1e-10)


def test_elr_plus_targets_keep_a_beta_share_of_their_past_at_each_update() -> None:
    """The temporal ensemble t ← β·t + (1 − β)·softmax: a first update from zero rows cannot tell it from a table
    that forgets (β·0 is 0), the β = 0 of paper App. H, under which ELR+ collapses. A second update must keep β of
    the first, for the rows it revisits only."""
    loss_fn = ELRPlusLoss(num_examples=4, num_classes=3, lam=3.0, beta=0.7).double()
    first, second = torch.randn(2, 3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    loss_fn.update_targets(torch.tensor([0, 1, 2]), first)
    loss_fn.update_targets(torch.tensor([2, 3, 0]), second)
    old = 0.3 * F.softmax(first, dim=1)
    new = 0.3 * F.softmax(second, dim=1)
    expected = torch.stack([0.7 * old[0] + new[2], old[1], 0.7 * old[2] + new[0], new[1]])
    torch.testing.assert_close(loss_fn.targets, expected, rtol=1e-12, atol=0)


def test_elr_plus_label_reweighting_uses_targets() -> None:
    loss_fn = ELRPlusLoss(2, 2, lam=0.0, reweight_labels=True).double()
    loss_fn.targets.copy_(torch.tensor([[0.9, 0.1], [0.2, 0.8]], dtype=torch.float64))
    logits = torch.tensor([[0.0, 1.0], [1.0, 0.0]], dtype=torch.float64)
    labels = torch.tensor([[0.5, 0.5], [0.5, 0.5]], dtype=torch.float64)
    loss = loss_fn(logits, labels, torch.tensor([0, 1]), torch.tensor([0, 1]), 1.0, step=0)
    weights = torch.tensor([[0.9, 0.1], [0.2, 0.8]], dtype=torch.float64)  # labels ∝ 0.5·t
    expected = -(weights * F.log_softmax(logits, dim=1)).sum(1).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-10)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_target_table_tracks_the_float32_one(dtype: torch.dtype) -> None:
    torch.manual_seed(0)
    exact, half = ELRLoss(50, 10), ELRLoss(50, 10, targets_dtype=dtype)
    for _ in range(30):
        logits, labels, index = torch.randn(16, 10), torch.randint(0, 10, (16,)), torch.randperm(50)[:16]
        loss_exact, loss_half = exact(logits, labels, index), half(logits, labels, index)
        assert loss_half.dtype == torch.float32
    assert half.targets.dtype == dtype and half.state_dict()["targets"].dtype == dtype
    torch.testing.assert_close(half.targets.float(), exact.targets, atol=1e-2, rtol=0)
    assert loss_half.item() == pytest.approx(loss_exact.item(), abs=2e-2)


def test_elr_plus_reweighting_keeps_the_labels_of_a_row_whose_targets_underflowed_in_float16() -> None:
    """A prediction of 2e-9 at the label is 0 in a float16 table; 0/0 in the renormalisation was NaN."""
    loss_fn = ELRPlusLoss(4, 100, lam=7.0, beta=0.9, reweight_labels=True, targets_dtype=torch.float16)
    other_ema_logits = torch.zeros(4, 100)
    other_ema_logits[:, 50] = 20.0  # confident in a class that is not the label
    index, perm = torch.arange(4), torch.tensor([1, 0, 3, 2])
    loss_fn.update_targets(index, other_ema_logits)
    assert (loss_fn.targets[:, :50] == 0).all()  # underflowed
    one_hot = F.one_hot(torch.tensor([0, 1, 2, 3]), 100).float()
    mixed_labels = 0.7 * one_hot + 0.3 * one_hot[perm]
    logits = torch.randn(4, 100, requires_grad=True)
    loss = loss_fn(logits, mixed_labels, index, perm, 0.7, step=0)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()
    # the rows' labels as they were (not zeroed, not NaN), plus the ELR term on the (underflowed) targets
    targets = loss_fn.targets[index].float()
    mixed_targets = 0.7 * targets + 0.3 * targets[perm]
    probs = F.softmax(logits.detach(), dim=1).clamp(1e-4, 1 - 1e-4)
    expected = (-(mixed_labels * F.log_softmax(logits.detach(), dim=1)).sum(1).mean()
                + 7.0 * torch.log(1 - (mixed_targets * probs).sum(1)).mean())
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)


def test_losses_refuse_a_batch_whose_labels_or_indices_do_not_match_the_logits() -> None:
    logits = torch.randn(4, 3)
    with pytest.raises(ValueError, match="4 rows of logits but 2 labels"):
        GCELoss()(logits, torch.tensor([0, 1]))
    elr = ELRLoss(10, 3)
    with pytest.raises(ValueError, match="4 rows of logits but 4 labels and 3 indices"):
        elr(logits, torch.tensor([0, 1, 2, 0]), torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="batch > 0"):
        elr(torch.zeros(0, 3), torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long))
    assert (elr.targets == 0).all() and elr.steps_taken == 0
    plus = ELRPlusLoss(10, 3)
    with pytest.raises(ValueError, match="4 rows of logits but 3 labels"):
        plus(logits, torch.ones(3, 3) / 3, torch.arange(4), torch.arange(4), 1.0, step=0)


def test_elr_plus_refuses_class_indices_for_its_mixed_labels_and_mismatched_rows() -> None:
    """ELR+ scores mixed one-hot rows. Class indices, with as many examples as classes, broadcast against the
    log-probabilities into a finite number that is not the loss; one row of the other network's logits
    for several indices was folded into all their targets. Each is one line now, before any target changes."""
    torch.manual_seed(0)
    plus = ELRPlusLoss(20, 4)
    logits, index, perm = torch.randn(4, 4), torch.arange(4), torch.tensor([1, 0, 3, 2])
    with pytest.raises(ValueError, match=r"mixed_labels must both have shape \(4, 4\).*not class indices.*got "
                                         r"\(4, 4\) and \(4,\)"):
        plus(logits, torch.tensor([0, 1, 2, 3]), index, perm, 0.7, step=1)
    with pytest.raises(ValueError, match=r"shape \(3, 4\).*got \(3, 5\) and \(3, 5\)"):
        plus(torch.randn(3, 5), torch.ones(3, 5) / 5, torch.arange(3), torch.arange(3), 0.7, step=1)
    with pytest.raises(ValueError, match=r"perm must pair each of the 4 examples.*got shape \(2,\)"):
        plus(logits, torch.ones(4, 4) / 4, index, perm[:2], 0.7, step=1)
    with pytest.raises(ValueError, match=r"one row of 4 class logits per index, shape \(4, 4\), got \(1, 4\)"):
        plus.update_targets(index, torch.randn(1, 4))
    with pytest.raises(ValueError, match=r"shape \(4, 4\), got \(4, 3\)"):
        plus.update_targets(index, torch.randn(4, 3))
    assert (plus.targets == 0).all()
    plus.update_targets(index, logits)  # what the engine passes is accepted
    one_hot = F.one_hot(torch.tensor([0, 1, 2, 3]), 4).float()
    assert torch.isfinite(plus(logits, 0.7 * one_hot + 0.3 * one_hot[perm], index, perm, 0.7, step=1))


@pytest.mark.parametrize("as_given, kind", [(lambda rows: rows.numpy(), "ndarray"),
                                            (lambda rows: rows.tolist(), "list")])
def test_elr_plus_refuses_mixed_labels_that_are_not_a_tensor_in_one_line(as_given, kind: str) -> None:
    """Its indices may be a NumPy array or a list (the official code's); its mixed labels given so failed with
    "AttributeError: 'numpy.ndarray' object has no attribute 'dim'" (the README's library promises torch tensors)."""
    plus = ELRPlusLoss(10, 3)
    one_hot = F.one_hot(torch.tensor([0, 1, 2, 0]), 3).float()
    with pytest.raises(ValueError) as refused:
        plus(torch.randn(4, 3), as_given(one_hot), np.arange(4), torch.arange(4), 1.0, step=1)
    assert str(refused.value) == (f"ELRPlusLoss: mixed_labels must be a torch tensor (examples × classes, on the "
                                  f"logits' device), got a {kind}; pass torch.as_tensor(mixed_labels, "
                                  "dtype=logits.dtype, device=logits.device)")
    assert (plus.targets == 0).all()


def test_elr_leaves_its_table_alone_when_a_label_is_out_of_range() -> None:
    elr = ELRLoss(10, 3)
    with pytest.raises(IndexError):
        elr(torch.randn(2, 3), torch.tensor([0, 3]), torch.tensor([4, 5]))
    assert (elr.targets == 0).all() and elr.steps_taken == 0


def test_elr_plus_takes_the_official_codes_list_of_indices_and_refuses_its_ellipsis_for_perm_in_one_line() -> None:
    """The official trainer hands `update_hist` the batch's indices as a Python list and, without mixup, `...` for the
    pairing. The forward pass (and ELRLoss) took a list or a NumPy array where the target update failed on
    `index.numel()` (AttributeError: 'list' object has no attribute 'numel'), and `...` for perm failed on `.shape`."""
    logits, perm = torch.randn(4, 3, generator=torch.Generator().manual_seed(0)), torch.tensor([1, 0, 3, 2])
    one_hot = F.one_hot(torch.tensor([0, 1, 2, 0]), 3).float()
    reference = ELRPlusLoss(10, 3)
    reference.update_targets(torch.tensor([2, 5, 7, 9]), logits)
    expected = reference(logits, one_hot, torch.tensor([2, 5, 7, 9]), perm, 0.7, step=1)
    for index in ([2, 5, 7, 9], np.array([2, 5, 7, 9])):
        plus = ELRPlusLoss(10, 3)
        plus.update_targets(index, logits)
        torch.testing.assert_close(plus.targets, reference.targets, rtol=0, atol=0)
        torch.testing.assert_close(plus(logits, one_hot, index, perm, 0.7, step=1), expected, rtol=0, atol=0)
        with pytest.raises(ValueError, match=r"ELRPlusLoss.update_targets: .*shape \(4, 3\), got \(3, 3\)"):
            plus.update_targets(index, logits[:3])
    with pytest.raises(ValueError, match=r"perm must pair each of the 4 examples.*torch.arange of it and mix_lam 1\), "
                                         r"got shape \(\)"):
        plus(logits, one_hot, index, ..., 1.0, step=1)


@pytest.mark.parametrize("make", [lambda: ELRPlusLoss(0, 3), lambda: ELRPlusLoss(10, 1),
                                  lambda: ELRPlusLoss(10, 3, lam=-1.0), lambda: ELRPlusLoss(10, 3, coef_step=-1),
                                  lambda: ELRLoss(10, 3, lam=-1.0)])
def test_elr_and_elr_plus_refuse_settings_out_of_range(make) -> None:
    with pytest.raises(ValueError, match="must be|needs"):
        make()


@pytest.mark.parametrize("loss", [ELRLoss, ELRPlusLoss])
@pytest.mark.parametrize(("setting", "message"), [
    ({"lam": math.nan}, "lam must be a finite number >= 0, got nan"),
    ({"lam": math.inf}, "lam must be a finite number >= 0, got inf"),
    ({"targets_dtype": torch.int64}, "targets_dtype must be a torch floating-point type .* got torch.int64"),
    ({"targets_dtype": "bfloat16"}, "targets_dtype must be a torch floating-point type .* got 'bfloat16'"),
])
def test_elr_and_elr_plus_refuse_a_lambda_or_table_type_that_would_train_nonsense(loss, setting, message) -> None:
    """A NaN or infinite λ passed `lam < 0` and made every loss NaN or −inf; an integer table rounded every target
    to 0, so ELR trained plain cross-entropy without a word; the config's name of a type failed deep in torch."""
    with pytest.raises(ValueError, match=f"{loss.__name__} {message}"):
        loss(10, 3, **setting)


@pytest.mark.parametrize("loss", [ELRLoss, ELRPlusLoss])
@pytest.mark.parametrize("sizes", [(100.0, 3), (10, 3.0), (np.float64(100), 3), (True, 3)],
                         ids=["float-examples", "float-classes", "numpy-float", "bool"])
def test_elr_and_elr_plus_refuse_a_table_size_that_is_no_whole_number_in_one_line(loss, sizes) -> None:
    """A float number of examples (a split's fraction of a data set) or of classes failed in torch.zeros ("takes 1
    positional argument but 2 were given"), naming neither the loss nor the argument; NumPy's integers still pass."""
    got = re.escape(f"got {sizes[0]!r}, {sizes[1]!r}")
    with pytest.raises(ValueError, match=rf"^{loss.__name__} needs num_examples and num_classes as whole numbers "
                                         rf"\(int\), {got}; pass int\(\.\.\.\) of each$"):
        loss(*sizes)
    assert loss(np.int64(10), np.int32(3)).targets.shape == (10, 3)


def test_elr_clamps_a_confident_prediction_and_renormalises_its_target_row() -> None:
    """softmax([12, 0, −3]) clamps to [1 − 1e-4, 1e-4, 1e-4], which sums to 1.0001: the target row is that
    divided by its sum (the official code's p̂/Σp̂), and both the clamp and the division move the row's digits."""
    loss_fn = ELRLoss(1, 3, lam=3.0, beta=0.7).double()
    logits = torch.tensor([[12.0, 0.0, -3.0]], dtype=torch.float64)
    loss = loss_fn(logits, torch.tensor([1]), torch.tensor([0]))
    expected_row = torch.tensor([[0.2999400059994001, 2.999700029997001e-05, 2.999700029997001e-05]],
                                dtype=torch.float64)
    torch.testing.assert_close(loss_fn.targets, expected_row, rtol=1e-12, atol=0)
    assert loss.item() == pytest.approx(10.930367230644368, rel=1e-10)


def test_elr_stays_finite_when_a_prediction_saturates() -> None:
    """In float32 softmax([30, 0, 0]) rounds to exactly one; with β = 0 the target is that prediction, so
    without the clamp ⟨t, p⟩ = 1 and log(1 − ⟨t, p⟩) is −inf, which would poison the weights."""
    loss_fn = ELRLoss(1, 3, lam=3.0, beta=0.0)
    loss = loss_fn(torch.tensor([[30.0, 0.0, 0.0]]), torch.tensor([0]), torch.tensor([0]))
    assert torch.isfinite(loss)
    assert loss.item() == pytest.approx(-24.3347, abs=1e-3)


def test_elr_plus_clamps_confident_predictions() -> None:
    """Logits of 15 give softmax ≈ 1 − 6e-7, above the 1 − 1e-4 clamp: the regulariser must read the clamped value
    (−6.90536), not the raw one (−6.90774), as the official code does."""
    loss_fn = ELRPlusLoss(2, 3, lam=3.0).double()
    loss_fn.targets.copy_(torch.tensor([[0.9, 0.05, 0.05], [0.05, 0.05, 0.9]], dtype=torch.float64))
    logits = torch.tensor([[15.0, 0.0, 0.0], [0.0, 0.0, 15.0]], dtype=torch.float64)
    labels = F.one_hot(torch.tensor([0, 2]), 3).double()
    perm = torch.tensor([0, 1])
    loss = loss_fn(logits, labels, torch.tensor([0, 1]), perm, 1.0, step=0)
    assert loss.item() == pytest.approx(-6.90535562666599, rel=1e-10)


def test_elr_terms_upcast_bf16_logits_to_float32() -> None:
    """Under bf16 autocast the logits arrive in bf16; the terms must be computed in float32 (the log(1 − ⟨t, p⟩)
    term needs the range), i.e. exactly as from the logits converted to float32 first."""
    torch.manual_seed(0)
    logits = (torch.randn(64, 10) * 4).bfloat16()
    labels = torch.randint(0, 10, (64,))
    old_rows = torch.rand(64, 10)
    from_bf16 = elr_terms(logits, labels, old_rows, 0.7, torch.float32)
    from_fp32 = elr_terms(logits.float(), labels, old_rows, 0.7, torch.float32)
    for name, got, expected in zip(("ce", "reg", "rows"), from_bf16, from_fp32):
        assert got.dtype == torch.float32, name
        assert torch.equal(got, expected), name


def test_elr_plus_label_reweighting_uses_the_mixed_targets() -> None:
    """CIFAR-100's setting weighs the mixed labels by the *mixed* targets (the official code's q), the same rows the
    regulariser reads: with an unmixed pairing the first row would be weighed by its own targets alone."""
    loss_fn = ELRPlusLoss(2, 2, lam=0.0, reweight_labels=True).double()
    targets = torch.tensor([[0.9, 0.1], [0.2, 0.8]], dtype=torch.float64)
    loss_fn.targets.copy_(targets)
    logits = torch.tensor([[0.0, 1.0], [1.0, 0.0]], dtype=torch.float64)
    labels = torch.tensor([[0.6, 0.4], [0.4, 0.6]], dtype=torch.float64)
    perm, mix = torch.tensor([1, 0]), 0.6
    loss = loss_fn(logits, labels, torch.tensor([0, 1]), perm, mix, step=0)
    mixed = mix * targets + (1 - mix) * targets[perm]  # [[0.62, 0.38], [0.48, 0.52]]
    weights = labels * mixed / (labels * mixed).sum(dim=1, keepdim=True)
    expected = -(weights * F.log_softmax(logits, dim=1)).sum(1).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-10)


def test_elr_loss_compiled_by_a_user_compiles_once_and_keeps_its_state() -> None:
    """`torch.compile(loss_fn)`: the step count is a Python int, so a traced `combine` recompiled at every step until
    dynamo's limit (8) and then ran eager with a warning. The table's bookkeeping stays eager; the arithmetic
    compiles once and gives the eager loss, table and λ ramp."""
    torch._dynamo.reset()
    graphs = []

    def counting_backend(graph: torch.fx.GraphModule, inputs: list) -> object:
        graphs.append(graph)
        return graph.forward

    compiled_loss, eager = ELRLoss(50, 10, lam_ramp_steps=4), ELRLoss(50, 10, lam_ramp_steps=4)
    compiled = torch.compile(compiled_loss, backend=counting_backend)
    generator = torch.Generator().manual_seed(0)
    for _ in range(12):
        logits = torch.randn(8, 10, generator=generator)
        labels, index = torch.randint(0, 10, (8,), generator=generator), torch.randperm(50, generator=generator)[:8]
        assert torch.equal(compiled(logits, labels, index), eager(logits, labels, index))
    assert len(graphs) == 1
    assert torch.equal(compiled_loss.targets, eager.targets) and compiled_loss.steps_taken == 12


def test_elr_refuses_a_batch_the_table_cannot_take_in_one_line_before_it_changes() -> None:
    """A column of indices (a data set returning tensor([i])), logits of another class count, and logits on another
    device than a table never moved with `.to(device)` each failed deep in torch (a broadcast of (4, 4, 3) into
    (4, 1, 3), a size mismatch, 'not on the expected device meta') without naming the loss or the fix."""
    logits, labels, index = torch.randn(4, 3), torch.tensor([0, 1, 2, 0]), torch.arange(4)
    elr, plus = ELRLoss(10, 3), ELRPlusLoss(10, 3)
    with pytest.raises(ValueError, match=r"ELRLoss: index must hold one data set index per example, shape \(4,\), "
                                         r"got \(4, 1\); flatten it"):
        elr(logits, labels, index[:, None])
    with pytest.raises(ValueError, match=r"ELRLoss: logits have 5 classes but the loss was built for 3"):
        elr(torch.randn(4, 5), labels, index)
    with pytest.raises(ValueError, match=r"ELRLoss: logits are on cpu but the target table is on meta; move the loss "
                                         r"with the model \(loss_fn.to\(device\)\)"):
        ELRLoss(10, 3).to("meta")(logits, labels, index)
    one_hot = F.one_hot(labels, 3).float()
    with pytest.raises(ValueError, match=r"ELRPlusLoss: logits are on cpu but the target table is on meta"):
        ELRPlusLoss(10, 3).to("meta")(logits, one_hot, index, index, 1.0, step=0)
    with pytest.raises(ValueError, match=r"ELRPlusLoss: index must hold .* got \(4, 1\)"):
        plus(logits, one_hot, index[:, None], index, 1.0, step=0)
    assert (elr.targets == 0).all() and elr.steps_taken == 0 and (plus.targets == 0).all()
    assert torch.isfinite(elr(logits[:1], labels[:1], index[:1]))  # a batch of one


@pytest.mark.parametrize("bad", [[0, -1], np.array([0, -3]), np.array([0, 10]), [0, 12]],
                         ids=["list-negative", "numpy-negative", "numpy-past-end", "list-past-end"])
def test_elr_and_elr_plus_refuse_a_host_index_outside_the_table_before_it_changes(bad) -> None:
    """An index of -1 read and wrote the table's last row without a word (ELR then pulled that example towards another's
    predictions); one past the end was torch's IndexError naming neither the loss nor the fix. (A tensor on the table's
    device is not read: on a GPU that would be a host wait at every step.)"""
    logits, labels = torch.randn(2, 3), torch.tensor([0, 1])
    elr, plus = ELRLoss(10, 3), ELRPlusLoss(10, 3)
    with pytest.raises(ValueError, match=r"^ELRLoss: index must hold data set positions 0 to 9 \(num_examples 10\), "
                                         r"got -?\d+ to \d+; index the training set from 0"):
        elr(logits, labels, bad)
    with pytest.raises(ValueError, match=r"^ELRPlusLoss: index must hold data set positions 0 to 9"):
        plus(logits, F.one_hot(labels, 3).float(), bad, torch.tensor([1, 0]), 0.7, step=1)
    with pytest.raises(ValueError, match=r"^ELRPlusLoss.update_targets: index must hold data set positions 0 to 9"):
        plus.update_targets(bad, logits)
    assert (elr.targets == 0).all() and elr.steps_taken == 0 and (plus.targets == 0).all()
    assert torch.isfinite(elr(logits, labels, [0, 9]))  # both ends of the table


@pytest.mark.parametrize("index", [torch.arange(4.0), torch.tensor([True, False, True, False]), [0.0, 1.0, 2.0, 3.0]],
                         ids=["float-tensor", "bool-mask", "float-list"])
def test_elr_refuses_an_index_that_holds_no_whole_numbers_in_one_line(index) -> None:
    """A float index ended in torch's bare IndexError; a bool one of the batch's length would pick the table's rows as
    a mask, a silently wrong update. Refused by dtype alone, before the table changes; a list of ints still works."""
    logits, labels = torch.randn(4, 3), torch.tensor([0, 1, 2, 0])
    elr = ELRLoss(10, 3)
    with pytest.raises(ValueError, match=r"ELRLoss: index must hold whole data set indices \(an integer dtype\), "
                                         r"got .*; pass index.long\(\)"):
        elr(logits, labels, index)
    assert (elr.targets == 0).all() and elr.steps_taken == 0
    assert torch.isfinite(elr(logits, labels, [0, 1, 2, 3]))


def test_elr_plus_refuses_mixed_labels_on_another_device_than_the_logits_in_one_line() -> None:
    """Mixed one-hot rows left on the CPU beside a GPU's logits failed in torch's product ("Expected all tensors to be
    on the same device"), naming neither the loss nor the tensor to move (the meta device stands in for a GPU)."""
    logits, index, perm = torch.randn(4, 3), torch.arange(4), torch.tensor([1, 0, 3, 2])
    one_hot = F.one_hot(torch.tensor([0, 1, 2, 0]), 3).float()
    with pytest.raises(ValueError, match=r"^ELRPlusLoss: mixed_labels are on meta but the logits on cpu; move them "
                                         r"with the batch \(mixed_labels.to\(logits.device\)\)$"):
        ELRPlusLoss(10, 3)(logits, one_hot.to("meta"), index, perm, 0.7, step=1)


@pytest.mark.parametrize("perm", [torch.tensor([1.0, 0.0, 3.0, 2.0]), torch.tensor([False, True, False, False]),
                                  [1.0, 0.0, 3.0, 2.0]], ids=["float-tensor", "bool-one-true", "float-list"])
def test_elr_plus_refuses_a_pairing_that_holds_no_whole_numbers_in_one_line(perm) -> None:
    """A float `perm` ended in torch's bare IndexError; a bool one picked the batch's rows as a mask, and a mask with
    one True broadcast that example's target into every example's mixed target: a finite, wrong loss."""
    logits, index = torch.randn(4, 3), torch.arange(4)
    one_hot = F.one_hot(torch.tensor([0, 1, 2, 0]), 3).float()
    plus = ELRPlusLoss(10, 3)
    plus.update_targets(index, logits)
    with pytest.raises(ValueError, match=r"ELRPlusLoss: perm must hold positions in the batch \(an integer dtype, as "
                                         r"torch.randperm gives\), got .*; pass perm.long\(\)$"):
        plus(logits, one_hot, index, perm, 0.7, step=1)
    assert torch.isfinite(plus(logits, one_hot, index, [1, 0, 3, 2], 0.7, step=1))


@pytest.mark.parametrize("make", [lambda: ELRLoss(10, 3), GCELoss, lambda: SCELoss(3)], ids=["elr", "gce", "sce"])
def test_losses_refuse_labels_that_are_not_class_indices_on_the_logits_device_in_one_line(make) -> None:
    """Labels of NumPy's int32, one-hot rows, a list, or a tensor on another device than the logits failed in torch
    ('expected target dtype to be Long', "'list' object has no attribute 'dim'", a gather's index type) without
    naming the loss or the fix; the ELR table is left as it was."""
    loss, logits, index = make(), torch.randn(4, 3), torch.arange(4)
    labels = torch.tensor([0, 1, 2, 0])
    refused = {"torch.int32 on cpu, shape (4,)": labels.int(), "torch.int64 on cpu, shape (4, 3)": F.one_hot(labels, 3),
               "a list": labels.tolist(), "torch.int64 on meta": labels.to("meta")}
    for got, wrong in refused.items():
        with pytest.raises(ValueError, match=r"Loss: labels must be class indices, a 1-D torch.long tensor on the "
                                             rf"logits' device \(cpu\), got {re.escape(got)}.*\.long\(\)\.to\("):
            loss(logits, wrong, index)
    assert not getattr(loss, "targets", torch.zeros(1)).any()
    assert torch.isfinite(loss(logits, labels, index))


def test_elr_follows_the_official_update_over_steps_in_value_gradient_and_table() -> None:
    """Twenty steps of a linear model's SGD against the authors' recipe written out here: softmax clamped to
    [1e-4, 1 − 1e-4], the rows written with the detached prediction before the term reads them back."""
    torch.manual_seed(0)
    num_examples, num_classes, batch = 40, 10, 8
    start = torch.randn(num_classes, 5, dtype=torch.float64)
    ours_w, ref_w = start.clone().requires_grad_(), start.clone().requires_grad_()
    loss_fn = ELRLoss(num_examples, num_classes, lam=3.0, beta=0.7).double()
    table = torch.zeros(num_examples, num_classes, dtype=torch.float64)
    for _ in range(20):
        index = torch.randperm(num_examples)[:batch]
        inputs, labels = torch.randn(batch, 5, dtype=torch.float64) * 3, torch.randint(0, num_classes, (batch,))
        ours = loss_fn(inputs @ ours_w.T, labels, index)
        logits = inputs @ ref_w.T
        p = F.softmax(logits, dim=1).clamp(1e-4, 1 - 1e-4)
        table[index] = 0.7 * table[index] + 0.3 * p.detach() / p.detach().sum(dim=1, keepdim=True)
        ref = F.cross_entropy(logits, labels) + 3.0 * torch.log(1 - (table[index] * p).sum(dim=1)).mean()
        (ours_grad,), (ref_grad,) = torch.autograd.grad(ours, ours_w), torch.autograd.grad(ref, ref_w)
        torch.testing.assert_close(ours, ref, rtol=1e-12, atol=0)
        torch.testing.assert_close(ours_grad, ref_grad, rtol=1e-12, atol=1e-15)
        torch.testing.assert_close(loss_fn.targets, table, rtol=1e-12, atol=0)
        with torch.no_grad():
            ours_w -= 0.5 * ours_grad
            ref_w -= 0.5 * ref_grad
    assert (loss_fn.targets.sum(dim=1) > 0).sum() > num_examples // 2  # rows visited, most of them more than once


@pytest.mark.parametrize("reweight", [False, True])
def test_elr_plus_follows_the_official_update_over_steps_in_value_gradient_and_table(reweight: bool) -> None:
    """Twenty mixup steps of a linear model's SGD against the authors' ELR+ recipe written out here: the rows blended
    with the other network's unclamped softmax first, then mixed with the batch's pairing and weight, the labels
    (CIFAR-100's setting) weighed by those mixed rows and renormalised, λ ramped at the step, softmax clamped."""
    torch.manual_seed(0)
    num_examples, num_classes, batch, lam, beta, coef_step = 40, 10, 8, 7.0, 0.9, 10
    start = torch.randn(num_classes, 5, dtype=torch.float64)
    ours_w, ref_w = start.clone().requires_grad_(), start.clone().requires_grad_()
    loss_fn = ELRPlusLoss(num_examples, num_classes, lam=lam, beta=beta, coef_step=coef_step,
                          reweight_labels=reweight).double()
    table = torch.zeros(num_examples, num_classes, dtype=torch.float64)
    for step in range(1, 21):
        index, perm = torch.randperm(num_examples)[:batch], torch.randperm(batch)
        inputs, other = (torch.randn(batch, d, dtype=torch.float64) * 3 for d in (5, num_classes))
        mix = max(u := float(np.random.default_rng(step).beta(1.0, 1.0)), 1 - u)
        one_hot = F.one_hot(torch.randint(0, num_classes, (batch,)), num_classes).double()
        mixed_inputs, mixed_labels = (mix * v + (1 - mix) * v[perm] for v in (inputs, one_hot))
        loss_fn.update_targets(index, other)
        ours = loss_fn(mixed_inputs @ ours_w.T, mixed_labels, index, perm, mix, step)
        q = F.softmax(other, dim=1)
        table[index] = beta * table[index] + (1 - beta) * q / q.sum(dim=1, keepdim=True)
        mixed_rows = mix * table[index] + (1 - mix) * table[index][perm]
        labels = mixed_labels * mixed_rows if reweight else mixed_labels
        labels = labels / labels.sum(dim=1, keepdim=True)
        logits = mixed_inputs @ ref_w.T
        p = F.softmax(logits, dim=1).clamp(1e-4, 1 - 1e-4)
        ramp = math.exp(-5 * (1 - min(step, coef_step) / coef_step) ** 2)
        ref = (-(labels * F.log_softmax(logits, dim=1)).sum(dim=1).mean()
               + ramp * lam * torch.log(1 - (mixed_rows * p).sum(dim=1)).mean())
        (ours_grad,), (ref_grad,) = torch.autograd.grad(ours, ours_w), torch.autograd.grad(ref, ref_w)
        torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-15)
        torch.testing.assert_close(ours_grad, ref_grad, rtol=1e-10, atol=1e-13)
        torch.testing.assert_close(loss_fn.targets, table, rtol=1e-12, atol=0)
        with torch.no_grad():
            ours_w -= 0.1 * ours_grad
            ref_w -= 0.1 * ref_grad


def test_elr_plus_target_update_and_sce_refuse_a_batch_they_cannot_take_in_one_line() -> None:
    """ELR+'s target update took a column of indices and a table left on another device into torch's own errors (a
    (4, 4, 3) broadcast, 'not on the expected device'); SCE, alone of the losses, had no shape check, so two labels
    for four rows or logits of three classes for a loss of five failed in a broadcast naming neither."""
    logits, index = torch.randn(4, 3), torch.arange(4)
    plus = ELRPlusLoss(10, 3)
    with pytest.raises(ValueError, match=r"ELRPlusLoss.update_targets: index must hold .* got \(4, 1\)"):
        plus.update_targets(index[:, None], logits)
    with pytest.raises(ValueError, match=r"ELRPlusLoss.update_targets: logits are on cpu but the target table is on "
                                         r"meta"):
        ELRPlusLoss(10, 3).to("meta").update_targets(index, logits)
    assert (plus.targets == 0).all()
    with pytest.raises(ValueError, match="SCELoss: 4 rows of logits but 2 labels"):
        SCELoss(3)(logits, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"SCELoss: logits have 3 classes but the loss was built for 5"):
        SCELoss(5)(logits, torch.tensor([0, 1, 2, 0]))
