"""nbgrader's configuration for the course (read from the working directory: run nbgrader from the
repository root, or through ``python -m course_lib.grading``, which does it for you)."""
c = get_config()  # noqa: F821 (injected by nbgrader)

c.CourseDirectory.course_id = "convnets-and-beyond"
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "assignments"
# submitted/, autograded/, feedback/ and gradebook.db live next to this file (all git-ignored).

# Every test cell may take this long; a whole assignment runs in well under a minute.
c.Execute.timeout = 120

# Warnings (torch, numpy, a stray print to sys.stderr) must not cost points: nbgrader scores any
# stderr output in a test cell as a failure, so right after execution stderr becomes ordinary output
# marked "[stderr]" (still shown in the feedback). Exceptions still score zero.
from course_lib.grading.autograder.nbgrader_plugins import autograde_preprocessors, feedback_preprocessors  # noqa: E402

c.Autograde.autograde_preprocessors = autograde_preprocessors()

# Feedback shows every test's score and failure message, but not the hidden tests' code.
c.GenerateFeedback.preprocessors = feedback_preprocessors()

# A student who deletes a test cell gets it back (with its hidden tests) and is graded on it;
# edited test cells are restored from the gradebook anyway (their checksums differ).
c.OverwriteCells.add_missing_cells = True

