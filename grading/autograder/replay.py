"""The replay: the child process of the trusted re-verification (see ``verify.py``).

It runs the notebook's locked instructor cells in their reference order, puts the student's
claimed answers in place before each test cell, and runs the test cell (hidden tests
included), in a process started with ``python -I`` (no student folder on ``sys.path``, no
environment variable of Python's read) in a working folder holding only ``tp3_run/``. Only
answers declared for that cell are taken from a claim, and never a name an instructor cell
has bound: every value a hidden test recomputes comes from instructor code and the adapter.

    python -I -c "$BOOT" VERDICT_FD GRADER_PATH [LAB_PATH]    spec on stdin, verdicts on VERDICT_FD

Given ``{"precompute": true}`` instead, it only evaluates the saved run on the three splits,
before the kernels run (``verify.precompute``): the results the kernel and the replay reuse.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys



def _python(source: str) -> str:
    try:
        from IPython.core.inputtransformer2 import TransformerManager

        return TransformerManager().transform_cell(source)
    except Exception:  # noqa: BLE001
        return source


def replay(spec: dict) -> dict:
    """Run the locked cells and the test cells of ``spec`` in order; verdict per test cell,
    and the errors of instructor cells (under ``_instructor_errors``)."""
    from autograder.answers import ClaimError, bound_names, decode_answers, parse

    os.environ["NBGRADER_EXECUTION"] = "autograde"
    os.environ["TP3_PROGRESS"] = "0"
    os.environ.pop("TP3_ORACLES", None)  # the replay computes every oracle itself, whatever it was given
    os.environ.setdefault("MPLBACKEND", "Agg")
    ns: dict = {"__name__": "__main__"}
    instructor_bound: set[str] = set()
    verdicts: dict = {"_instructor_errors": []}
    sink = io.StringIO()
    for cell in spec["cells"]:
        gid, test = cell["grade_id"], cell["kind"] == "test"
        declared = set(cell.get("names") or [])
        if declared:
            if cell.get("answers") is None and test:
                verdicts[gid] = {"ok": False, "why": "unavailable",
                                 "message": "vos réponses n'ont pas pu être relevées juste avant ce test"}
                continue
            try:
                claims = decode_answers(cell["answers"]) if cell.get("answers") is not None else {}
            except ClaimError as err:
                if test:
                    verdicts[gid] = {"ok": False, "why": "unreadable",
                                     "message": f"vos réponses relevées avant ce test sont illisibles ({err})"}
                    continue
                claims = {}
            ns.update({k: v for k, v in claims.items() if k in declared and k not in instructor_bound})
        source = _python(cell["source"])
        try:
            with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
                exec(compile(source, f"<{gid}>", "exec"), ns)  # instructor code only
        except BaseException as err:  # noqa: BLE001 (SystemExit, KeyboardInterrupt included)
            if test:  # a check's French message alone; any other error with its name
                text = str(err) if isinstance(err, AssertionError) and str(err) else f"{type(err).__name__} : {err}"
                verdicts[gid] = {"ok": False, "why": "failed", "message": text[:500]}
            else:
                verdicts["_instructor_errors"].append({"cell": gid, "type": type(err).__name__,
                                                       "lab_error": _is_run_error(err), "message": str(err)[:300]})
        else:
            if test:
                verdicts[gid] = {"ok": True}
        if not test:
            tree = parse(cell["source"])
            instructor_bound |= bound_names(tree) if tree is not None else set()
        sink.seek(0)
        sink.truncate()
    return verdicts


def _is_run_error(err: BaseException) -> bool:
    """Whether an instructor cell failed because of the student's run folder (missing,
    mismatched, unreadable), not because of the grader's environment."""
    try:
        from lab_utils.errors import AdapterError
        from lab_utils.run import RunError
    except ImportError:
        return False
    return isinstance(err, (RunError, AdapterError))


def evaluations() -> dict:
    """The saved run evaluated on the three splits (``lab_utils.eval_memo.precompute``):
    ``{"memo": ...}``, or ``{"memo": None, "error": ...}`` when the run cannot be evaluated."""
    os.environ["TP3_PROGRESS"] = "0"
    for name in ("TP3_ORACLES", "TP3_EVAL_MEMO"):
        os.environ.pop(name, None)
    try:
        from lab_utils.eval_memo import precompute

        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            return {"memo": precompute("tp3_run")}
    except Exception as err:  # noqa: BLE001 (the kernel and the replay then evaluate it themselves)
        return {"memo": None, "error": f"{type(err).__name__}: {str(err)[:300]}"}


def main(verdict_fd: int) -> int:
    spec = json.loads(sys.stdin.read())
    verdicts = evaluations() if spec.get("precompute") else replay(spec)
    with os.fdopen(verdict_fd, "w") as out:
        out.write(json.dumps(verdicts))
    return 0
