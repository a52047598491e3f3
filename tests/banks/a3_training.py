"""A bank of realistic submissions of assignment 3 (practical training), built from the released notebook.

Each student starts from ``assignments/a3_training/a3_training.ipynb`` and fills its solution cells
with the reference solution's code, changed the way real students get it wrong; a student who
fine-tuned hands in ``a3_model.pt`` next to the notebook, as the assignment asks. The expected score
of every test cell is worked out by hand in ``EXPECTED``.

The bugs in parts 1, 2 and 4 do not change what the student's fine-tuning writes (it uses the
class-weighted loss, unfrozen features and no augmentation), so those students hand in the
solution's own weights. The schedule bug does change the run (higher learning rates in the last
epochs); that student also hands in the solution's weights: their own run, measured once, reaches a
balanced accuracy of 95.28% (the solution's: 95.34%), so part 5 passes either way.

The weight files are made once (:func:`weight_files`) by the solution's own code — fine-tuning takes
about 25 s of CPU, plus about 35 s the first time a machine builds the pretrained network — and cached
under ``_build/test-grading/`` by the hash of the solution, so that grading never trains.

    python tests/banks/a3_training.py OUT_DIR     writes OUT_DIR/<student>/a3_training.ipynb (+ weights)
"""
from __future__ import annotations

import sys
from pathlib import Path

import bank_tools
from bank_tools import edit, without

ASSIGNMENT = "a3_training"
MANUAL = {"finetune_answer": 4}

#: Points of every autograded test cell.
POINTS = {
    "test_augment": 2, "test_augment_hidden": 1,
    "test_class_weights": 2, "test_sample_weights": 2, "test_balanced_accuracy": 1, "test_balance_hidden": 2,
    "test_schedule": 2, "test_schedule_hidden": 1,
    "test_finetune": 2, "test_finetune_hidden": 1,
    "test_model_file": 2, "test_balanced_hidden": 6,
}

#: Expected autograde score per student and test cell.
EXPECTED: dict[str, dict[str, int]] = {
    "correct": without(POINTS),
    "blank": without(POINTS, *POINTS),
    # Draws from the global random generator instead of the one passed in: not reproducible.
    "augment_ignores_generator": without(POINTS, "test_augment", "test_augment_hidden"),
    # Sampler weights n_c instead of 1 / n_c: the frequent classes are drawn even more often.
    "sampler_not_inverted": without(POINTS, "test_sample_weights", "test_balance_hidden"),
    # "Balanced" accuracy computed as the plain accuracy.
    "plain_accuracy": without(POINTS, "test_balanced_accuracy", "test_balance_hidden"),
    # The factor's cosine runs over all epochs, (e - W) / T instead of (e - W) / (T - W): it never reaches 0.
    "cosine_over_all_epochs": without(POINTS, "test_schedule", "test_schedule_hidden"),
    # Replaces the head but never freezes the features, whatever `freeze` says.
    "forgot_freeze": without(POINTS, "test_finetune", "test_finetune_hidden"),
    # Saved the weights before fine-tuning: the file loads, but the new head is random.
    "saved_before_training": without(POINTS, "test_balanced_hidden"),
    # Saved the whole model with torch.save(model, ...): a pickle, refused by weights_only=True.
    "pickled_model": without(POINTS, "test_model_file", "test_balanced_hidden"),
    # Ignores part 4's instruction and puts a class of their own (an nn.Linear subclass) into the
    # grader's network: the sandbox cannot take it back into the grader's module.
    "own_head_class": without(POINTS, "test_finetune", "test_finetune_hidden"),
    # An attack: patches the sandbox's worker so that its reply makes the grader import a class of
    # its choosing into the grader's network. Refused; the grader's network is left unchanged.
    "forged_restructure": without(POINTS, "test_finetune", "test_finetune_hidden"),
}

FORGED_RESTRUCTURE = """

import sys as _sys


def prepare_finetune(model, num_classes, freeze):
    worker = _sys.modules["__main__"]  # the sandbox's worker module
    real = worker.Objects.finish

    def finish(self, reply):
        real(self, reply)
        description, nodes = worker.module_codec.describe(self.uploads[0].nodes[0])
        description["nodes"][-1]["class"] = "course_lib.grading.autograder.cli.Anything"
        order = [0] + [None] * (len(nodes) - 1)
        reply.restructure = [["u", 0, worker.protocol.encode({"module": description, "provenance": order})]]
        worker.Objects.finish = real

    worker.Objects.finish = finish
    return model
"""

#: A line of every failing check's message that the student's feedback must show.
FEEDBACK_MESSAGES = {
    "blank": "NotImplementedError",
    "augment_ignores_generator": "draw every random number from the generator argument",
    "sampler_not_inverted": "draws the classes with probabilities [0.8535, 0.1366, 0.0085, 0.0014], expected 0.2500 each",
    "plain_accuracy": "(that is the plain accuracy)",
    "cosine_over_all_epochs": "learning rates base_lr * factor of 6 of 10 epochs differ; first at epoch 4: "
                              "expected 0.0950484, got 0.0975528 (factor 0.950484 expected, 0.975528 returned)",
    "forgot_freeze": "only the new classifier may be trainable",
    "saved_before_training": "is below the required 90%; recall per class:",
    "pickled_model": "is not a plain state_dict: it cannot be read with torch.load(weights_only=True)",
    "own_head_class": "only torch.nn layers can be put into a module of the grader's, not the class NewHead",
    "forged_restructure": "only torch.nn layers can be put into a module of the grader's, not the class Anything",
}


def _answers(student: str) -> dict[str, str]:
    if student == "blank":
        return {}
    code = bank_tools.solution_code(ASSIGNMENT)
    if student == "augment_ignores_generator":
        code["augment"] = edit(code["augment"], ", generator=generator)", ")")
    elif student == "sampler_not_inverted":
        code["balance"] = edit(code["balance"], "return 1.0 / counts[labels]", "return counts[labels]")
    elif student == "plain_accuracy":
        code["balance"] = edit(code["balance"], "return float(torch.stack(recalls).mean())",
                               "return float((predictions == labels).double().mean())")
    elif student == "cosine_over_all_epochs":
        code["schedule"] = edit(code["schedule"], "/ (total_epochs - warmup_epochs)", "/ total_epochs")
    elif student == "forgot_freeze":
        code["finetune"] = edit(code["finetune"], "p.requires_grad = not freeze", "p.requires_grad = True")
    elif student == "saved_before_training":
        train = edit(code["finetune_train"], "    torch.save(model.state_dict(), path)\n", "")
        code["finetune_train"] = edit(train, "    fit(model, train_data",
                                      "    torch.save(model.state_dict(), path)\n    fit(model, train_data")
    elif student == "own_head_class":
        code["finetune"] = "class NewHead(nn.Linear):\n    pass\n\n\n" + edit(
            code["finetune"], "nn.Linear(old.in_features, num_classes)", "NewHead(old.in_features, num_classes)")
    elif student == "forged_restructure":
        code["finetune"] += FORGED_RESTRUCTURE
    elif student == "pickled_model":
        code["finetune_train"] = edit(code["finetune_train"], "torch.save(model.state_dict(), path)",
                                      "torch.save(model, path)")
    return code


def weight_files() -> dict[str, Path]:
    """``kind -> file``: ``trained`` (the solution's fine-tuning), ``untrained`` (the pretrained network
    with its new random head, saved before fine-tuning), ``pickled`` (a whole model pickled by
    ``torch.save(model, ...)``); cached by the solution's hash."""
    import torch

    def make(files):
        namespace = bank_tools.solution_namespace(ASSIGNMENT)
        torch.manual_seed(0)
        untrained = namespace["prepare_finetune"](namespace["fashion_cnn_clothes_0_4"](), 5, freeze=False)
        torch.save(untrained.state_dict(), files["untrained"])
        torch.save(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 5)), files["pickled"])
        namespace["finetune_and_save"](str(files["trained"]))

    return bank_tools.cached_files(ASSIGNMENT, ("trained", "untrained", "pickled"), make)


#: Which weight file each student hands in (``None``: none, the student never fine-tuned).
WEIGHT_FILE = {"correct": "trained", "blank": None, "augment_ignores_generator": "trained",
               "sampler_not_inverted": "trained", "plain_accuracy": "trained", "cosine_over_all_epochs": "trained",
               "forgot_freeze": "trained", "saved_before_training": "untrained", "pickled_model": "pickled",
               "own_head_class": "trained", "forged_restructure": "trained"}


BANK = bank_tools.Bank(
    ASSIGNMENT, POINTS, MANUAL, EXPECTED, FEEDBACK_MESSAGES, _answers,
    written={"finetune_answer": "With little data and a similar task I would freeze the features and train a new head ..."},
    secrets=("check_model_balanced_accuracy", "cases=[", "1.0 / counts[labels]", "math.cos",
             "p.requires_grad = not freeze"),
    weights=bank_tools.Weights("a3_model.pt", weight_files, WEIGHT_FILE))
write_bank = BANK.write  # for benchmarks/grading_sandbox.py

if __name__ == "__main__":
    bank_tools.main(BANK, sys.argv)
