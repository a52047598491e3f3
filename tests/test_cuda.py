"""The course's networks on a GPU: the same function as on the CPU, and mixed precision that trains.

Reference: each network's float32 CPU output (``conftest.py`` turns TF32 off for CUDA tests, so the
GPU computes in float32 too). The
networks are the paper-sized ones (ImageNet inputs) the architecture chapters count; a bug that
only shows on CUDA (a tensor created on the CPU inside ``forward``, a dtype fixed to float32 under
autocast, a ``.numpy()`` call) fails here. All skip without a CUDA device (CI has none).
"""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from course_lib import device
from course_lib.models.alexnet import alexnet
from course_lib.models.attention_cnn import AttentionCNN
from course_lib.models.dcgan import Discriminator, Generator
from course_lib.models.densenet import densenet121
from course_lib.models.efficientnet import efficientnet_b0
from course_lib.models.fashion_cnn import fashion_cnn_best
from course_lib.models.googlenet import googlenet
from course_lib.models.lenet import lenet5
from course_lib.models.mobilenet import mobilenet_v1
from course_lib.models.resnet import resnet50
from course_lib.models.row_rnn import RowRNNClassifier
from course_lib.models.unet import UNet
from course_lib.models.vgg import vgg16
from course_lib.pool import max_pool2d
from course_lib.train import FitConfig, evaluate, fit, predict

pytestmark = pytest.mark.cuda

IMAGENET = (2, 3, 224, 224)
FASHION = (4, 1, 28, 28)
NETWORKS = {  # name: (build, input shape)
    "lenet5": (lambda: lenet5(), (4, 1, 32, 32)),
    "alexnet": (lambda: alexnet(), IMAGENET),
    "vgg16": (lambda: vgg16(), IMAGENET),
    "googlenet": (lambda: googlenet(aux_logits=False), IMAGENET),
    "resnet50": (lambda: resnet50(), IMAGENET),
    "densenet121": (lambda: densenet121(), IMAGENET),
    "mobilenet_v1": (lambda: mobilenet_v1(), IMAGENET),
    "efficientnet_b0": (lambda: efficientnet_b0(), IMAGENET),
    "fashion_cnn_best": (lambda: fashion_cnn_best(), FASHION),
    "attention_cnn_cbam": (lambda: AttentionCNN(attention="cbam"), FASHION),
    "unet": (lambda: UNet(in_channels=1, num_classes=3), (2, 1, 64, 64)),
    "dcgan_discriminator": (lambda: Discriminator(), FASHION),
    "row_lstm": (lambda: RowRNNClassifier("lstm", num_layers=2, bidirectional=True), (4, 1, 28, 28)),
}


def _relative_error(got: torch.Tensor, expected: torch.Tensor) -> float:
    return float((got.float().cpu() - expected).abs().max() / expected.abs().max().clamp_min(1e-12))


@pytest.mark.parametrize("name", NETWORKS)
def test_network_on_cuda_computes_what_it_computes_on_cpu(name):
    build, shape = NETWORKS[name]
    torch.manual_seed(0)
    cpu_model = build().eval()
    x = torch.randn(shape)
    with torch.no_grad():
        expected = cpu_model(x)
        got = copy.deepcopy(cpu_model).cuda()(x.cuda())
    assert got.device.type == "cuda"
    assert _relative_error(got, expected) < 1e-4, name


@pytest.mark.parametrize("name", ["resnet50", "efficientnet_b0", "unet", "row_lstm"])
def test_float16_autocast_forward_and_backward(name):
    """Under autocast the convolutions and products run in float16, the master weights stay float32,
    and the gradients come back finite and in float32, within float16's precision of float32's.
    Eval mode: dropout masks and batch statistics would make the two passes different functions."""
    build, shape = NETWORKS[name]
    torch.manual_seed(0)
    model = build().cuda().eval()
    if name == "row_lstm":  # cuDNN's RNN backward runs only in training mode (no dropout: the same function)
        model.rnn.train()
    x = torch.randn(shape, device="cuda")
    exact = model(x).float()
    exact.square().mean().backward()
    reference = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    with torch.autocast("cuda", dtype=torch.float16):
        half = model(x)
    assert half.dtype == torch.float16
    half.float().square().mean().backward()
    assert all(p.dtype == torch.float32 and p.grad.dtype == torch.float32 for p in model.parameters())
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())
    assert _relative_error(half.detach(), exact.detach().cpu()) < 5e-2
    cosine = F.cosine_similarity(torch.cat([p.grad.flatten() for p in model.parameters()]),
                                 torch.cat([g.flatten() for g in reference]), dim=0)
    assert cosine > 0.99


def test_generator_on_cuda_matches_cpu():
    torch.manual_seed(0)
    G = Generator(z_dim=16).eval()
    z = torch.randn(8, 16)
    with torch.no_grad():
        assert _relative_error(copy.deepcopy(G).cuda()(z.cuda()), G(z)) < 1e-4


def test_lecture_max_pool_on_cuda_matches_torch():
    x = torch.randn(4, 8, 17, 17, device="cuda")
    torch.testing.assert_close(max_pool2d(x, 3, stride=2, padding=1), F.max_pool2d(x, 3, stride=2, padding=1))


def test_auto_device_is_the_gpu():
    assert device("auto").type == "cuda"


def test_fit_with_amp_and_channels_last_learns_fashion_mnist_on_cuda():
    """A few hundred steps of the small CNN on real Fashion-MNIST: float16 + GradScaler must learn."""
    from course_lib.data import load_fashion_mnist, stratified_subset
    from course_lib.models.fashion_cnn import fashion_cnn_small

    images, labels = load_fashion_mnist("train")
    keep = stratified_subset(labels, 500, seed=0)
    test = tuple(t[:2000] for t in load_fashion_mnist("test"))
    torch.manual_seed(0)
    model = fashion_cnn_small()
    history = fit(model, (images[keep], labels[keep]),
        config=FitConfig(epochs=4, batch_size=64, amp=True, channels_last=True,
                  device="cuda", progress=False))
    assert history.train_loss[-1] < history.train_loss[0]
    _, accuracy = evaluate(model, test, device="cuda", amp=True)
    assert accuracy > 0.75
    assert predict(model, test[0][:10]).shape == (10, 10)


def test_crop_flip_on_cuda_equals_the_cpu_for_the_same_offsets():
    """The batched gather on the GPU cuts the same windows as on the CPU (catches device-dependent indexing)."""
    from course_lib.augment import crop_flip

    g = torch.Generator().manual_seed(0)
    images = torch.rand(64, 1, 28, 28, generator=g)
    dy, dx = torch.randint(0, 5, (64,), generator=g), torch.randint(0, 5, (64,), generator=g)
    flipped = torch.rand(64, generator=g) < 0.5
    assert torch.equal(crop_flip(images.cuda(), dy.cuda(), dx.cuda(), flipped.cuda()).cpu(),
                       crop_flip(images, dy, dx, flipped))


def test_device_resident_training_repeats_with_a_seed_and_reads_back_once_per_epoch():
    """fit with a CUDA generator: the data on the GPU, crops drawn there; same seed, same loss curve."""
    from course_lib.augment import random_crop_flip
    from course_lib.data import load_fashion_mnist, stratified_subset
    from course_lib.models.fashion_cnn import fashion_cnn_small

    images, labels = load_fashion_mnist("train")
    keep = stratified_subset(labels, 200, seed=0)
    data = (images[keep].cuda(), labels[keep].cuda())
    histories = []
    for _ in range(2):
        torch.manual_seed(0)
        histories.append(fit(fashion_cnn_small(), data, config=FitConfig(
            epochs=3, batch_size=100, augment=random_crop_flip, amp=True, amp_dtype=torch.bfloat16,
            channels_last=True, device="cuda", progress=False, seed=1)))
    assert histories[0].train_loss[-1] < histories[0].train_loss[0]
    assert histories[0].train_loss == pytest.approx(histories[1].train_loss, rel=1e-3)  # cuDNN may vary a little
