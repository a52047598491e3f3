"""``python -m course_lib.grading`` runs the instructor's commands (see :mod:`course_lib.grading.autograder.cli`)."""
from course_lib.grading.autograder.cli import main

raise SystemExit(main())
