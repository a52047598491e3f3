"""The instructor's commands around nbgrader: release, autograde, grades, export, feedback.

    python -m course_lib.grading release   [ASSIGNMENT ...]          solutions/ -> assignments/
    python -m course_lib.grading autograde ASSIGNMENT [--submissions DIR|ZIP [--lms | --pattern RE]] [--roster CSV]
                                 [--due WHEN] [--student ID] [--force] [--jobs N]   grade every submission
                                                                   (sandboxed, resumable; --no-sandbox: stock nbgrader)
    python -m course_lib.grading doctor                              can this machine grade? (autograde checks first)
    python -m course_lib.grading grades    [--output grades.csv]     every score as CSV
    python -m course_lib.grading export    ASSIGNMENT [--late-penalty 10%/day]   the LMS's CSV, every rostered student
    python -m course_lib.grading feedback  ASSIGNMENT                feedback/STUDENT/ASSIGNMENT/*.html

``python -m course_lib.grading COMMAND --help`` lists every option with its default.

Every command runs nbgrader in the course directory (``--root``, default the repository), because
nbgrader reads ``nbgrader_config.py`` only from its working directory, and with the virtual
environment's ``bin/`` on ``PATH`` (nbgrader calls ``alembic`` from there). Students are graded in
one nbgrader call (its start-up alone costs seconds), always with ``--force`` so that re-grading works.
"""
from __future__ import annotations

import argparse
import collections
import csv
import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import course_lib
from course_lib.grading.autograder import (arguments, distributed, gradebook, inbox, jail_rootless, lateness, lms,
                                          lms_download, lms_export, preflight, results, roster, session, student_text)
from course_lib.grading.autograder.gradebook import DB_URL_ENV, db_url
from course_lib.grading.autograder.jail import Limits
from course_lib.grading.autograder.nbgrader_plugins import SANDBOX_RESULTS_ENV, UNSANDBOXED_ENV

REPO = Path(course_lib.__file__).resolve().parents[1]
MATHJAX = REPO / "_extra" / "mathjax"
#: The MathJax 3 bundle a feedback page loads. SVG output, unlike CHTML, needs no web fonts, which
#: browsers refuse to load for a page opened from disk (file://), as a student opens the feedback.
MATHJAX_SCRIPT = "tex-svg.js"

# nbconvert's feedback template loads MathJax 2 from a CDN between these two comments.
_MATHJAX_BLOCK = re.compile(r"<!-- Load mathjax -->.*?<!-- End of mathjax configuration -->", re.S)
LOCAL_MATHJAX = """<!-- MathJax 3, served from the folder next to this page (no CDN) -->
    <script>
    window.MathJax = {
      tex: {inlineMath: [['$', '$'], ['\\\\(', '\\\\)']], displayMath: [['$$', '$$'], ['\\\\[', '\\\\]']],
            processEscapes: true, processEnvironments: true, tags: 'ams'},
      options: {ignoreHtmlClass: 'tex2jax_ignore', processHtmlClass: 'tex2jax_process'}
    };
    </script>
    <script defer src="mathjax/tex-svg.js"></script>"""


def nbgrader(root: Path, *args: str, check: bool = True, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    """Run ``nbgrader ARGS`` in the course directory ``root``; its log goes to our stderr, its output to
    our stdout, both with control characters escaped (its log quotes the students' notebooks)."""
    if not (root / "nbgrader_config.py").exists():
        raise FileNotFoundError(f"no nbgrader_config.py in {root}: nbgrader would silently use defaults")
    env = dict(os.environ, PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
               **(env_extra or {}))
    cmd = [sys.executable, "-m", "nbgrader", *args]
    if os.environ.get(DB_URL_ENV):
        cmd.append(f"--CourseDirectory.db_url={os.environ[DB_URL_ENV]}")
    with subprocess.Popen(cmd, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        out = threading.Thread(target=student_text.relay, args=(proc.stdout, sys.stdout), daemon=True)
        out.start()
        student_text.relay(proc.stderr, sys.stderr)
        out.join()
    result = subprocess.CompletedProcess(cmd, proc.returncode)
    if check and result.returncode:
        raise subprocess.CalledProcessError(result.returncode, cmd)
    return result


def assignments(root: Path) -> list[str]:
    """The assignments in ``solutions/``, by folder name."""
    return sorted(p.name for p in (root / "solutions").iterdir() if p.is_dir() and any(p.glob("*.ipynb")))


def release(root: Path, names: list[str]) -> list[Path]:
    """Regenerate ``assignments/NAME/`` from ``solutions/NAME/`` and normalise the notebooks."""
    written = []
    for name in names or assignments(root):
        nbgrader(root, "generate_assignment", name, "--create", "--force")
        written += sorted((root / "assignments" / name).glob("*.ipynb"))
    # The same normalisation as every committed notebook, so that the release is reproducible.
    subprocess.run([sys.executable, str(REPO / "tools" / "nbnormalize.py"), *map(str, written)], check=True)
    return written


def collect(root: Path, assignment: str, folder: Path, max_file: int = inbox.Policy.max_file,
            max_student: int = inbox.Policy.max_student, pattern: str | None = None,
            zone: str = "UTC") -> inbox.Report:
    """Copy a folder of submissions into nbgrader's ``submitted/STUDENT/ASSIGNMENT/``, safely.

    Accepts ``folder/STUDENT.ipynb`` (one-notebook assignments), ``folder/STUDENT/`` (its notebooks
    and the data files the assignment declares, e.g. the weights of a trained model that a test
    loads) and ``folder/STUDENT.zip``/``.tar``/``.tar.gz``/``.tgz``; with a ``pattern``, ``folder`` is
    an LMS download whose file names say the student and the time (:mod:`~course_lib.grading.autograder.lms`),
    unpacked or the LMS's ``.zip`` (:mod:`~course_lib.grading.autograder.lms_download`).
    Links are never followed and anything unexpected is refused with a message, without stopping the
    others: the policy is :mod:`~course_lib.grading.autograder.inbox`'s docstring. The refusals are kept
    in ``reports/ASSIGNMENT_not_collected.csv`` for the export.
    """
    release = root / "assignments" / assignment
    if not sorted(release.glob("*.ipynb")):
        raise FileNotFoundError(f"assignment {assignment!r} has no released notebook in {root / 'assignments'}")
    policy = inbox.expected_files(release, max_file=max_file, max_student=max_student)
    if pattern is None:
        if not folder.is_dir():
            raise ValueError(f"--submissions {folder} is not a folder (an LMS download's .zip needs --lms or --pattern)")
        report = inbox.collect(root, assignment, folder, policy)
    else:
        with lms_download.unpacked(folder, policy) as download:  # a .zip: checked whole, then a folder
            report = lms.collect(root, assignment, download, policy, pattern, zone)
    lms_export.write_refused(root / "reports" / f"{assignment}_not_collected.csv", report.refused)
    return report


def set_due_date(root: Path, assignment: str, due) -> None:
    """Record ``due`` (an aware datetime) as the assignment's due date in the gradebook (nbgrader's
    ``duedate``, which nbgrader's own tools and :mod:`~course_lib.grading.autograder.lateness` read)."""
    from nbgrader.api import Gradebook

    with Gradebook(db_url(root)) as gb:
        gb.update_or_create_assignment(assignment, duedate=due)
    print(f"{assignment}: due {due.isoformat()}", file=sys.stderr)


def export_lms(root: Path, assignment: str, output: Path, policy: lateness.LatePolicy) -> Path:
    """Write ``assignment``'s LMS table (:mod:`~course_lib.grading.autograder.lms_export`) to ``output``;
    the gradebook must hold it (:func:`~course_lib.grading.autograder.gradebook.require_assignment`)."""
    from nbgrader.api import Gradebook

    refused = lms_export.read_refused(root / "reports" / f"{assignment}_not_collected.csv")
    with Gradebook(db_url(root)) as gb:
        rows = lms_export.export_rows(gb, assignment, policy, results.Store(root, assignment), refused)
    lms_export.write_csv(rows, output)
    counts = collections.Counter(re.split(r"[:(]", row["status"])[0].strip() for row in rows)
    print(f"{len(rows)} students written to {output}: " + ", ".join(f"{n} {k}" for k, n in sorted(counts.items())))
    return output


def autograde(root: Path, assignment: str, sandbox: bool | None = None, jobs: int = 1, limits=None,
              budget: float = 600.0, student: str | None = None, force: bool = False,
              scheduler: str | None = None) -> dict[str, float | None]:
    """Grade the submissions of ``assignment`` (only ``student``'s when given); ``{student: score or None}``.

    Unless ``sandbox`` is ``False`` the students' code runs in :mod:`~course_lib.grading.autograder.jail`
    and the tests in this process (:mod:`~course_lib.grading.autograder.session`), ``jobs`` submissions
    at a time; nbgrader then only restores the test cells, records the scores and writes the
    gradebook; an assignment the sandbox cannot grade is refused (fail closed). Each submission's
    results are kept as it finishes (:mod:`~course_lib.grading.autograder.results`): a rerun after an
    interruption grades only what is left, unless ``force``. With ``sandbox=False``
    stock nbgrader executes each notebook in one kernel (unsafe: a student can read the hidden tests
    and the gradebook, or fake a pass); nbgrader started any other way refuses to execute. A submission that cannot be
    graded (an unreadable notebook, ...) is reported as ``None``; it does not stop the others. With
    ``scheduler``, a Dask cluster grades (:mod:`~course_lib.grading.autograder.distributed`).
    """
    reasons = [r for nb in sorted((root / "solutions" / assignment).glob("*.ipynb")) for r in session.unsupported(nb)]
    if reasons and sandbox is not False:  # fail closed: unsandboxed only when the instructor says so
        raise ValueError(f"the sandbox cannot grade {assignment}: " + "; ".join(reasons)
                         + " (--no-sandbox grades it with stock nbgrader, UNSAFE)")
    selection = [f"--student={student}"] if student else []
    store = None
    if sandbox is False:
        print(f"WARNING: {assignment} is graded by stock nbgrader, UNSANDBOXED: the students' code runs with the "
              "tests, as the grader's user, in the course folder (--no-sandbox)", file=sys.stderr)
        env_extra = {UNSANDBOXED_ENV: "1"}
    else:
        store = _sandbox_grade(root, assignment, jobs, limits or Limits(), budget, student, force, scheduler)
        env_extra = {SANDBOX_RESULTS_ENV: str(store.folder)}
        todo, leave = store.to_record(student)
        selection += [f"--CourseDirectory.student_id_exclude={','.join(leave)}"] if leave else []
    result = None
    if store is None or todo:
        result = nbgrader(root, "autograde", assignment, "--force", *selection, check=False, env_extra=env_extra)
    if store is not None:
        store.recorded(todo)
    scores = submission_scores(root, assignment)
    if student:
        scores = {student: scores.get(student)}
    failed = [s for s, v in scores.items() if v is None]
    # nbgrader exits with 1 when any submission failed; only a failure of all (or of none, i.e. of
    # nbgrader itself) points at the set-up rather than at a student.
    if result is not None and result.returncode and (not failed or len(failed) == len(scores)):
        raise RuntimeError(f"nbgrader autograde failed (exit code {result.returncode}); see its log above. "
                           f"In a fresh clone, run `make release` first: it puts {assignment} in the gradebook.")
    return scores


def _sandbox_grade(root: Path, assignment: str, jobs: int, limits: Limits, budget: float, student: str | None,
                   force: bool, scheduler: str | None = None) -> results.Store:
    """Run the submissions not graded yet in the sandbox, keeping each result as it finishes; with a
    ``scheduler``, the cluster's workers sandbox (each checks its machine before its first submission)."""
    warning = None if scheduler else session.protections_warning()
    if warning:
        print(warning, file=sys.stderr)
    problems = [] if scheduler else preflight.preflight(limits)
    if problems:  # the set-up's fault: no student is graded, none gets 0 for it
        raise RuntimeError("grading refused, no submission was graded: " + "; ".join(problems)
                           + " (`python -m course_lib.grading doctor` checks the set-up)")
    store = results.Store(root, assignment)
    todo = store.to_grade(student, force)
    if scheduler:
        graded = distributed.grade_all(scheduler, root, assignment, store.folder, limits, budget, students=todo,
                                       on_result=store.graded)
    else:
        graded = session.grade_all(root, assignment, store.folder, jobs=jobs, limits=limits, budget=budget,
                                   students=todo, on_result=store.graded)
    _log_events(graded)
    write_failure_summary(root, assignment, session.failure_summary(store.load_all()))
    return store


def _log_events(graded: dict[str, dict]) -> None:
    for student, notebooks in sorted(graded.items()):
        for name, result in notebooks.items():
            for event in [*result.get("events", []), f"graded in {result.get('seconds', 0):.1f} s"]:
                for line in student_text.event_lines(student, name, event):
                    print(line, file=sys.stderr)


def write_failure_summary(root: Path, assignment: str, rows: list[tuple[str, int, str]]) -> Path:
    """Print which tests failed most (and their commonest message); keep it in ``reports/``."""
    path = root / "reports" / f"{assignment}_failures.csv"
    path.parent.mkdir(exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["test", "submissions_failed", "commonest_message"])
        writer.writerows((test, count, student_text.escape(message)) for test, count, message in rows)
    print(f"tests failed most ({path.relative_to(root)}):", file=sys.stderr)
    for test, count, message in rows[:10]:
        print(f"  {test:32s} {count:5d}  {student_text.escape(message[:90])}", file=sys.stderr)
    return path


def submission_scores(root: Path, assignment: str) -> dict[str, float | None]:
    """Autograded score of every submitted student (``None``: submitted but not graded)."""
    from nbgrader.api import Gradebook

    submitted = sorted(p.parent.name for p in (root / "submitted").glob(f"*/{assignment}"))
    scores: dict[str, float | None] = {}
    with Gradebook(db_url(root)) as gb:
        for student in submitted:
            graded = (root / "autograded" / student / assignment).is_dir()
            scores[student] = gb.find_submission(assignment, student).score if graded else None
    return scores


GRADE_COLUMNS = ("student_id", "assignment", "score", "max_score", "autograded", "needs_manual_grade")


def export_grades(root: Path, output: Path) -> Path:
    """One CSV row per student and assignment: the score so far, and what still needs doing.

    ``autograded`` is false for a missing or ungradable submission (its score is then 0);
    ``needs_manual_grade`` is true until an instructor has marked the hand-graded answers.
    """
    from nbgrader.api import Gradebook, MissingEntry

    rows = []
    with Gradebook(db_url(root)) as gb:
        for assignment in gb.assignments:
            for student in gb.students:
                row = {"student_id": student.id, "assignment": assignment.name, "score": 0.0,
                       "max_score": assignment.max_score, "autograded": False, "needs_manual_grade": False}
                try:
                    submission = gb.find_submission(assignment.name, student.id)
                except MissingEntry:
                    rows.append(row)
                    continue
                if (root / "autograded" / student.id / assignment.name).is_dir():
                    row.update(score=submission.score, autograded=True,
                               needs_manual_grade=submission.needs_manual_grade)
                rows.append(row)
    with output.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=GRADE_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    print(f"{len(rows)} rows written to {output}")
    return output


def localize_mathjax(html: Path, mathjax: Path = MATHJAX) -> None:
    """Point a feedback page at a copy of MathJax 3 next to it, instead of nbconvert's CDN MathJax 2."""
    text = html.read_text(encoding="utf-8")
    if not _MATHJAX_BLOCK.search(text):
        raise ValueError(f"{html}: no nbconvert MathJax block found; has the feedback template changed?")
    html.write_text(_MATHJAX_BLOCK.sub(lambda _: LOCAL_MATHJAX, text), encoding="utf-8")
    source = mathjax / MATHJAX_SCRIPT
    if not source.is_file():
        raise FileNotFoundError(f"{source} is missing: run `make mathjax` first")
    (html.parent / "mathjax").mkdir(exist_ok=True)
    shutil.copyfile(source, html.parent / "mathjax" / MATHJAX_SCRIPT)


def feedback(root: Path, assignment: str, mathjax: Path = MATHJAX) -> list[Path]:
    """Generate each student's feedback HTML, with maths typeset offline."""
    nbgrader(root, "generate_feedback", assignment, "--force")
    pages = sorted((root / "feedback").glob(f"*/{assignment}/*.html"))
    for page in pages:
        localize_mathjax(page, mathjax)
    return pages


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    except (RuntimeError, OSError, ValueError, subprocess.CalledProcessError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1


def _parser() -> argparse.ArgumentParser:
    return arguments.parser(__doc__.split("\n")[0], DB_URL_ENV)


def _main(argv: list[str] | None) -> int:
    args = _parser().parse_args(argv)
    root = args.root.resolve()
    if args.db_url:
        os.environ[DB_URL_ENV] = args.db_url
    if args.isolation:  # read by the jail, also in the --jobs processes
        os.environ[jail_rootless.ISOLATION_ENV] = args.isolation
    if args.command == "release":
        for path in release(root, args.assignment):
            print(f"released {path.relative_to(root)}")
    elif args.command == "autograde":
        _autograde_command(root, args)
    elif args.command == "doctor":
        return preflight.doctor(Limits(start_timeout=args.start_timeout))
    elif args.command == "grades":
        export_grades(root, args.output if args.output.is_absolute() else root / args.output)
    elif args.command == "export":
        gradebook.require_assignment(db_url(root), args.assignment)  # before anything writes to it
        _prepare_gradebook(root, args)
        output = args.output or Path("exports") / f"{args.assignment}.csv"
        policy = lateness.parse_policy(args.late_penalty, args.late_cap, args.late_cutoff)
        export_lms(root, args.assignment, output if output.is_absolute() else root / output, policy)
    elif args.command == "feedback":
        for page in feedback(root, args.assignment):
            print(f"feedback {page.relative_to(root)}")
    return 0


def _autograde_command(root: Path, args: argparse.Namespace) -> None:
    """``autograde``: roster and due date into the gradebook, collection, grading, one line per student."""
    _check_autograde_options(args)
    students = _prepare_gradebook(root, args)
    collected = None
    if args.submissions:
        collected = collect(root, args.assignment, args.submissions, max_file=args.max_file_mb << 20,
                            max_student=args.max_submission_mb << 20,
                            pattern=args.pattern or (lms.DEFAULT_PATTERN if args.lms else None), zone=args.timezone)
        print(f"collected {len(collected.collected)} submissions, refused {len(collected.refused)}")
        if students is not None:
            roster.warn_unknown(students, collected.collected)
    limits = Limits(call_timeout=args.call_timeout, start_timeout=args.start_timeout, memory=args.memory << 20)
    scores = autograde(root, args.assignment, sandbox=args.sandbox, jobs=max(1, args.jobs), limits=limits,
                       budget=args.timeout, student=args.student, force=args.force or bool(args.student),
                       scheduler=args.scheduler)
    for student, score in scores.items():
        shown = "NOT GRADED (see the log above)" if score is None else f"{score:g}"
        print(f"{student_text.escape(student):24s} {shown}")
    for student, reason in sorted((collected.refused if collected else {}).items()):
        if student not in scores:
            print(f"{student_text.escape(student):24s} NOT COLLECTED ({student_text.escape(reason)})")


def _check_autograde_options(args: argparse.Namespace) -> None:
    """Options that contradict each other: refused before anything is collected or graded."""
    if (args.lms or args.pattern) and not args.submissions:
        raise ValueError("--lms and --pattern describe the --submissions folder; give it")
    if args.scheduler and args.sandbox is False:
        raise ValueError("--scheduler grades in the workers' sandboxes; it cannot be combined with --no-sandbox")
    if args.scheduler and args.jobs > 1:  # the cluster decides: taking --jobs silently would mislead
        raise ValueError(f"--jobs {args.jobs} counts this machine's submissions at once; with --scheduler the "
                         "cluster's workers grade (start each `dask worker ADDRESS --nthreads 1 --nworkers N`): drop --jobs")


def _prepare_gradebook(root: Path, args: argparse.Namespace) -> list[roster.Student] | None:
    """``--roster`` and ``--due`` into the gradebook (before grading or exporting); the roster read."""
    students = roster.read_roster(args.roster) if args.roster else None
    if students is not None:
        roster.import_roster(db_url(root), students)
    if args.due:
        set_due_date(root, args.assignment, lms.parse_time(args.due, args.timezone))
    return students


if __name__ == "__main__":
    raise SystemExit(main())
