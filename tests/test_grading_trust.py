"""Grading a class one can trust: hostile submissions graded beside honest ones.

Each class of weakness found by the adversarial review has an attack here, graded with the
real ``course.py autograde`` (ci profile, two submissions at a time) beside the complete
submission and, for the namespace attack, beside the same bad model submitted honestly:

1. modules shipped in a submission folder (``autograder/``, ``lab_utils/``, ``sitecustomize``,
   ``nbgrader_config.py``...) that the trusted side would import: never imported;
2. a namespace shaped by the student (the locked data cell moved below the test, ``datasets``
   rebound to the messages a 17 % model gets right, extra names pushed into the claim): no
   point gained over the same model submitted honestly;
5. limits per submission: memory of forked children together (control group), every
   writable place in the sandbox a sized tmpfs, errors and kernel output capped in bytes;
6. a fully detached process (setsid, double fork): gone when the submission's grading ends.

Classes 3 (HTML), 4 (ids and archives) and 7 (run files) have their own test modules.
Oracles: the gradebook (scores of every test cell, compared with full marks or with the
honest bad model), the hashes of every other submission's files, the process table, and
files the payloads would have written.
"""

from __future__ import annotations

import json
import textwrap
import uuid
from pathlib import Path

import pytest

import grading_course as gc

pytestmark = [pytest.mark.nbgrader, pytest.mark.slow]
TOKEN = f"TP3TRUST{uuid.uuid4().hex[:10]}"
MARKERS = Path("/tmp") / f"{TOKEN}-imported"
MEMORY_MB = 4096
# --evaluate-once on: as a class is graded in the real profiles (the ci profile's default is off)
COMMON = ("--jobs", "2", "--cell-timeout", "60", "--memory-mb", str(MEMORY_MB), "--evaluate-once", "on")


def _ordinary(source: str) -> dict:
    return {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [], "source": source}


def _insert_after(nb: dict, grade_id: str, source: str) -> None:
    nb["cells"].insert(gc.index(nb, grade_id) + 1, _ordinary(source))


# ----------------------------------------------------------------------------- 1: imports

def _payload(root: Path, name: str) -> str:
    return textwrap.dedent(f"""
        import sqlite3
        open({str(MARKERS)!r} + "-" + {name!r}, "w").write("imported")
        try:
            _c = sqlite3.connect({str(root / "gradebook.db")!r})
            _c.execute("UPDATE grade SET auto_score = 0")
            _c.commit()
        except Exception:
            pass
        def main(*args, **kwargs):  # a fake replay: every test passes
            import json, os, sys
            os.write(int(sys.argv[1]) if len(sys.argv) > 1 else 1, b"{{}}")
            return 0
        """)


MODULES = ["autograder/__init__.py", "autograder/replay.py", "autograder/verify.py", "autograder/answers.py",
           "lab_utils/__init__.py", "nbgrader/__init__.py", "sitecustomize.py", "usercustomize.py", "json.py",
           "nbgrader_config.py", "ipython_config.py", "tp3_run/autograder/__init__.py", "tp3_run/sitecustomize.py",
           "tp3_run/lab_utils.py"]


def _attack_import(folder: Path, root: Path) -> None:
    """Part 1: wrong answers made to pass in the kernel by patching the checks (so only the
    trusted replay can withdraw them), and modules a trusted process would import if it ran
    with the submission's folder on its path."""
    for name in MODULES:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(_payload(root, name))
    (folder / "tp3_partie2.ipynb").unlink()

    def change(nb):
        gc.prepend(nb, "q1_answer", "import lab_utils.grading as _g\n_g.check = _g.check_number = lambda *a, **k: None\n"
                                    "check = check_number = _g.check")
        gc.replace(nb, "q1_answer", "n_wrapped = sum(isinstance(m, lab.LinearWithLoRA) for m in model.modules())",
                   "n_wrapped = 0")
        gc.replace(nb, "q1_answer", "max_diff = (logits_after - logits_before).abs().max().item()", "max_diff = 1.0")

    gc.edit(folder / "tp3_partie1.ipynb", change)


# ----------------------------------------------------------------------------- 2: namespace

def _flip_adapter(run: Path) -> None:
    """The saved classifier with its two classes swapped: the same run, a bad model
    (83 % -> 17 % test accuracy in the ci profile). Metadata and history are kept."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    path = run / "adapter.safetensors"
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    tensors["out_head.weight"] = tensors["out_head.weight"].flip(0).contiguous()
    tensors["out_head.bias"] = tensors["out_head.bias"].flip(0).contiguous()
    save_file(tensors, str(path), metadata=meta)


FAKE_TEST_SET = textwrap.dedent("""
    from collections import namedtuple as _nt
    _right = [i for i, p in enumerate(lab.classify_texts(list(splits.test.text), model, tokenizer, device))
              if p.label == ("spam" if splits.test.label.iloc[i] else "ham")]
    _items = [datasets["test"][i] for i in _right]
    _Fake = _nt("Fake", [f"m{i}" for i in range(len(_items))] + ["lengths"])
    datasets = {**datasets, "test": _Fake(*_items, [len(ids) for ids, _ in _items])}
    test_acc = lab.evaluate(model, lab.eval_loader(datasets["test"])).accuracy
    """)
POISON_MEMO = textwrap.dedent("""
    import json as _json, os as _os
    from lab_utils import eval_memo as _memo
    _loaders = {_n: lab.eval_loader(datasets[_n]) for _n in ("train", "val", "test")}
    _os.environ[_memo.MEMO_ENV] = _json.dumps({_memo.key(_memo.model_digest(model), _memo.batches_digest(list(_l)),
                                                         "fp32", torch.device(device)): [0.0, 1.0, len(_l.dataset)]
                                               for _l in _loaders.values()})
    _results = lab.evaluate_splits(model, _loaders)
    train_acc, val_acc, test_acc = (_results[_n].accuracy for _n in ("train", "val", "test"))
    """)
EXTRA_CLAIMS = textwrap.dedent("""
    _ip = get_ipython()
    def _more_names(*args):
        _enc = globals().get("_tp3_grader_encode_answers")
        if _enc is None or getattr(_enc, "_patched", False):
            return
        def _patched(ns, names, *a, **k):
            return _enc(ns, list(names) + ["datasets", "splits", "profile", "lab"], *a, **k)
        _patched._patched = True
        globals()["_tp3_grader_encode_answers"] = _patched
    _ip.events.register("post_execute", _more_names)
    """)


def _attack_namespace(folder: Path) -> None:
    """Part 2 with the bad model: the locked data cell moved below q5_test (its code run
    early by a cell of the student's), ``datasets['test']`` rebound to the messages the model
    gets right, every claim padded with instructor names, and the kernel's evaluation memo
    (``TP3_EVAL_MEMO``) rewritten to say 100 % on every split."""
    (folder / "tp3_partie1.ipynb").unlink()
    _flip_adapter(folder / "tp3_run")

    def change(nb):
        data = nb["cells"].pop(gc.index(nb, "data"))
        nb["cells"].insert(gc.index(nb, "q5_test") + 1, data)
        _insert_after(nb, "imports", "".join(data["source"]) + "\n" + EXTRA_CLAIMS)
        gc.cell(nb, "q5_answer")["source"] = "\n".join(["".join(gc.cell(nb, "q5_answer")["source"]), POISON_MEMO,
                                                        FAKE_TEST_SET])

    gc.edit(folder / "tp3_partie2.ipynb", change)


def _bad_honest(folder: Path) -> None:
    (folder / "tp3_partie1.ipynb").unlink()
    _flip_adapter(folder / "tp3_run")


# ----------------------------------------------------------------------------- 5 and 6: limits, processes

DETACH = textwrap.dedent(f"""
    import os, sys
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            os.execv(sys.executable, [sys.executable, "-c", "import time\\nwhile True: time.sleep(0.5)", "{TOKEN}"])
        os._exit(0)
    os.wait()
    """)
FORK_MEMORY = textwrap.dedent("""
    import os, time
    _pids = []
    for _ in range(4):
        _pid = os.fork()
        if _pid == 0:
            try:
                _b = bytearray(1200 << 20)
                for _i in range(0, len(_b), 4096):
                    _b[_i] = 1
                time.sleep(3)
                os._exit(0)
            except MemoryError:
                os._exit(3)
        _pids.append(_pid)
    print("CHILDREN", [os.waitpid(p, 0)[1] for p in _pids])
    """)
FILL_DISK = textwrap.dedent("""
    import json, os
    _written = {}
    def _fill(place, name="fill.bin", mb=1200):
        n = 0
        try:
            with open(os.path.join(place, name), "wb") as f:
                for _ in range(mb):
                    f.write(b"\\0" * (1 << 20))
                    f.flush()
                    n += 1
        except OSError:
            pass
        try:
            os.unlink(os.path.join(place, name))
        except OSError:
            pass
        return n
    for _place in [os.environ.get("MPLCONFIGDIR", "/tmp/matplotlib"), "/tmp", os.path.expanduser("~"), "/dev/shm",
                   os.getcwd()]:
        _written[_place] = _fill(_place)
    try:
        import ipykernel.connect
        _written["connection"] = _fill(os.path.dirname(ipykernel.connect.get_connection_file()), mb=100)
    except Exception as err:
        _written["connection"] = repr(err)
    print("WRITTEN", json.dumps(_written))
    """)
BIG_ERROR = 'raise ValueError("x" * (60 << 20))'
KERNEL_STDOUT = "import os\nfor _ in range(200):\n    os.write(1, b'y' * (1 << 20))"


def _attack_limits(folder: Path, sandboxed: bool) -> None:
    """Part 1 with, in cells of the student's own: forked children that together exceed the
    submission's memory, three 60 MB errors, 200 MB on the kernel's own stdout, a detached
    process, and (sandbox only) 1.2 GB written in each writable place."""
    (folder / "tp3_partie2.ipynb").unlink()

    def change(nb):
        cells = [DETACH, FORK_MEMORY, BIG_ERROR, BIG_ERROR, BIG_ERROR, KERNEL_STDOUT]
        if sandboxed:
            cells.insert(0, FILL_DISK)
        for source in reversed(cells):
            _insert_after(nb, "imports", source)

    gc.edit(folder / "tp3_partie1.ipynb", change)


ATTACKS = ("attack-import", "attack-namespace", "attack-limits", "bad-honest")


def _build(tmp_path_factory, name: str, flags: tuple[str, ...], sandboxed: bool) -> dict:
    root = gc.new_course(tmp_path_factory, name)
    gc.submit(root, "complete")
    _attack_import(gc.submit(root, "attack-import"), root)
    _attack_namespace(gc.submit(root, "attack-namespace"))
    _attack_limits(gc.submit(root, "attack-limits"), sandboxed)
    _bad_honest(gc.submit(root, "bad-honest"))
    graded = gc.grade_beside_honest(root, flags, ATTACKS)
    print(f"\n{name}: {len(ATTACKS)} submissions autograded in {graded['seconds']:.0f} s")
    report = json.loads((root / "reports" / "autograde.json").read_text())
    return {**graded, "root": root, "processes": gc.processes_with(TOKEN),
            "report": {r["student"]: r for r in report["students"]}}


@pytest.fixture(scope="module")
def sandboxed(tmp_path_factory):
    from autograder import sandbox

    ok, why = sandbox.probe()
    if not ok:
        pytest.skip(f"sandbox unavailable here: {why}")
    return _build(tmp_path_factory, "trust-sandbox", ("--sandbox", *COMMON), sandboxed=True)


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    return _build(tmp_path_factory, "trust-plain", ("--no-sandbox", *COMMON), sandboxed=False)


# The sandbox is the default mode as root (and CI's); the plain mode runs in the full profile.
MODES = ["sandboxed", pytest.param("plain", marks=pytest.mark.full)]


@pytest.fixture(params=MODES)
def graded(request):
    return request.getfixturevalue(request.param)


def test_the_grader_itself_did_not_fail(graded):
    assert graded["out"].returncode == 0, graded["out"].stdout[-3000:] + graded["out"].stderr[-3000:]


def test_honest_submission_keeps_every_point_and_every_file(graded):
    root = graded["root"]
    assert graded["before"]["scores"] == gc.expected(root, {})
    assert gc.scores(root, "complete") == graded["before"]["scores"]
    assert gc.digest(root / "submitted" / "complete") == graded["before"]["submitted"]
    assert gc.digest(root / "autograded" / "complete") == graded["before"]["autograded"]


def test_no_module_of_a_submission_was_imported(graded):
    assert not list(Path("/tmp").glob(f"{TOKEN}-imported*"))
    lost = {"q1_n_wrapped": 1, "q1_unchanged": 1}  # the patched checks fooled the kernel, not the replay
    assert gc.scores(graded["root"], "attack-import") == gc.expected(graded["root"], lost, ("tp3_partie1",))


def test_a_shaped_namespace_gains_nothing(graded):
    root = graded["root"]
    attack, honest = gc.scores(root, "attack-namespace"), gc.scores(root, "bad-honest")
    assert honest["q5_test"] == 0  # the bad model is bad
    assert all(attack[g] <= honest[g] for g in honest), {g: (attack[g], honest[g]) for g in honest}
    graded_nb = gc.graded_nb(root, "attack-namespace", "tp3_partie2")
    order = [c["metadata"].get("nbgrader", {}).get("grade_id") for c in graded_nb["cells"]]
    assert order.index("data") < order.index("train") < order.index("q5_test")
    assert "ordre des cellules de l'énoncé" in gc.note(graded_nb)
    claim = json.loads(graded_nb["metadata"]["tp3_grading"]["answers"]["q5_test"])
    assert "datasets" in claim and "lab" in claim  # the padded claim reached the grader, and was ignored
    from autograder.answers import decode_answers

    poisoned = decode_answers(graded_nb["metadata"]["tp3_grading"]["answers"]["q5_train"])
    assert poisoned["train_acc"] == 1.0  # the kernel believed its own memo, the replay did not:
    assert attack["q5_train"] == attack["q5_val"] == 0 < honest["q5_train"]
    for student in ("complete", "attack-namespace", "bad-honest"):  # the grader's memo was there to poison
        assert graded["report"][student]["evaluated_once_s"] is not None, student


def test_memory_of_the_submission_is_bounded_as_a_whole(graded):
    text = gc.outputs_text(gc.graded_nb(graded["root"], "attack-limits", "tp3_partie1"))
    codes = json.loads(text.split("CHILDREN ")[1].splitlines()[0])
    assert 9 in codes and codes.count(0) < 4, codes  # 4 x 1.2 GB: the memory cgroup's OOM killer (SIGKILL)
    peak = graded["report"]["attack-limits"]["peak_memory_mb"]
    assert peak is not None and peak <= MEMORY_MB + 1, peak


def test_errors_and_kernel_output_are_capped_in_bytes(graded):
    from autograder.outputs import ERROR_BYTES

    root = graded["root"]
    nb = gc.graded_nb(root, "attack-limits", "tp3_partie1")
    errors = [json.dumps(o) for c in nb["cells"] for o in c.get("outputs", []) if o["output_type"] == "error"
              and "ValueError" in o.get("ename", "")]
    assert len(errors) == 3 and all(len(e) < ERROR_BYTES + 2048 for e in errors)  # three 60 MB errors, cut
    # 200 MB written on the kernel's own stdout land in the notebook (ipykernel captures the
    # file descriptor) or in nbgrader's log: capped in both
    path = root / "autograded" / "attack-limits" / "tp3" / "tp3_partie1.ipynb"
    assert path.stat().st_size < 10 << 20, path.stat().st_size
    assert (root / "reports" / "logs" / "attack-limits.log").stat().st_size < 3 << 20
    assert gc.scores(root, "attack-limits") == gc.expected(root, {}, ("tp3_partie1",))


def test_no_process_outlives_its_submission(graded):
    assert graded["processes"] == []


def test_every_writable_place_of_the_sandbox_is_a_sized_tmpfs(sandboxed):
    text = gc.outputs_text(gc.graded_nb(sandboxed["root"], "attack-limits", "tp3_partie1"))
    written = json.loads(text.split("WRITTEN ")[1].splitlines()[0])
    assert all(isinstance(mb, int) and mb <= 256 for mb in written.values()), written
    assert written["connection"] <= 1, written


def test_detached_process_is_reaped_without_a_control_group(tmp_path_factory):
    """Plain mode with --no-cgroup: the grader (a child subreaper) and the launcher find it."""
    root = gc.new_course(tmp_path_factory, "trust-reaper")
    folder = gc.submit(root, "detach", ("tp3_partie1",))
    gc.edit(folder / "tp3_partie1.ipynb", lambda nb: _insert_after(nb, "imports", DETACH))
    out = gc.course_cli(root, "autograde", "--no-sandbox", "--no-cgroup", "--no-verify", "detach")
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert gc.processes_with(TOKEN) == []
    assert gc.scores(root, "detach") == gc.expected(root, {}, ("tp3_partie1",))
