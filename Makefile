# Every target bootstraps what it needs (Debian packages, .venv, data, MathJax) and skips what is done.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMPS := .stamps
MATHJAX_VERSION := 3.2.2
DEBIAN_PACKAGES := dataset-fashion-mnist chromium chromium-driver postgresql bubblewrap
PYTEST_ARGS ?=


.PHONY: all book test bench setup system venv data mathjax clean lock lock-universal help
.DEFAULT_GOAL := help

help:
	@echo "make book   - set up everything, then build the website into _build/html"
	@echo "make test   - set up everything, then run the whole test suite"
	@echo "make setup  - only the set-up (Debian packages, .venv, data, MathJax)"
	@echo "make bench  - run benchmarks/*.py and write benchmarks/REPORT.md (timings; nothing in CI uses them)"
	@echo "make release | autograde | export | grades | feedback - homework, for instructors (see README)"

setup: system venv data mathjax

# Debian packages: the Fashion-MNIST files and a browser for the site tests.
system: $(STAMPS)/system
$(STAMPS)/system:
	@mkdir -p $(STAMPS)
	@if dpkg -s $(DEBIAN_PACKAGES) >/dev/null 2>&1; then \
	  echo "Debian packages present: $(DEBIAN_PACKAGES)"; \
	elif [ "$$(id -u)" = 0 ]; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(DEBIAN_PACKAGES); \
	elif command -v sudo >/dev/null; then \
	  sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(DEBIAN_PACKAGES); \
	else \
	  echo "WARNING: cannot install $(DEBIAN_PACKAGES) (not root, no sudo): browser tests will skip, and" \
	       "Fashion-MNIST needs COURSE_DOWNLOAD=1 (make data then lets torchvision download it)." >&2; \
	fi
	@touch $@

venv: $(VENV)/.installed
$(VENV)/.installed: requirements.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	@touch $@

data: $(STAMPS)/data
# From $$COURSE_DATA, else the Debian package, else (only with COURSE_DOWNLOAD=1) torchvision's
# checksummed download; otherwise it stops and says which of these to do.
$(STAMPS)/data: $(VENV)/.installed $(STAMPS)/system course_lib/data.py
	$(PY) -m course_lib.data prepare
	@touch $@

# MathJax 3 from the npm registry, served by the site itself (no CDN at view time).
mathjax: _extra/mathjax/tex-chtml.js
_extra/mathjax/tex-chtml.js:
	@rm -rf _extra/mathjax $(STAMPS)/mathjax-pack && mkdir -p _extra $(STAMPS)/mathjax-pack
	cd $(STAMPS)/mathjax-pack && npm pack --silent mathjax@$(MATHJAX_VERSION) >/dev/null
	tar -xzf $(STAMPS)/mathjax-pack/mathjax-$(MATHJAX_VERSION).tgz -C $(STAMPS)/mathjax-pack
	mv $(STAMPS)/mathjax-pack/package/es5 _extra/mathjax
	@rm -rf $(STAMPS)/mathjax-pack

# The book build and the tests never download (COURSE_DOWNLOAD is dropped from their environment).
book: setup
	env -u COURSE_DOWNLOAD $(VENV)/bin/jupyter-book build . --path-output . -W --keep-going
	@echo "Open _build/html/index.html"

test: setup
	env -u COURSE_DOWNLOAD $(VENV)/bin/python -m pytest $(PYTEST_ARGS)

# Every benchmark with --markdown, collected in benchmarks/REPORT.md (accuracy, wall/CPU time, load, device).
bench: setup
	$(PY) benchmarks/report.py

lock:
	$(PY) -m pip freeze --exclude-editable | sort -f > requirements.txt.new
	@echo "Review requirements.txt.new and move it over requirements.txt"

# Users' universal lock (Linux, macOS, Windows) and Binder's CPU pins, from pyproject.toml and the
# pins above (needs uv: UV=/path/to/uv if it is not on PATH).
UV ?= uv
lock-universal:
	$(PY) tools/lock.py --uv $(UV)

clean:
	rm -rf _build $(STAMPS)

# ---- Instructors: homework with nbgrader (README, "For instructors (grading)") ----------------
# make release                                    regenerate assignments/ from solutions/ (commit it)
# make autograde [ASSIGNMENT=a1_convolution] [SUBMISSIONS=folder|download.zip] [LMS=1 | PATTERN=regex] [ROSTER=roster.csv]
#                [DUE='2026-12-01 23:59'] [TIMEZONE=Europe/Paris] [STUDENT=id] [FORCE=1] [JOBS=4]
#                [DB_URL=postgresql+psycopg2://...] [SCHEDULER=tcp://host:8786]
#                [CALL_TIMEOUT=60] [START_TIMEOUT=120] [TIMEOUT=600] [MEMORY=6144]
#                                                 grade every submission; a rerun resumes where it stopped
# make export [ASSIGNMENT=...] [LATE_PENALTY=10%/day] [LATE_CAP=100%] [LATE_CUTOFF=days]
#                                                 exports/ASSIGNMENT.csv for the LMS: every rostered student
# make grades                                     write grades.csv
# make feedback [ASSIGNMENT=a1_convolution]       feedback/STUDENT/ASSIGNMENT/*.html, maths offline
ASSIGNMENT ?= a1_convolution
SUBMISSIONS ?=
LMS ?=
PATTERN ?=
ROSTER ?=
DUE ?=
TIMEZONE ?= UTC
STUDENT ?=
FORCE ?=
JOBS ?= 1
DB_URL ?=
SCHEDULER ?=
CALL_TIMEOUT ?= 60
START_TIMEOUT ?= 120
TIMEOUT ?= 600
MEMORY ?= 6144
LATE_PENALTY ?= none
LATE_CAP ?= 100%
LATE_CUTOFF ?=
GRADING := $(PY) -m course_lib.grading $(if $(DB_URL),--db-url '$(DB_URL)')

.PHONY: release autograde export grades feedback
release: setup
	$(GRADING) release

autograde: setup
	$(GRADING) autograde $(ASSIGNMENT) $(if $(SUBMISSIONS),--submissions '$(SUBMISSIONS)') \
	  $(if $(LMS),--lms) $(if $(PATTERN),--pattern '$(PATTERN)') $(if $(ROSTER),--roster '$(ROSTER)') \
	  $(if $(DUE),--due '$(DUE)') --timezone '$(TIMEZONE)' $(if $(STUDENT),--student '$(STUDENT)') \
	  $(if $(FORCE),--force) --jobs $(JOBS) $(if $(SCHEDULER),--scheduler '$(SCHEDULER)') \
	  --call-timeout $(CALL_TIMEOUT) --start-timeout $(START_TIMEOUT) --timeout $(TIMEOUT) --memory $(MEMORY)

export: setup
	$(GRADING) export $(ASSIGNMENT) $(if $(ROSTER),--roster '$(ROSTER)') $(if $(DUE),--due '$(DUE)') \
	  --timezone '$(TIMEZONE)' --late-penalty '$(LATE_PENALTY)' --late-cap '$(LATE_CAP)' \
	  $(if $(LATE_CUTOFF),--late-cutoff $(LATE_CUTOFF))

grades: setup
	$(GRADING) grades --output grades.csv

feedback: setup
	$(GRADING) feedback $(ASSIGNMENT)
