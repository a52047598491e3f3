"""Draft addition to course_lib/grading/training_checks.py (append it there when A3 is finished).
It relies on that module's imports and helpers."""


def check_model_balanced_accuracy(build_model: Callable, path, images: torch.Tensor, labels: torch.Tensor,
                                  min_score: float) -> None:
    """The saved weights (read with ``weights_only=True``) loaded into ``build_model()`` must reach a
    balanced accuracy (``sklearn.metrics.balanced_accuracy_score``) of ``min_score`` on ``(images, labels)``."""
    from sklearn.metrics import balanced_accuracy_score

    from course_lib.grading.architecture_checks import build_from_file

    check = "check_model_balanced_accuracy"
    model = build_from_file(build_model, path, check)
    with torch.no_grad():
        predictions = torch.cat([model(images[i:i + 1000]).argmax(1) for i in range(0, len(labels), 1000)])
    score = balanced_accuracy_score(labels.numpy(), predictions.numpy())
    recalls = [float((predictions[labels == c] == c).double().mean()) for c in labels.unique().tolist()]
    if score < min_score:
        raise fail(check, "test images", f"path={str(path)!r}, {len(labels)} images",
                   f"balanced accuracy {score:.2%} is below the required {min_score:.0%}; recall per class: "
                   + ", ".join(f"{r:.2f}" for r in recalls))
    print(f"balanced accuracy {score:.2%} (required {min_score:.0%}); recall per class: "
          + ", ".join(f"{r:.2f}" for r in recalls))
    _passed(check, 1)
