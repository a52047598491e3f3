"""A student's code behind the sandbox's proxies must pass or fail every check exactly as when called directly.

Each case defines student code (a correct answer or a plausible wrong one) and a check call. The code
runs twice: in this interpreter (the check gets the real functions and classes) and in a sandboxed
worker (the check gets :class:`~course_lib.grading.autograder.session.RemoteFunction` /
``RemoteClass`` proxies and remote modules). Both runs must end the same way: both pass, or both
raise the same exception with the same message. All cases share one worker, so the file stays fast.
"""
from __future__ import annotations

import copy
import json
import re
import tempfile
import textwrap
from pathlib import Path

import pytest
import torch

import course_lib.grading as grading
import course_lib.grading.autograder.mirror  # noqa: F401 - grading.autograder.mirror.StudentModule
from conftest import ROOT
from grading_support import check_outcome

from course_lib.grading import BlockCase, MaskCase, SECase
from course_lib.grading.autograder.jail import Limits
from course_lib.grading.autograder.session import Session, proxies

ASSIGNMENTS = ("a2_architectures", "a4_attention_segmentation", "a5_gans")


def _cells(assignment: str) -> dict[str, str]:
    """``grade_id -> source`` of the set-up and solution cells of an assignment's source notebook."""
    nb = json.loads((ROOT / "solutions" / assignment / f"{assignment}.ipynb").read_text(encoding="utf-8"))
    out = {}
    for cell in nb["cells"]:
        meta = cell["metadata"].get("nbgrader", {})
        if cell["cell_type"] == "code" and (meta.get("solution") or (meta.get("locked") and not meta.get("grade"))):
            out[f"{assignment}:{meta['grade_id']}"] = "".join(cell["source"])
    return out


SOLUTIONS = {k: v for a in ASSIGNMENTS for k, v in _cells(a).items()}


def variant(cell: str, renames: dict[str, str], *edits: tuple[str, str]) -> str:
    """A plausible wrong answer: a solution cell with its names renamed and one mistake edited in."""
    source = SOLUTIONS[cell]
    for old, new in edits:
        assert old in source, f"{cell}: {old!r} not found"
        source = source.replace(old, new)
    for old, new in renames.items():
        source = re.sub(rf"\b{old}\b", new, source)
    return source

# --------------------------------------------------------------------------------------------- student code
# Every answer is a function or class of its own name; ``_bad`` ones are plausible mistakes.
STUDENT = {
    "costs": """
def conv_mult_adds(M, N, K, D):
    return K * K * M * N * D * D
def separable_mult_adds(M, N, K, D):
    return K * K * M * D * D + M * N * D * D
def separable_num_params(M, N, K):
    return K * K * M + M * N
def separable_mult_adds_bad(M, N, K, D):
    return K * K * M * D * D + M * N * D
def separable_num_params_float(M, N, K):
    return float(K * K * M + M * N)
""",
    "attention": """
import torch
def spatial_softmax(scores):
    n, c, h, w = scores.shape
    return torch.softmax(scores.reshape(n, c, h * w), dim=-1).reshape(n, c, h, w)
def spatial_softmax_bad(scores):
    return torch.softmax(scores, dim=-1)
def attention_pool(features, scores):
    return (features * spatial_softmax(scores)).sum(dim=(2, 3))
def attention_pool_bad(features, scores):
    return (features * torch.sigmoid(scores)).sum(dim=(2, 3))
""",
    "iou": """
import torch
def mean_iou(pred, target, num_classes):
    ious = []
    for k in range(num_classes):
        inter = ((pred == k) & (target == k)).sum().item()
        union = ((pred == k) | (target == k)).sum().item()
        if union:
            ious.append(inter / union)
    return sum(ious) / len(ious)
def mean_iou_all_classes(pred, target, num_classes):
    ious = []
    for k in range(num_classes):
        inter = ((pred == k) & (target == k)).sum().item()
        union = ((pred == k) | (target == k)).sum().item()
        ious.append(inter / union if union else 0.0)
    return torch.tensor(sum(ious) / num_classes)
""",
}

VARIANTS = [
    variant("a2_architectures:basic_block", {"BasicBlock": "BasicBlockNoProjection"},
            ("if stride != 1 or in_channels != channels:", "if stride != 1:")),
    variant("a2_architectures:basic_block", {"BasicBlock": "BasicBlockNoBn2"},
            ("out = self.bn2(self.conv2(out))", "out = self.conv2(out)")),
    variant("a2_architectures:basic_block", {"BasicBlock": "BasicBlockBadNames"}, ("self.bn1", "self.norm1")),
    variant("a2_architectures:separable", {"DepthwiseSeparableConv": "SeparableNoGroups"},
            ("groups=in_channels, ", "")),
    variant("a2_architectures:network", {"build_model": "build_plain_model", "train_and_save": "unused"},
            ("BasicBlock(32, 64, stride=2)", "nn.Conv2d(32, 64, 3, 2, 1)")),
    variant("a2_architectures:network", {"build_model": "build_subclassed_model", "train_and_save": "unused"},
            ("BasicBlock(32, 64, stride=2)", "DownBlock(32, 64, stride=2)")) + "\nclass DownBlock(BasicBlock):\n    pass\n",
    variant("a4_attention_segmentation:squeeze_excitation", {"SqueezeExcitation": "ReluGate"},
            ("torch.sigmoid(self.fc2", "torch.relu(self.fc2")),
    variant("a4_attention_segmentation:unet", {"build_unet": "build_unet_upsample", "Up": "UpResize",
                                                "UNet": "UNetResize", "double_conv": "double_conv2"},
            ("nn.ConvTranspose2d(c_in, c_in // 2, kernel_size=2, stride=2)",
             "nn.Sequential(nn.Upsample(scale_factor=2), nn.Conv2d(c_in, c_in // 2, 1))")),
    variant("a4_attention_segmentation:dice_iou", {"soft_dice_loss": "dice_per_image", "mean_iou": "unused"},
            ("dims = (0, 2, 3)", "dims = (2, 3)")),
    variant("a4_attention_segmentation:dice_iou", {"soft_dice_loss": "dice_detached", "mean_iou": "unused"},
            ("return 1 - dice.mean()", "return (1 - dice.mean()).detach()")),
    variant("a5_gans:networks", {"build_generator": "generator_no_padding", "build_discriminator": "unused"},
            ("nn.ConvTranspose2d(2 * width, width, 4, stride=2, padding=1, bias=False)",
             "nn.ConvTranspose2d(2 * width, width, 4, stride=2, bias=False)")),
    variant("a5_gans:networks", {"build_discriminator": "discriminator_pooled", "build_generator": "unused"},
            ("nn.Conv2d(1, width, 4, stride=2, padding=1)", "nn.Conv2d(1, width, 3, padding=1), nn.MaxPool2d(2)")),
    variant("a5_gans:losses", {"generator_loss": "saturating_loss", "discriminator_loss": "unused"},
            ("return F.softplus(-fake_logits).mean()", "return -F.softplus(fake_logits).mean()")),
    variant("a5_gans:losses", {"discriminator_loss": "fake_detached", "generator_loss": "unused"},
            ("F.softplus(fake_logits).mean()", "F.softplus(fake_logits.detach()).mean()")),
    variant("a5_gans:train_step", {"train_step": "step_labels_swapped"},
            ("d_loss = discriminator_loss(D(real), D(fake))", "d_loss = discriminator_loss(D(fake), D(real))")),
    variant("a5_gans:train_step", {"train_step": "step_no_generator_update"}, ("    opt_G.step()\n", "")),
    variant("a5_gans:networks", {"build_discriminator": "discriminator_leaky_last", "build_generator": "unused"},
            ("nn.LeakyReLU(0.2),  # 14 -> 7\n        nn.Conv2d(2 * width, 1, 7),",
             "# 14 -> 7\n        nn.Conv2d(2 * width, 1, 7), nn.LeakyReLU(0.2),")),
    variant("a5_gans:networks", {"build_discriminator": "discriminator_padding_2", "build_generator": "unused"},
            ("nn.Conv2d(1, width, 4, stride=2, padding=1)", "nn.Conv2d(1, width, 4, stride=2, padding=2)")),
    variant("a2_architectures:receptive_field", {"receptive_field": "field_no_dilation", "layers_to_cover": "unused"},
            ("field += (kernel_size - 1) * dilation * jump", "field += (kernel_size - 1) * jump")),
    variant("a2_architectures:receptive_field", {"layers_to_cover": "cover_off_by_one", "receptive_field": "unused"},
            ("while field < target:", "while field <= target:")),
    variant("a2_architectures:network_cost", {"conv2d_cost": "conv_cost_flops", "network_cost": "network_cost_flops",
                                              "linear_cost": "unused"},
            ("return parameters, weights * out_h * out_w", "return parameters, 2 * weights * out_h * out_w")),
    variant("a4_attention_segmentation:cam", {"class_activation_map": "cam_first_class", "grad_cam": "unused"},
            ("w = weight[class_idx]", "w = weight[class_idx[0]].expand(len(class_idx), -1)")),
    variant("a4_attention_segmentation:cam", {"grad_cam": "grad_cam_no_relu", "class_activation_map": "unused"},
            ("return torch.relu((alpha * A).sum(dim=1)).detach()", "return (alpha * A).sum(dim=1).detach()")),
]

CASES = [
    ("check_conv_costs", ("conv_mult_adds", "separable_mult_adds", "separable_num_params")),
    ("check_conv_costs", ("conv_mult_adds", "separable_mult_adds_bad", "separable_num_params")),
    ("check_conv_costs", ("conv_mult_adds", "separable_mult_adds", "separable_num_params_float")),
    ("check_spatial_softmax", ("spatial_softmax",)),
    ("check_spatial_softmax", ("spatial_softmax_bad",)),
    ("check_attention_pool", ("attention_pool",)),
    ("check_attention_pool", ("attention_pool_bad",)),
    ("check_mean_iou", ("mean_iou",)),
    ("check_mean_iou", ("mean_iou_all_classes",), {"cases": [MaskCase("3 of 6 classes absent", (2, 6, 5, 5), classes_used=3)]}),
    # assignment 2: the student's classes, remote modules with local mirrors
    ("check_basic_block", ("BasicBlock",)),
    ("check_basic_block", ("BasicBlockNoProjection",), {"cases": [BlockCase("more channels, stride 1", 8, 24, 1)]}),
    ("check_basic_block", ("BasicBlockNoBn2",)),
    ("check_basic_block", ("BasicBlockBadNames",)),
    ("check_bottleneck", ("Bottleneck",)),
    ("check_inception", ("Inception",)),
    ("check_depthwise_separable", ("DepthwiseSeparableConv",)),
    ("check_depthwise_separable", ("SeparableNoGroups",)),
    ("check_model_file", ("build_model", "WEIGHTS_A2"), {"contains": "BasicBlock"}),
    ("check_model_file", ("build_plain_model", "WEIGHTS_PLAIN"), {"contains": "BasicBlock"}),
    ("check_model_file", ("build_subclassed_model", "WEIGHTS_A2"), {"contains": "BasicBlock"}),
    ("check_model_file", ("build_model", "WEIGHTS_A2"), {"contains": "Bottleneck"}),
    ("check_model_file", ("build_model", "WEIGHTS_MISSING")),
    # assignment 4
    ("check_squeeze_excitation", ("SqueezeExcitation",), {"cases": [SECase("1x1 map", (4, 3, 1, 1), 1, seed=10)]}),
    ("check_squeeze_excitation", ("ReluGate",)),
    ("check_unet_shapes", ("build_unet",)),
    ("check_unet_shapes", ("build_unet_upsample",)),
    ("check_soft_dice_loss", ("soft_dice_loss",), {"cases": [MaskCase("no smoothing", (2, 3, 4, 4), smooth=0.0)]}),
    ("check_soft_dice_loss", ("dice_per_image",)),
    ("check_soft_dice_loss", ("dice_detached",)),
    ("check_segmentation_model", ("build_unet", "WEIGHTS_UNET"), {"num_samples": 100}),
    # assignment 5: modules and optimizers handed to the student's training step
    ("check_generator", ("build_generator",)),
    ("check_generator", ("generator_no_padding",)),
    ("check_discriminator", ("build_discriminator",)),
    ("check_discriminator", ("discriminator_pooled",)),
    ("check_gan_losses", ("discriminator_loss", "generator_loss")),
    ("check_gan_losses", ("discriminator_loss", "saturating_loss")),
    ("check_gan_losses", ("fake_detached", "generator_loss")),
    ("check_train_step", ("train_step",)),
    ("check_train_step", ("step_labels_swapped",)),
    ("check_train_step", ("step_no_generator_update",)),
    ("check_discriminator", ("discriminator_leaky_last",)),
    ("check_discriminator", ("discriminator_padding_2",)),
    ("check_short_training", ("train_step", "build_generator", "build_discriminator")),
    ("check_short_training", ("step_no_generator_update", "build_generator", "build_discriminator")),
    # issue 16: A2's receptive field and costs (plain data), A4's Grad-CAM (the grader's head module)
    ("check_receptive_field", ("receptive_field",)),
    ("check_receptive_field", ("field_no_dilation",)),
    ("check_layers_to_cover", ("layers_to_cover",)),
    ("check_layers_to_cover", ("cover_off_by_one",), {"cases": [(101, 3, 1, 1)]}),
    ("check_layer_costs", ("conv2d_cost", "linear_cost")),
    ("check_layer_costs", ("conv_cost_flops", "linear_cost")),
    ("check_network_cost", ("network_cost",)),
    ("check_network_cost", ("network_cost_flops",)),
    ("check_class_activation_map", ("class_activation_map",)),
    ("check_class_activation_map", ("cam_first_class",)),
    ("check_grad_cam", ("grad_cam",)),
    ("check_grad_cam", ("grad_cam_no_relu",)),
]


def _code() -> list[str]:
    return list(SOLUTIONS.values()) + VARIANTS + [textwrap.dedent(c) for c in STUDENT.values()]


def _arguments(side: dict, names, kwargs: dict) -> tuple[tuple, dict]:
    args = tuple(side["files"][n] if n.startswith("WEIGHTS") else side[n] for n in names)
    return args, {k: side[v] if k == "contains" else v for k, v in kwargs.items()}


def _weights(folder: Path, local: dict) -> dict[str, str]:
    """Untrained weights files (the checks read them on the grader's side, with weights_only=True)."""
    files = {"WEIGHTS_A2": folder / "a2.pt", "WEIGHTS_PLAIN": folder / "plain.pt", "WEIGHTS_UNET": folder / "unet.pt",
             "WEIGHTS_MISSING": folder / "missing.pt"}
    torch.manual_seed(0)
    torch.save(local["build_model"]().state_dict(), files["WEIGHTS_A2"])
    torch.save(local["build_plain_model"]().state_dict(), files["WEIGHTS_PLAIN"])
    torch.save(local["build_unet"](**grading.SEGMENTATION_TASK.unet_kwargs()).state_dict(), files["WEIGHTS_UNET"])
    return {k: str(v) for k, v in files.items()}


@pytest.fixture(scope="module")
def sides(tmp_path_factory):
    local: dict = {"__name__": "__main__"}
    for number, cell in enumerate(_code()):
        exec(compile(cell, f"<cell {number}>", "exec"), local)
    session = Session(Path(tempfile.mkdtemp()), _code(), Limits(call_timeout=120), slot=3, budget=1800)
    session.ensure()
    assert session.events == []
    remote = proxies(session)
    local["files"] = remote["files"] = _weights(tmp_path_factory.mktemp("weights"), local)
    yield local, remote
    session.stop()


@pytest.mark.parametrize("case", CASES, ids=[f"{c[0]}-{c[1][0]}" for c in CASES])
def test_remote_outcome_equals_direct(sides, case):
    check, names, kwargs = (*case, {})[:3]
    local, remote = sides
    direct = check_outcome(check, *_arguments(local, names, kwargs))
    sandboxed = check_outcome(check, *_arguments(remote, names, kwargs))
    assert sandboxed == direct
    assert direct[0] in ("passed", "CheckFailure")  # a check's verdict, not a crash of the test


def test_cases_cover_passes_and_failures(sides):
    local, _ = sides
    outcomes = {}
    for check, names, *kwargs in CASES:
        outcomes.setdefault(check, set()).add(check_outcome(check, *_arguments(local, names, (kwargs or [{}])[0]))[0])
    assert {c: o for c, o in outcomes.items() if o != {"passed", "CheckFailure"}} == {
        "check_bottleneck": {"passed"}, "check_inception": {"passed"}, "check_segmentation_model": {"CheckFailure"}}


# --------------------------------------------------------------------------------------------- the layer itself
def test_gradients_and_running_statistics_match_a_direct_module(sides):
    """Backward through a remote module gives the input's and every parameter's gradient; a forward in
    train mode updates the running statistics once, as a local module does."""
    local, remote = sides
    torch.manual_seed(0)
    mine = local["BasicBlock"](4, 8, stride=2).double()
    theirs = remote["BasicBlock"](4, 8, stride=2).double()
    theirs.load_state_dict(mine.state_dict())
    x = torch.randn(2, 4, 6, 6, dtype=torch.float64)
    grads = []
    for block in (mine, theirs):
        block.train()
        xi = x.clone().requires_grad_(True)
        out = block(xi)
        (out * torch.linspace(-1, 1, out.numel(), dtype=out.dtype).reshape(out.shape)).sum().backward()
        grads.append([xi.grad] + [p.grad for p in block.parameters()])
    for g_local, g_remote in zip(*grads):
        torch.testing.assert_close(g_remote, g_local)
    for (name, a), (_, b) in zip(mine.state_dict().items(), theirs.state_dict().items()):
        torch.testing.assert_close(b, a, msg=name)  # running means, variances, num_batches_tracked = 1
    assert int(theirs.state_dict()["bn1.num_batches_tracked"]) == 1


def test_a_mirror_has_the_layers_and_types_of_the_module(sides):
    local, remote = sides
    torch.manual_seed(0)
    mine, theirs = local["build_unet"](1, 3, 4, 2), remote["build_unet"](1, 3, 4, 2)
    assert [n for n, _ in theirs.named_modules()] == [n for n, _ in mine.named_modules()]
    for (_, a), (_, b) in zip(mine.named_modules(), theirs.named_modules()):
        if type(a).__module__.startswith("torch.nn"):
            assert type(b) is type(a)  # torch.nn layers are mirrored by their own class
        else:
            assert type(b).__name__ == type(a).__name__ and isinstance(b, grading.autograder.mirror.StudentModule)
    assert {k: v.shape for k, v in theirs.state_dict().items()} == {k: v.shape for k, v in mine.state_dict().items()}
    assert isinstance(theirs, remote["UNet"]) and not isinstance(theirs, remote["Up"])
    ups = [m for m in theirs.modules() if isinstance(m, torch.nn.ConvTranspose2d)]
    assert [(m.kernel_size, m.stride) for m in ups] == [((2, 2), (2, 2))] * 2
    twin = copy.deepcopy(theirs).train()
    twin(torch.randn(2, 1, 8, 8))  # updates the copy's running statistics only
    assert not torch.equal(twin.stem[1].running_mean, theirs.stem[1].running_mean)


def test_descriptions_from_the_worker_are_checked():
    from course_lib.grading.autograder import module_codec, protocol
    from course_lib.grading.autograder.mirror import resolve_mirror

    block = torch.nn.Sequential(torch.nn.Conv2d(2, 3, 3), torch.nn.BatchNorm2d(3))
    block[1].weight = block[0].bias  # shared: one tensor, two places
    description, _ = module_codec.describe(block)
    back = module_codec.validate(protocol.decode(json.loads(json.dumps(protocol.encode(description))), grad=[]))
    nodes = module_codec.rebuild(back, resolve_mirror)
    assert nodes[1].bias is nodes[2].weight and type(nodes[1]) is torch.nn.Conv2d and nodes[1].stride == (1, 1)

    d = protocol.decode(protocol.encode(description), grad=[])
    for mutate in (lambda d: d["nodes"][1]["children"].append(["loop", 0]),       # back to the root
                   lambda d: d["nodes"][1]["children"].append(["loop", 1]),       # a cycle
                   lambda d: d["nodes"][1]["attrs"].update(secret=object()),      # not plain data
                   lambda d: d["nodes"][1]["params"].append(["a.b", None]),       # a dotted name
                   lambda d: d["nodes"][1].update(extra=1),
                   lambda d: d["tensors"].append(torch.zeros(1)),                 # a tensor without a place
                   lambda d: d["nodes"][1].update({"class": "os.system('x')"})):
        bad = copy.deepcopy(d)
        mutate(bad)
        with pytest.raises(module_codec.ModuleError):
            module_codec.validate(bad)
    assert resolve_mirror("torch.nn.modules.conv.Conv2d") is torch.nn.Conv2d
    d["nodes"][1]["bases"].append(7)
    with pytest.raises(module_codec.ModuleError):
        module_codec.validate(d)
    d["nodes"][1]["bases"].pop()
    for spoof in ("__main__.Conv2d", "torch.nn.modules.linear.Conv2d", "torch.nn.modules.conv.F"):
        assert issubclass(resolve_mirror(spoof), grading.autograder.mirror.StudentModule)
    # an attribute may not hide a method of the class in the mirror
    d2 = copy.deepcopy(d)
    d2["nodes"][1]["attrs"]["parameters"] = 0
    assert callable(module_codec.rebuild(module_codec.validate(d2), resolve_mirror)[1].parameters)
