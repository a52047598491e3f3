"""A bank of realistic submissions of assignment 5 (GANs), built from the released notebook.

Each student starts from ``assignments/a5_gans/a5_gans.ipynb`` and fills its solution cells with the
reference solution's code, changed the way real students get it wrong. The expected scores per test
cell are worked out in ``EXPECTED`` (the short training run of part 4 is seeded, so its outcome for
a wrong submission is as reproducible as the others).

    python tests/banks/a5_gans.py OUT_DIR     writes OUT_DIR/<student>/a5_gans.ipynb
"""
from __future__ import annotations

import sys

import bank_tools
from bank_tools import edit, without

ASSIGNMENT = "a5_gans"

#: Points of every autograded test cell.
POINTS = {
    "test_generator": 2, "test_discriminator": 1, "test_networks_hidden": 2,
    "test_losses": 2, "test_losses_hidden": 2,
    "test_train_step": 3, "test_train_step_hidden": 2,
    "test_short_training": 2, "test_short_training_hidden": 2,
}
#: The hand-graded written answer.
MANUAL = {"nonsaturating_answer": 4}


#: Expected autograde score per student and test cell.
EXPECTED: dict[str, dict[str, int]] = {
    "correct": without(POINTS),
    "blank": without(POINTS, *POINTS),
    # The minimax generator loss log(1 - D(G(z))) instead of -log D(G(z)): wrong values, so the loss
    # and step checks fail. Its gradient is small when D is confident, but Adam's steps do not scale
    # with the gradient, so in the short run (Adam) it still fools a frozen D: part 4 passes.
    "saturating_generator": without(POINTS, "test_losses", "test_losses_hidden", "test_train_step",
                                    "test_train_step_hidden"),
    # Real labelled 0 and fake 1 in the discriminator's loss: D learns the opposite of its job.
    "labels_swapped": without(POINTS, "test_losses", "test_losses_hidden", "test_train_step", "test_train_step_hidden",
                              "test_short_training", "test_short_training_hidden"),
    # The fakes of the D step are not detached and both optimisers are zeroed once at the start:
    # the D loss's gradient reaches G and is added to G's update. The losses are right; the step is
    # not, but in the short run the G update still fools a frozen D.
    "no_detach": without(POINTS, "test_train_step", "test_train_step_hidden"),
    # Padding forgotten in the middle transposed convolution: 7 -> 16 -> 32, 32x32 images.
    "padding_forgotten": without(POINTS, "test_generator", "test_networks_hidden"),
    # opt_G.zero_grad() forgotten: G's gradients pile up from step to step. The first step is right
    # (gradients start at None), so only several steps in a row can show it, and check_train_step now
    # runs three: called directly (the student's own kernel) it fails from step 2. Sandboxed it still
    # gets FULL marks: the autograder uploads parameters, buffers and optimizer state for each call
    # but not .grad, so every step starts from None gradients (open: carry .grad in module_sync).
    # In the short run Adam's normalised steps still move G the right way, so part 4 passes either way.
    "generator_grads_accumulate": without(POINTS),
    # The discriminator's second LeakyReLU moved after its last convolution: same shapes, but the
    # logits of fakes are scaled by 0.2 where negative. Only the layer-by-layer comparison with the
    # stated architecture catches it; the step checks use course_lib's networks and part 4 still learns.
    "leaky_relu_after_last_conv": without(POINTS, "test_discriminator", "test_networks_hidden"),
    # Padding 2 in the discriminator's first convolution: 28 -> 15 -> 7, so every shape is still right.
    "padding_keeps_shapes": without(POINTS, "test_discriminator", "test_networks_hidden"),
    # The course library's answers (issue 14): its DCGAN networks (course_lib.models.dcgan) built by
    # build_generator/build_discriminator, which the short run uses too; the losses and step are the student's.
    "library_networks": without(POINTS, "test_generator", "test_discriminator", "test_networks_hidden",
                                "test_short_training", "test_short_training_hidden"),
    # course_lib.gan's losses, imported: the loss parts and the step and short run that use them score 0.
    "library_losses": without(POINTS, "test_losses", "test_losses_hidden", "test_train_step", "test_train_step_hidden",
                              "test_short_training", "test_short_training_hidden"),
}

#: A line of a failing check's message that the student's feedback must show.
FEEDBACK_MESSAGES = {
    "blank": "NotImplementedError",
    "saturating_generator": "generator_loss: tensors are not close!",
    "labels_swapped": "discriminator_loss: tensors are not close!",
    "no_detach": "generator parameter",
    "padding_forgotten": "wrong output shape: expected (4, 1, 28, 28), got (4, 1, 32, 32)",
    "leaky_relu_after_last_conv": "the network's output differs from the assignment's layers run on the same weights",
    "padding_keeps_shapes": ("convolution 1: expected Conv2d(1, 8, kernel_size=4, stride=2, padding=1), got "
                             "Conv2d(1, 8, kernel_size=(4, 4), stride=(2, 2), padding=(2, 2))"),
    "library_networks": "used course_lib.models.dcgan.Generator.__init__, the course library's own answer",
    "library_losses": "used course_lib.gan.discriminator_loss, the course library's own answer",
}


def _answers(student: str) -> dict[str, str]:
    """Source of each solution cell for ``student`` (cells left out stay as released)."""
    if student == "blank":
        return {}
    code = bank_tools.solution_code(ASSIGNMENT)
    if student == "saturating_generator":
        code["losses"] = edit(code["losses"], "    return F.softplus(-fake_logits).mean()",
                              "    return -F.softplus(fake_logits).mean()  # log(1 - D(G(z)))")
    elif student == "labels_swapped":
        code["losses"] = edit(code["losses"],
                              "return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()",
                              "return F.softplus(real_logits).mean() + F.softplus(-fake_logits).mean()")
    elif student == "no_detach":
        step = edit(code["train_step"], "fake = G(z_d).detach()  # no gradient into G in the discriminator's step",
                    "opt_D.zero_grad()\n    opt_G.zero_grad()\n    fake = G(z_d)")
        step = edit(step, "    opt_D.zero_grad()\n    d_loss.backward()", "    d_loss.backward()")
        code["train_step"] = edit(step, "    opt_G.zero_grad()\n    g_loss.backward()", "    g_loss.backward()")
    elif student == "padding_forgotten":
        code["networks"] = edit(code["networks"],
                                "nn.ConvTranspose2d(2 * width, width, 4, stride=2, padding=1, bias=False)",
                                "nn.ConvTranspose2d(2 * width, width, 4, stride=2, bias=False)")
    elif student == "generator_grads_accumulate":
        code["train_step"] = edit(code["train_step"], "    opt_G.zero_grad()\n", "")
    elif student == "leaky_relu_after_last_conv":
        code["networks"] = edit(code["networks"], "nn.BatchNorm2d(2 * width),\n        nn.LeakyReLU(0.2),  # 14 -> 7\n"
                                "        nn.Conv2d(2 * width, 1, 7),  # 7 -> 1",
                                "nn.BatchNorm2d(2 * width),  # 14 -> 7\n        nn.Conv2d(2 * width, 1, 7), nn.LeakyReLU(0.2),")
    elif student == "padding_keeps_shapes":
        code["networks"] = edit(code["networks"], "nn.Conv2d(1, width, 4, stride=2, padding=1)",
                                "nn.Conv2d(1, width, 4, stride=2, padding=2)")
    elif student == "library_networks":
        code["networks"] = ("from course_lib.models.dcgan import Discriminator, Generator\n\n\n"
                            "def build_generator(z_dim=100, width=64):\n    return Generator(z_dim, width=width)\n\n\n"
                            "def build_discriminator(width=64):\n    return Discriminator(width=width)\n")
    elif student == "library_losses":
        code["losses"] = "from course_lib.gan import discriminator_loss, generator_loss\n"
    return code


BANK = bank_tools.Bank(
    ASSIGNMENT, POINTS, MANUAL, EXPECTED, FEEDBACK_MESSAGES, _answers,
    written={"nonsaturating_answer": "The derivative of log(1 - sigmoid(l)) is -sigmoid(l), which vanishes when ..."},
    secrets=("NetCase(", "LossCase(", "StepCase(", "TrainingCase(", "G(z_d).detach()", "F.softplus(-fake_logits)"))
write_bank = BANK.write  # for benchmarks/grading_sandbox.py

if __name__ == "__main__":
    bank_tools.main(BANK, sys.argv)
