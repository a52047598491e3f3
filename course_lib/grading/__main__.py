"""``python -m course_lib.grading`` runs the instructor's commands (see :mod:`course_lib.grading.cli`)."""
from course_lib.grading.cli import main

raise SystemExit(main())
