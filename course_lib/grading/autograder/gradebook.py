"""The gradebook: where it is (:func:`db_url`), and whether it holds an assignment, found out without
changing it (:func:`require_assignment`).

Why not ``nbgrader.api.Gradebook`` for the question: opening one creates what is missing, an empty
``gradebook.db`` with nbgrader's tables (and asks ``alembic`` for the version to stamp it with), so a
command run in the wrong folder would leave a gradebook behind and go on as if the course had no
students. Here SQLite is opened read-only (``mode=ro``: a missing file is an error, never created) and
any other database is only read.
"""
from __future__ import annotations

import os
import sqlite3
from pathlib import Path

#: A gradebook other than ``ROOT/gradebook.db``, e.g. ``postgresql+psycopg2://user@/gradebook?host=/run/postgresql``
#: for a large class (the global option ``--db-url`` sets it); nbgrader gets it as ``CourseDirectory.db_url``.
DB_URL_ENV = "COURSE_DB_URL"


def db_url(root: Path) -> str:
    """The gradebook's SQLAlchemy URL: ``$COURSE_DB_URL``, or SQLite in the course directory."""
    return os.environ.get(DB_URL_ENV) or f"sqlite:///{root / 'gradebook.db'}"


def require_assignment(url: str, assignment: str) -> None:
    """Raise ``ValueError`` (one line: what is missing, what to run) unless the gradebook at ``url``
    exists and holds ``assignment``; nothing is created or written."""
    from nbgrader.api import Assignment
    from sqlalchemy import create_engine, exc, inspect, make_url, select

    address = make_url(url)
    shown = address.render_as_string(hide_password=True)
    todo = f"run `release {assignment}` and `autograde {assignment}` first"
    if address.get_backend_name() == "sqlite":
        path = Path(address.database or "")
        if not address.database or address.database == ":memory:" or not path.is_file():
            raise ValueError(f"no gradebook at {path if address.database else shown}: {todo}")
        engine = create_engine("sqlite://", creator=lambda: sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro",
                                                                             uri=True))
    else:
        engine = create_engine(address)
    try:
        with engine.connect() as connection:
            if not inspect(connection).has_table(Assignment.__tablename__):
                raise ValueError(f"{shown} is not an nbgrader gradebook (no assignment table): {todo}")
            found = connection.execute(select(Assignment.id).where(Assignment.name == assignment)).first()
    except exc.SQLAlchemyError as err:
        cause = getattr(err, "orig", None) or err  # the database's own message, not SQLAlchemy's page of it
        raise ValueError(f"cannot read the gradebook at {shown} ({type(cause).__name__}: "
                         f"{(str(cause).splitlines() or [''])[0]})") from None
    finally:
        engine.dispose()
    if found is None:
        raise ValueError(f"{assignment!r} is not in the gradebook at {shown}: {todo}")
