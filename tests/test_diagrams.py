"""Figures drawn from code: each diagram must show the module's real layers and shapes, and the
history charts the papers' numbers. References are the papers' layer shapes and parameter counts
and forward hooks written here, independently of ``course_lib.diagrams``."""
from __future__ import annotations

import time

import matplotlib
import pytest
import torch
from torch import nn

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from course_lib import diagrams, history, models  # noqa: E402
from course_lib.counting import count_mult_adds, count_parameters  # noqa: E402
from course_lib.models.unet import UNet  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def on_meta(builder, *args, **kwargs):
    with torch.device("meta"):
        return builder(*args, **kwargs)


def texts(fig) -> list[str]:
    return [t.get_text() for ax in fig.axes for t in ax.texts]


def reference_trace(model, input_shape, types):
    """Forward hooks written here, not in the library: (layer type, output shape) in call order."""
    seen = []
    handles = [m.register_forward_hook(lambda m, i, o: seen.append((type(m), tuple(o.shape[1:]))))
               for m in model.modules() if isinstance(m, types)]
    param = next(model.parameters())
    with torch.no_grad():
        model.eval()(torch.zeros(1, *input_shape, device=param.device))
    for h in handles:
        h.remove()
    return seen


def test_lenet_diagram_has_the_papers_layers():
    # Catches a layer left out of the figure or a shape read from the wrong tensor: LeNet-5's
    # C1 6@28×28, S2 6@14×14, C3 16@10×10, S4 16@5×5, C5 120@1×1, F6 84, output 10 (LeCun et al. 1998).
    fig, records = diagrams.draw_network(models.lenet5(), (1, 32, 32))
    assert [r.out_shape for r in records] == [(6, 28, 28), (6, 14, 14), (16, 10, 10), (16, 5, 5),
                                              (120, 1, 1), (84,), (10,)]
    assert [r.label for r in records][:3] == ["conv 5×5", "avg pool 2×2/2", "conv 5×5"]
    assert "6@28×28" in texts(fig) and "16@5×5" in texts(fig)


def test_alexnet_diagram_has_the_papers_shapes():
    # The paper: conv1 96@55×55 (11×11, stride 4), 256@27×27, 384@13×13, 384@13×13, 256@13×13,
    # then 4096, 4096, 1000; conv2, conv4, conv5 are split over the two GPUs (groups=2).
    fig, records = diagrams.draw_network(on_meta(models.alexnet), (3, 224, 224))
    convs = [r for r in records if r.kind == "conv"]
    assert [c.out_shape for c in convs] == [(96, 55, 55), (256, 27, 27), (384, 13, 13), (384, 13, 13),
                                            (256, 13, 13)]
    assert convs[0].label == "conv 11×11/4" and convs[1].label == "conv 5×5 g=2"
    assert [r.out_shape for r in records if r.kind == "fc"] == [(4096,), (4096,), (1000,)]
    assert "96@55×55" in texts(fig)


def test_vgg_diagram_equals_an_independent_trace():
    # Catches a drawn layer list that is not the network's: every conv, pool and fc of VGG-16,
    # in order, with the shape that the module's own forward pass produces (16 weight layers).
    model = on_meta(models.vgg16)
    _, records = diagrams.draw_network(model, (3, 224, 224))
    expected = [(t, s) for t, s in reference_trace(model, (3, 224, 224), (nn.Conv2d, nn.MaxPool2d, nn.Linear))]
    kinds = {nn.Conv2d: "conv", nn.MaxPool2d: "pool", nn.Linear: "fc"}
    assert [(r.kind, r.out_shape) for r in records] == [(kinds[t], s) for t, s in expected]
    assert sum(r.kind in ("conv", "fc") for r in records) == 16


def test_inception_diagram_columns_are_the_branches():
    # Module 3a of GoogLeNet (Table 1): 64 + 128 + 32 + 32 = 256 maps of 28×28. A branch drawn in
    # the wrong column or a wrong concatenated width fails here.
    module = models.Inception(192, 64, 96, 128, 16, 32, 32)
    fig, records = diagrams.draw_branches(module, (192, 28, 28), ["branch1", "branch2", "branch3", "branch4"],
                                          "concat")
    last_conv = {b: [r for r in records if r.name.startswith(b) and r.kind == "conv"][-1].out_shape[0]
                 for b in ("branch1", "branch2", "branch3", "branch4")}
    assert last_conv == {"branch1": 64, "branch2": 128, "branch3": 32, "branch4": 32}
    assert module(torch.zeros(1, 192, 28, 28)).shape[1] == 256
    assert any(t.endswith("256@28×28") for t in texts(fig))
    assert "conv 5×5, ReLU\n32@28×28" in texts(fig)


def test_residual_diagrams_show_the_shortcut():
    # A BasicBlock that keeps the shape has an identity shortcut; a strided Bottleneck a projection
    # conv 1×1/2 with BN, and 4·128 = 512 output maps (He et al. 2016); the last ReLU comes after the sum.
    fig, records = diagrams.draw_branches(models.BasicBlock(64, 64), (64, 56, 56), ["", "downsample"], "add")
    assert not any(r.name.startswith("downsample") for r in records) and "identity" in texts(fig)
    assert texts(fig)[-1] == "ReLU\n64@56×56"
    fig, records = diagrams.draw_branches(models.Bottleneck(256, 128, 2), (256, 56, 56), ["", "downsample"], "add")
    shortcut = [r for r in records if r.name.startswith("downsample")]
    assert [(r.label, r.out_shape) for r in shortcut] == [("conv 1×1/2", (512, 28, 28)), ("BN", (512, 28, 28))]
    assert "conv 3×3/2, BN, ReLU\n128@28×28" in texts(fig)
    assert texts(fig)[-1] == "ReLU\n512@28×28"


def test_depthwise_separable_diagram():
    # MobileNet's block: a 3×3 depthwise conv (groups = channels) then a 1×1 pointwise conv.
    fig, records = diagrams.draw_branches(models.DepthwiseSeparableConv(32, 64, stride=2), (32, 112, 112))
    convs = [(r.label, r.out_shape) for r in records if r.kind == "conv"]
    assert convs == [("conv 3×3/2 depthwise", (32, 56, 56)), ("conv 1×1", (64, 56, 56))]


def test_dense_block_diagram_channels_grow_by_k():
    # Layer i of a dense block reads C + (i-1)·k channels (Huang et al. 2017): 64, 96, ..., 224 for
    # DenseNet-121's first block (k = 32), and the block outputs 64 + 6·32 = 256.
    block = [m for m in models.densenet121().modules() if isinstance(m, models.DenseBlock)][0]
    fig, shapes = diagrams.draw_dense_block(block, (64, 56, 56))
    assert [s[0][0] for s in shapes] == [64 + 32 * i for i in range(6)]
    assert all(out == (32, 56, 56) for _, out in shapes)
    assert "output\n256@56×56" in texts(fig)


def test_unet_diagram_levels_and_skips():
    # The paper's U-Net widths 64, 128, 256, 512, 1024 (Ronneberger et al. 2015); each skip
    # concatenates the encoder's C maps with the C maps of the up-convolution.
    model = UNet(in_channels=1, num_classes=2, base_channels=64, depth=4, batch_norm=False)
    fig, levels = diagrams.draw_unet(on_meta(UNet, 1, 2, 64, 4, False), (1, 64, 64))
    assert [s[0] for s in levels["encoder"]] == [64, 128, 256, 512, 1024]
    assert [s[1] for s in levels["encoder"]] == [64, 32, 16, 8, 4]
    assert levels["head"] == [(2, 64, 64)]
    assert "copy: concat 64 + 64 maps" in texts(fig) and "copy: concat 512 + 512 maps" in texts(fig)
    _, plain = diagrams.draw_unet(model, (1, 16, 16), skips=False)
    assert plain["upconv"][-1] == (64, 16, 16)


@pytest.mark.parametrize("draw, symbols", [
    (diagrams.draw_lstm_cell, [r"$f_t$", r"$i_t$", r"$\tilde C_t$", r"$o_t$", r"$C_{t-1}$", r"$C_t$", r"$h_t$"]),
    (diagrams.draw_gru_cell, [r"$r_t$", r"$z_t$", r"$\tilde h_t$", r"$h_{t-1}$", r"$h_t$", r"$x_t$"]),
    (diagrams.draw_rnn_unrolled, [r"$W_{hh}$", r"$W_{xh}$", r"$h_0 = 0$", r"$x_1$", r"$h_4$"]),
    (diagrams.draw_gan_loop, [r"$z \sim \mathcal{N}(0, I)$", r"$D(\cdot) \in (0, 1)$"]),
])
def test_schematics_carry_the_equations_symbols(draw, symbols):
    # A gate missing from the picture, or labelled with another symbol than chapter 8's equations.
    fig, placed = draw()
    assert set(symbols) <= set(placed) and set(placed) <= set(texts(fig))


def test_every_figure_is_fast_on_cpu():
    # The chapters draw these at build time on a 2-core CPU: a figure that ran a real forward pass
    # of VGG on 224×224 instead of the meta device, or drew thousands of patches, would fail here.
    # CPU time of this process (not wall time, which other jobs on the machine inflate), after the
    # one-time warm-up of the meta device (~5 s on first use in a process, paid by the chapter anyway).
    diagrams.network_layers(on_meta(models.alexnet), (3, 224, 224))
    figures = {
        "VGG-16": lambda: diagrams.draw_network(on_meta(models.vgg16), (3, 224, 224)),
        "AlexNet": lambda: diagrams.draw_network(on_meta(models.alexnet), (3, 224, 224)),
        "U-Net": lambda: diagrams.draw_unet(UNet(1, 6, 16, 3), (1, 64, 64)),
        "LSTM": diagrams.draw_lstm_cell, "GRU": diagrams.draw_gru_cell, "RNN": diagrams.draw_rnn_unrolled,
        "GAN": diagrams.draw_gan_loop, "ILSVRC": lambda: (history.plot_ilsvrc(),),
    }
    for name, draw in figures.items():
        start = time.process_time()
        draw()[0].canvas.draw()  # render, as the notebook does
        assert time.process_time() - start < 5, f"the {name} figure took {time.process_time() - start:.1f} s of CPU"


def test_ilsvrc_history_matches_the_papers():
    # Typos in the data file: AlexNet 15.3 % (Krizhevsky et al. 2012), GoogLeNet 6.67 % (Szegedy et
    # al. 2015, Table 2), ResNet 3.57 % (He et al. 2016, Table 5); depths 8 → 19/22 → 152.
    rows = {(r["year"], r["network"]): r for r in history.ilsvrc_winners()}
    assert sorted({year for year, _ in rows}) == list(range(2010, 2018))
    assert rows[(2012, "AlexNet")]["top5_error_percent"] == 15.3 and rows[(2012, "AlexNet")]["depth"] == 8
    assert rows[(2014, "GoogLeNet")]["top5_error_percent"] == 6.67 and rows[(2014, "GoogLeNet")]["depth"] == 22
    assert rows[(2014, "VGG-19")]["depth"] == 19
    assert rows[(2015, "ResNet-152")]["top5_error_percent"] == 3.57 and rows[(2015, "ResNet-152")]["depth"] == 152
    assert history.HUMAN_TOP5_ERROR == 5.1
    assert all(r["source"].strip() for r in rows.values())
    errors = [r["top5_error_percent"] for r in history.ilsvrc_winners() if "2nd" not in r["winner"]]
    assert errors == sorted(errors, reverse=True)  # every year's winner improved on the last


def test_published_accuracies_match_the_papers():
    acc = history.published_accuracies()
    assert acc["AlexNet"]["top1_error_percent"] == 40.7 and acc["AlexNet"]["top5_error_percent"] == 18.2
    assert acc["ResNet-50"]["top5_error_percent"] == 6.71
    assert acc["MobileNet v1"]["top1_error_percent"] == pytest.approx(100 - 70.6)
    assert all(row["source"].strip() and row["protocol"].strip() for row in acc.values())


BUILDERS = {
    "AlexNet": models.alexnet, "VGG-16": models.vgg16, "GoogLeNet": lambda: models.googlenet(aux_logits=False),
    "ResNet-18": models.resnet18, "ResNet-50": models.resnet50, "DenseNet-121": models.densenet121,
    "MobileNet v1": models.mobilenet_v1, "EfficientNet-B0": models.efficientnet_b0,
}


def test_accuracy_chart_uses_counts_that_match_the_papers():
    # The chart's x values are the book's counts; each must be within 5 % of the paper's parameter
    # count (GoogLeNet's 6.8 M is in units of 1024 and the largest gap, 2.9 %), and the chart must
    # plot exactly the counts it was given, against the papers' top-1 accuracies.
    acc = history.published_accuracies()
    counts = {}
    for name, builder in BUILDERS.items():
        model = on_meta(builder)
        counts[name] = (count_mult_adds(model, (3, 224, 224)), count_parameters(model))
        paper = acc[name]["paper_params_millions"] * 1e6
        assert abs(counts[name][1] - paper) / paper < 0.05, (name, counts[name][1], paper)
    _, points = history.plot_accuracy_vs_cost(counts)
    assert {p[0]: (p[1], p[2]) for p in points} == counts
    assert {p[0]: p[3] for p in points}["ResNet-50"] == pytest.approx(100 - 22.85)
