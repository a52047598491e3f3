"""Mutation sweep of an assignment's reference solution against its own tests (visible and hidden).

Applies single-token mutations to the code between ``### BEGIN SOLUTION`` and ``### END SOLUTION``
(integer literals +-1, two arguments of view/reshape/permute/transpose/new_zeros swapped, ``.detach()``
or a ``.zero_grad()`` call dropped, relu <-> leaky_relu, sum <-> mean, + <-> -, a padding/stride/dilation
keyword dropped, an activation module dropped or moved after another layer), runs the notebook's setup,
solution and test cells for each mutant in a forked process, and lists the mutants that no test cell
catches. Survivors still have to be read: some are equivalent (e.g. ``reshape(C, N, ...)`` followed by
the inverse reshape).

    .venv/bin/python tools/mutation_sweep.py a1_convolution [--jobs 2] [--timeout 120]
    .venv/bin/python tools/mutation_sweep.py a2_architectures --cells receptive_field,network_cost

``--cells`` mutates only those solution cells and runs only the test cells that follow each of them
(up to the next solution cell): a part swept without the others (e.g. without a training cell).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import select
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
INT = re.compile(r"(?<![\w.])(\d+)(?![\w.])")
CALLS = re.compile(r"(\.(?:view|reshape|permute|transpose|new_zeros)|torch\.zeros)\(")
WORDS = [("leaky_relu", "relu"), ("nn.ReLU()", "nn.LeakyReLU(0.2)"), ("nn.LeakyReLU(0.2)", "nn.ReLU()"),
         (".sum(", ".mean("), (".mean(", ".sum("), (".amax(", ".mean("), (" + ", " - "), (" - ", " + ")]
KEYWORDS = re.compile(r",\s*(?:padding|stride|dilation)=[\w.]+")
ACTIVATION = re.compile(r"nn\.(?:LeakyReLU\(0\.2\)|ReLU\(\)),\s*")
NAMES = [{"N", "C", "C_in", "C_out", "H", "W", "H_out", "W_out", "kH", "kW", "k"},
         {"G", "D"}, {"opt_G", "opt_D"}, {"z_d", "z_g"}, {"real", "fake"}, {"real_logits", "fake_logits"},
         {"width", "z_dim"}]
LAYER = re.compile(r"nn\.(?:Conv2d|ConvTranspose2d)\([^()]*\),?")


def cells(assignment: str) -> list[dict]:
    nb = json.loads((ROOT / "solutions" / assignment / f"{assignment}.ipynb").read_text())
    out = []
    for cell in nb["cells"]:
        meta = cell["metadata"].get("nbgrader", {})
        if cell["cell_type"] == "code" and meta.get("grade_id"):
            src = cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
            out.append({"id": meta["grade_id"], "solution": bool(meta.get("solution")), "source": src})
    return out


def _split_args(text: str, start: int) -> tuple[list[tuple[int, int]], int] | None:
    """Spans of the top-level arguments of the call whose '(' is at ``start - 1``."""
    depth, spans, begin = 0, [], start
    for k in range(start, len(text)):
        ch = text[k]
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            if depth == 0:
                spans.append((begin, k))
                return spans, k
            depth -= 1
        elif ch == "," and depth == 0:
            spans.append((begin, k))
            begin = k + 1
    return None


def line_mutants(line: str):
    code, _, _ = line.partition("  #")
    if not code.strip() or code.strip().startswith("#") or '"""' in code:
        return
    if ".zero_grad()" in code:
        yield "drop zero_grad", line.replace(code.strip(), "pass")
    for m in INT.finditer(code):
        n = int(m.group(1))
        for v in {n + 1, n - 1} - {-1}:
            yield f"{n} -> {v}", line[:m.start()] + str(v) + line[m.end():]
    for m in CALLS.finditer(code):
        parsed = _split_args(code, m.end())
        if not parsed:
            continue
        spans = [s for s in parsed[0] if code[s[0]:s[1]].strip()]
        for i in range(len(spans)):
            for j in range(i + 1, len(spans)):
                (a0, a1), (b0, b1) = spans[i], spans[j]
                if code[a0:a1].strip() == code[b0:b1].strip():
                    continue
                new = code[:a0] + code[b0:b1] + code[a1:b0] + code[a0:a1] + code[b1:]
                yield f"swap args {i},{j} of {m.group(1)}", new + line[len(code):]
    if ".detach()" in code:
        yield "drop detach", line.replace(".detach()", "", 1)
    for old, new in WORDS:
        k = code.find(old)
        while k >= 0:
            yield f"{old.strip()} -> {new.strip()}", line[:k] + new + line[k + len(old):]
            k = code.find(old, k + 1)
    for group in NAMES:  # one name used for another of the same kind (N for C, opt_D for opt_G, ...)
        for m in re.finditer(r"(?<![\w.])(" + "|".join(sorted(group)) + r")(?![\w(])", code):
            target = re.match(r"\s*[\w, ]+=(?!=)", code)
            if target and m.start() < target.end() or re.match(r"\s*=(?!=)", code[m.end():]):
                continue  # an assignment target or a keyword argument's name
            for other in sorted(group - {m.group(1)}):
                yield f"{m.group(1)} -> {other}", line[:m.start()] + other + line[m.end():]
    for m in KEYWORDS.finditer(code):
        yield f"drop {m.group(0).strip(', ')}", line[:m.start()] + line[m.end():]


def cell_mutants(source: str):
    lines = source.split("\n")
    inside = False
    for k, line in enumerate(lines):
        if "### BEGIN SOLUTION" in line:
            inside = True
        elif "### END SOLUTION" in line:
            inside = False
        elif inside:
            for what, new in line_mutants(line):
                if new != line:
                    yield f"line {k}: {what}: {new.strip()}", "\n".join(lines[:k] + [new] + lines[k + 1:])
    for act in ACTIVATION.finditer(source):  # an activation module moved after another layer (or dropped)
        rest = source[:act.start()] + source[act.end():]
        yield f"drop {act.group(0).strip(', ')}", rest
        for layer in LAYER.finditer(rest):
            if not layer.group(0).endswith(","):
                continue
            moved = rest[:layer.end()] + " " + act.group(0).strip() + rest[layer.end():]
            if moved != source:
                yield f"move {act.group(0).strip(', ')} after {layer.group(0)[:40]}", moved


def only(all_cells: list[dict], ids: list[str]) -> list[dict]:
    """The setup and solution cells, and the test cells that follow the solution cells ``ids``."""
    unknown = set(ids) - {c["id"] for c in all_cells if c["solution"]}
    if unknown:
        raise SystemExit(f"no such solution cells: {sorted(unknown)}")
    kept, following = [], False
    for cell in all_cells:
        if cell["solution"]:
            following = cell["id"] in ids
        if cell["solution"] or cell["id"] == "setup" or following:
            kept.append(cell)
    return kept


def run(all_cells: list[dict], mutated: dict[str, str]) -> str:
    """Name of the first test cell that fails, or '' when all pass."""
    import contextlib
    import io
    ns: dict = {}
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        for cell in all_cells:
            if cell["solution"] or cell["id"] == "setup":
                exec(compile(mutated.get(cell["id"], cell["source"]), cell["id"], "exec"), ns)
        for cell in all_cells:
            if cell["id"].startswith("test_"):
                try:
                    exec(compile(cell["source"], cell["id"], "exec"), ns)
                except Exception:  # noqa: BLE001
                    return cell["id"]
    return ""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("assignment")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=120)
    parser.add_argument("--cells", help="comma-separated solution cells to mutate (default: all)")
    args = parser.parse_args()
    import torch
    torch.set_num_threads(1)
    import course_lib.grading  # noqa: F401  (imported once, before the forks)
    all_cells = cells(args.assignment)
    chosen = args.cells.split(",") if args.cells else None
    if chosen:
        all_cells = only(all_cells, chosen)
    mutants, seen = [], set()
    for cell in all_cells:
        if cell["solution"] and (chosen is None or cell["id"] in chosen):
            for what, src in cell_mutants(cell["source"]):
                try:
                    compile(src, cell["id"], "exec")
                except SyntaxError:
                    continue
                if (cell["id"], src) not in seen and re.sub(r"\s+", "", src) != re.sub(r"\s+", "", cell["source"]):
                    seen.add((cell["id"], src))
                    mutants.append((f"{cell['id']}: {what}", {cell["id"]: src}))
    assert run(all_cells, {}) == "", "the reference solution fails its own tests"
    print(f"{len(mutants)} mutants of {args.assignment}", flush=True)
    survivors, running, queue = [], {}, list(mutants)
    while queue or running:
        while queue and len(running) < args.jobs:
            name, mutated = queue.pop(0)
            r, w = os.pipe()
            pid = os.fork()
            if pid == 0:
                os.close(r)
                try:
                    result = run(all_cells, mutated) or "SURVIVED"
                except Exception as exc:  # noqa: BLE001  (a mutant that breaks a solution cell is caught)
                    result = f"solution cell raised {type(exc).__name__}"
                os.write(w, result.encode())
                os._exit(0)
            os.close(w)
            running[r] = (pid, name, time.monotonic())
        ready, _, _ = select.select(list(running), [], [], 1.0)
        for r in list(running):
            pid, name, started = running[r]
            if r in ready:
                result = os.read(r, 1000).decode()
            elif time.monotonic() - started > args.timeout:
                os.kill(pid, 9)
                result = "timeout"
            else:
                continue
            os.close(r)
            os.waitpid(pid, 0)
            del running[r]
            if result == "SURVIVED":
                survivors.append(name)
                print("SURVIVED", name, flush=True)
    print(f"{len(mutants)} mutants, {len(mutants) - len(survivors)} caught, {len(survivors)} survived")
    for name in survivors:
        print("  ", name)


if __name__ == "__main__":
    sys.exit(main())
