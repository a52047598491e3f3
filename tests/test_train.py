"""The training loop: exact resume, seeding, schedules, clipping, metrics, against torch references."""
from __future__ import annotations

import os
import sys

import matplotlib
import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import accuracy_score
from torch import nn

from course_lib.checkpoint import load_weights, save_weights
from course_lib.data import load_digits
from course_lib.train import FitConfig, History, evaluate, fit, plot_history, predict


def digits(n=600):
    images, labels = load_digits()
    return images[:n], labels[:n]


def small_cnn(seed=0, dropout=0.3):
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),  # (N, 8, 4, 4)
        nn.Flatten(), nn.Dropout(dropout), nn.Linear(8 * 4 * 4, 10),
    )


def random_flip(x, generator=None):
    """Augmentation that ignores fit's generator and draws from the global torch RNG (must be restored on resume)."""
    flip = torch.rand(len(x)) < 0.5
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


def run(epochs, checkpoint_path=None, resume=False):
    model = small_cnn()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.7)
    train, val = digits(500), digits(600)
    history = fit(model, train, (val[0][500:], val[1][500:]), config=FitConfig(epochs=epochs, batch_size=64,
                  optimizer=optimizer, scheduler=scheduler, device="cpu", augment=random_flip,
                  checkpoint_path=checkpoint_path, resume=resume, progress=False, seed=3))
    return model, history


def test_resume_is_bit_identical_to_an_uninterrupted_run(tmp_path):
    ckpt = tmp_path / "run.pt"
    straight, straight_history = run(epochs=4)
    run(epochs=2, checkpoint_path=ckpt)  # "interrupted" after 2 epochs
    resumed, resumed_history = run(epochs=4, checkpoint_path=ckpt, resume=True)
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), f"{name} differs after resume: max |diff| = {(a - b).abs().max()}"
    for key in ("train_loss", "train_acc", "val_loss", "val_acc", "lr"):
        assert getattr(straight_history, key) == getattr(resumed_history, key), key
    assert len(resumed_history.seconds) == 4


def test_same_seed_same_run_other_seed_other_run():
    train = digits(300)
    runs = []
    for seed in (0, 0, 1):
        model = small_cnn()
        fit(model, train, config=FitConfig(epochs=1, batch_size=32, device="cpu", progress=False, seed=seed))
        runs.append(torch.cat([p.flatten() for p in model.parameters()]))
    assert torch.equal(runs[0], runs[1]), "same seed must give the same parameters"
    assert not torch.equal(runs[0], runs[2]), "another seed must shuffle (and drop out) differently"


def test_fit_learns_digits():
    images, labels = load_digits()
    model = small_cnn(dropout=0.0)
    history = fit(model, (images[:1200], labels[:1200]), (images[1200:], labels[1200:]), config=FitConfig(epochs=8,
                  batch_size=32, optimizer=torch.optim.Adam(model.parameters(), lr=3e-3), device="cpu",
                  progress=False))
    assert history.val_acc[-1] > 0.9, f"validation accuracy only {history.val_acc}"
    assert history.train_loss[-1] < history.train_loss[0] / 3, history.train_loss


def test_evaluate_and_predict_match_torch_and_sklearn():
    images, labels = digits(700)
    model = small_cnn()
    model.train()  # evaluate and predict must switch dropout and BatchNorm to eval mode themselves
    loss, acc = evaluate(model, (images, labels), batch_size=64)
    model.eval()
    with torch.no_grad():
        logits = model(images)
    assert abs(loss - F.cross_entropy(logits, labels).item()) < 1e-5
    assert acc == pytest.approx(accuracy_score(labels.numpy(), logits.argmax(1).numpy()))
    model.train()
    torch.testing.assert_close(predict(model, images, batch_size=100), logits)
    assert model.training, "evaluate/predict must restore the training mode"


def test_clipping_scales_the_gradient_to_the_given_norm():
    images, labels = digits(64)
    model = small_cnn(dropout=0.0)
    model[1] = nn.Identity()  # no BatchNorm: one batch then equals one full-batch gradient step
    before = [p.detach().clone() for p in model.parameters()]
    F.cross_entropy(model(images), labels).backward()
    grads = [p.grad.clone() for p in model.parameters()]
    norm = torch.cat([g.flatten() for g in grads]).norm()
    clip = 0.1 * norm.item()
    fit(model, (images, labels),
        config=FitConfig(epochs=1, batch_size=64, optimizer=torch.optim.SGD(model.parameters(), lr=1.0),
        clip_grad_norm=clip, device="cpu", progress=False))
    for p0, p, g in zip(before, model.parameters(), grads):  # reference: p - lr * g * c / ||g||
        torch.testing.assert_close(p.detach(), p0 - g * clip / norm, rtol=1e-4, atol=1e-6)


def test_step_lr_is_stepped_once_per_epoch():
    model = small_cnn()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.1)
    history = fit(model, digits(100), config=FitConfig(epochs=5, optimizer=optimizer, scheduler=scheduler,
                  device="cpu", progress=False))
    expected = [0.1 * 0.1 ** (epoch // 2) for epoch in range(5)]  # lr_e = lr_0 * gamma^(e // step)
    assert history.lr == pytest.approx(expected)


def test_reduce_on_plateau_gets_the_validation_loss():
    seen = []

    class Recording(torch.optim.lr_scheduler.ReduceLROnPlateau):
        def step(self, metrics):
            seen.append(float(metrics))
            super().step(metrics)

    model = small_cnn()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    history = fit(model, digits(200), digits(300), config=FitConfig(epochs=3, optimizer=optimizer,
                  scheduler=Recording(optimizer), device="cpu", progress=False))
    assert seen == history.val_loss


def test_one_cycle_stepped_per_batch():
    model = small_cnn()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    epochs, steps = 3, 4  # 100 examples in batches of 25
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=0.1, total_steps=epochs * steps)
    fit(model, digits(100), config=FitConfig(epochs=epochs, batch_size=25, optimizer=optimizer, scheduler=scheduler,
        scheduler_interval="batch", device="cpu", progress=False))  # one step too many would raise
    assert scheduler.last_epoch == epochs * steps


def test_bfloat16_autocast_and_channels_last_on_cpu():
    model = small_cnn()
    history = fit(model, digits(200), digits(260),
        config=FitConfig(epochs=2, amp=True, channels_last=True, device="cpu",
                  progress=False))
    assert all(torch.isfinite(torch.tensor(history.train_loss + history.val_loss)))
    assert model[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert history.train_loss[-1] < history.train_loss[0]


@pytest.mark.cuda
def test_float16_mixed_precision_on_cuda():
    """float16 + GradScaler learns what float32 learns. Long enough for the scaler's first skipped
    steps (it starts at 2**16 and halves on overflow) not to matter: 190 steps, held-out digits."""
    held_out = tuple(t[600:] for t in digits(1797))
    accuracies = {}
    for amp in (False, True):
        model = small_cnn()
        history = fit(model, digits(600), held_out,
            config=FitConfig(epochs=10, batch_size=32, amp=amp, channels_last=True,
                      device="cuda", progress=False, clip_grad_norm=1.0))
        assert next(model.parameters()).dtype == torch.float32  # master weights stay float32
        accuracies[amp] = history.val_acc[-1]
    assert accuracies[True] > 0.8
    assert abs(accuracies[True] - accuracies[False]) < 0.05, accuracies


def test_weights_round_trip(tmp_path):
    source, target = small_cnn(seed=0), small_cnn(seed=1)
    load_weights(target, save_weights(source, tmp_path / "w.pt"))
    for a, b in zip(source.state_dict().values(), target.state_dict().values()):
        assert torch.equal(a, b)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="scheduler_interval"):
        FitConfig(epochs=1, scheduler_interval="step")
    with pytest.raises(ValueError, match="checkpoint_path"):
        FitConfig(epochs=1, resume=True)
    with pytest.raises(ValueError, match="epochs"):
        FitConfig(epochs=-1)
    with pytest.raises(TypeError, match="FitConfig"):
        fit(small_cnn(), digits(10), config=dict(epochs=1))


def test_fit_equals_a_hand_written_loop_on_the_cpu():
    """The reference is the textbook loop: shuffle with torch.randperm(generator seeded like fit), Adam step,
    loss summed as Python floats. Catches a changed batch order, a skipped last batch, a loss averaged
    per batch instead of per example, or the device-side sums drifting from float arithmetic."""
    images, labels = digits(300)
    model, reference = small_cnn(dropout=0.0), small_cnn(dropout=0.0)
    history = fit(model, (images, labels), config=FitConfig(epochs=2, batch_size=64, device="cpu", progress=False,
                                                            seed=5))
    torch.manual_seed(5)
    optimizer, generator = torch.optim.Adam(reference.parameters(), lr=1e-3), torch.Generator().manual_seed(5)
    for epoch in range(2):
        order, total = torch.randperm(300, generator=generator), 0.0
        for start in range(0, 300, 64):
            x, y = images[order[start:start + 64]], labels[order[start:start + 64]]
            loss = F.cross_entropy(reference(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item() * len(y)
        assert history.train_loss[epoch] == pytest.approx(total / 300, rel=1e-6)
    for a, b in zip(model.state_dict().values(), reference.state_dict().values()):
        torch.testing.assert_close(a, b)


def test_no_host_synchronisation_per_batch(monkeypatch):
    """Loss and accuracy are summed on the device: the loop calls .item() (a GPU wait) a fixed few times
    per epoch, not once per batch. A loop that reads loss.item() every step makes 40 calls here.
    (Only calls from course_lib.train count: the optimizer reads its CPU step counter, which costs no wait.)"""
    calls = []
    original = torch.Tensor.item

    def counting_item(tensor):
        if sys._getframe(1).f_code.co_filename.endswith(os.path.join("course_lib", "train.py")):
            calls.append(1)
        return original(tensor)

    monkeypatch.setattr(torch.Tensor, "item", counting_item)
    fit(small_cnn(), digits(320), config=FitConfig(epochs=2, batch_size=16, device="cpu", progress=False))
    assert len(calls) <= 2 * 2, f"{len(calls)} .item() calls for 2 epochs of 20 batches"


def test_seeded_augmentation_repeats_and_depends_on_the_seed():
    """fit hands its own seeded generator to the augmentation: same seed, same weights; another seed differs."""
    from course_lib.augment import random_crop_flip

    runs = []
    for seed in (4, 4, 5):
        model = small_cnn(dropout=0.0)
        torch.manual_seed(123)  # the global RNG is not what decides the crops
        fit(model, digits(128), config=FitConfig(epochs=1, batch_size=32, augment=random_crop_flip, device="cpu",
                                                 progress=False, seed=seed))
        runs.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    assert torch.equal(runs[0], runs[1])
    assert not torch.equal(runs[0], runs[2])


def test_plot_history():
    history = History(train_loss=[1.0, 0.5], train_acc=[0.5, 0.8], val_loss=[1.1, 0.7], val_acc=[0.4, 0.7],
                      lr=[0.1, 0.01], seconds=[1.0, 1.0])
    fig = plot_history(history)
    assert isinstance(fig, matplotlib.figure.Figure) and len(fig.axes) == 3
    assert len(fig.axes[0].lines) == 2


def test_sampler_decides_the_examples_of_an_epoch():
    images, labels = digits(200)
    seen = []

    def recording_loss(logits, y):
        seen.append(y.clone())
        return F.cross_entropy(logits, y)

    picks = (labels == 3).nonzero().squeeze(1)  # a sampler that draws only class 3, 50 times
    sampler = lambda generator: picks[torch.randint(len(picks), (50,), generator=generator)]  # noqa: E731
    fit(small_cnn(), (images, labels),
        config=FitConfig(epochs=2, batch_size=16, loss_fn=recording_loss, sampler=sampler,
        device="cpu", progress=False))
    drawn = torch.cat(seen)
    assert len(drawn) == 100 and (drawn == 3).all()


def test_per_pixel_targets_give_pixel_accuracy():
    """Segmentation: (N, H, W) targets, (N, C, H, W) logits; accuracy is per pixel (sklearn over all pixels)."""
    g = torch.Generator().manual_seed(0)
    images = torch.rand(20, 1, 6, 5, generator=g)
    masks = (images[:, 0] > 0.5).long()  # a pixel's class is its own brightness: learnable by a 1x1 conv
    model = nn.Conv2d(1, 2, 1)
    loss, acc = evaluate(model, (images, masks), batch_size=7)
    with torch.no_grad():
        logits = model(images)
    assert loss == pytest.approx(F.cross_entropy(logits, masks).item(), rel=1e-5)
    assert acc == pytest.approx(accuracy_score(masks.flatten().numpy(), logits.argmax(1).flatten().numpy()))
    history = fit(model, (images, masks),
        config=FitConfig(epochs=30, batch_size=10, optimizer=torch.optim.Adam(model.parameters(), 0.1),
                  progress=False))
    assert 0.0 <= history.train_acc[-1] <= 1.0 and history.train_acc[-1] > 0.9, history.train_acc
