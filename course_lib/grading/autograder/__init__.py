"""The instructor's side of grading: the student's code runs in a jail, the checks in the grader.

See ``README.md`` in this folder for the modules, a call's path from a test cell to the worker and
back, and the message schema. Students never import this package; the checks (``course_lib.grading``)
never import it either.
"""
