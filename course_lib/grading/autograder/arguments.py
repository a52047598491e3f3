"""The command line of ``python -m course_lib.grading``: every sub-command and option, with its default
(``--help`` shows them); :mod:`~course_lib.grading.autograder.cli` runs them."""
from __future__ import annotations

import argparse
from pathlib import Path

from course_lib.grading.autograder import jail_rootless
from course_lib.grading.autograder.lms import DEFAULT_PATTERN
from course_lib.grading.autograder.submission_policy import Policy



class HELP(argparse.ArgumentDefaultsHelpFormatter):
    """Every option's help ends with its default, except a flag's and an unset one's (its help says
    what unset means)."""

    def _get_help_string(self, action):
        if action.nargs == 0 or action.default is None:
            return action.help
        return super()._get_help_string(action)


def parser(description: str, db_url_env: str) -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="python -m course_lib.grading", description=description, formatter_class=HELP)
    top.add_argument("--root", type=Path, default=Path("."), help="the course directory")
    top.add_argument("--db-url", help="the gradebook's SQLAlchemy URL, e.g. postgresql+psycopg2://USER@/DB?host=SOCKET_DIR "
                                      f"(unset: ${db_url_env}, else sqlite:///ROOT/gradebook.db)")
    top.add_argument("--isolation", choices=jail_rootless.MODES, help="the sandbox: root (unshare, setpriv), "
                     "rootless (bubblewrap, an unprivileged user namespace) or auto: root when run as root, else "
                     f"rootless (unset: ${jail_rootless.ISOLATION_ENV}, else auto); none possible: grading is refused")
    sub = top.add_subparsers(dest="command", required=True)
    sub.add_parser("release", help="regenerate assignments/ from solutions/", formatter_class=HELP).add_argument(
        "assignment", nargs="*", help="the assignments to release (none: all)")
    _autograde(sub.add_parser("autograde", help="collect, then grade every submission of an assignment "
                                                "(resumes an interrupted run)", formatter_class=HELP))
    doctor = sub.add_parser("doctor", help="check that this machine can grade in the sandbox (what it protects, "
                                           "and a known-good submission run through it); autograde runs it first",
                            formatter_class=HELP)
    doctor.add_argument("--start-timeout", type=float, default=120.0, help="seconds for the sandbox to start")
    sub.add_parser("grades", help="every score of every assignment as CSV", formatter_class=HELP).add_argument(
        "--output", type=Path, default=Path("grades.csv"), help="the CSV file (relative to --root)")
    _export(sub.add_parser("export", help="one assignment's grades for the LMS: every student of the roster, "
                                          "late penalties applied", formatter_class=HELP))
    sub.add_parser("feedback", help="generate feedback HTML for every graded student", formatter_class=HELP
                   ).add_argument("assignment")
    return top


def _autograde(grade: argparse.ArgumentParser) -> None:
    grade.add_argument("assignment")
    grade.add_argument("--submissions", type=Path, help="first copy FOLDER/STUDENT.ipynb, FOLDER/STUDENT/ or FOLDER/STUDENT.zip|"
                       ".tar|.tar.gz|.tgz in (links never followed; only the expected files: see autograder/inbox.py); "
                       "with --lms or --pattern, FOLDER is an LMS download instead (autograder/lms.py), unpacked or "
                       "the LMS's download.zip as it comes (refused whole if it holds a link, a .. path or too many "
                       "bytes: autograder/lms_download.py)")
    grade.add_argument("--lms", action="store_true", help=f"--submissions is an LMS download named as --pattern's default, "
                       f"{DEFAULT_PATTERN} (e.g. alice_12345_LATE_2026-12-01-10-00-00_a1_convolution.ipynb)")
    grade.add_argument("--pattern", help="the LMS download's file names: a regular expression with the named groups "
                       "student_id and file_id, optionally timestamp (nbgrader's FileNameCollectorPlugin.named_regexp)")
    _timezone(grade)
    grade.add_argument("--roster", type=Path, help="put the students of this CSV (id, first_name, last_name, email: "
                       "nbgrader db student import's format) in the gradebook first")
    grade.add_argument("--due", help="set the assignment's due date in the gradebook first, e.g. '2026-12-01 23:59' "
                       "(in --timezone) or '2026-12-01T23:59+01:00'")
    grade.add_argument("--student", help="grade this student's submission only, again if it was graded before")
    grade.add_argument("--force", action="store_true", help="grade again submissions an earlier run finished "
                       "(without it, a rerun grades only what is left)")
    mode = grade.add_mutually_exclusive_group()
    mode.add_argument("--sandbox", dest="sandbox", action="store_true", default=None,
                      help="sandbox (the default; an assignment whose tests use something with no proxy, "
                           "session.unsupported, is refused)")
    mode.add_argument("--no-sandbox", dest="sandbox", action="store_false",
                      help="UNSAFE: let stock nbgrader run each notebook with its tests in one kernel (no resuming)")
    grade.add_argument("--max-file-mb", type=int, default=Policy.max_file >> 20, help="MiB a submitted file may hold")
    grade.add_argument("--max-submission-mb", type=int, default=Policy.max_student >> 20,
                       help="MiB a student's files may hold together")
    grade.add_argument("--jobs", "-j", type=int, default=1, help="submissions graded at once on this machine "
                       "(with --scheduler, an error above 1: the cluster's workers decide, dask worker --nworkers N)")
    grade.add_argument("--scheduler", metavar="ADDRESS", help="grade on the Dask cluster of this scheduler "
                       "(tcp://HOST:8786) instead of here, as many at once as it has worker processes (--jobs > 1 "
                       "is refused); the gradebook is still written here (README: grading)")
    grade.add_argument("--call-timeout", type=float, default=60.0, help="seconds per call of a student's function")
    grade.add_argument("--start-timeout", type=float, default=120.0, help="seconds to run a student's code cells")
    grade.add_argument("--timeout", type=float, default=600.0, help="seconds per submission in all")
    grade.add_argument("--memory", type=int, default=6144, help="MiB of address space per submission")


def _timezone(command: argparse.ArgumentParser) -> None:
    command.add_argument("--timezone", default="UTC", help="the time zone of times written without an offset "
                         "(the LMS's file names, --due), e.g. Europe/Paris")


def _export(export: argparse.ArgumentParser) -> None:
    export.add_argument("assignment")
    export.add_argument("--output", type=Path, help="the CSV file (relative to --root; unset: exports/ASSIGNMENT.csv)")
    export.add_argument("--roster", type=Path, help="put the students of this CSV in the gradebook first (as autograde's)")
    export.add_argument("--due", help="set the assignment's due date in the gradebook first (as autograde's)")
    _timezone(export)
    export.add_argument("--late-penalty", default="none", help="none; zero (any lateness: 0 points); or P%%/day or "
                        "P%%/hour: P%% of the assignment's points per started day (hour) late")
    export.add_argument("--late-cap", default="100%", help="the most a P%%/day penalty takes in all, in %% of the points")
    export.add_argument("--late-cutoff", type=float, help="days late after which a submission scores 0 "
                        "(unset: no cutoff)")
