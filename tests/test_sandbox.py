"""The sandboxed autograde (``course.py autograde --sandbox``): isolation and attacks.

First the sandbox itself, without nbgrader (a few seconds): what a process inside sees and
may do. Then adversarial submissions graded in the sandbox (ci profile), each trying to
raise its grade or to harm the others: read other students' files, the instructor's
notebooks and the gradebook, write to the gradebook and to other submissions, reach the
network, monkeypatch lab_utils / builtins / IPython (input transformers, custom exception
handler, excepthook), print fake test output and spoof nbgrader's partial credit, fork
without bound, allocate without bound, loop forever ignoring interrupts. None may raise
its grade; the complete submission graded before them must keep its grade and its files.

Skipped (with the reason) where bubblewrap is missing or namespaces are not permitted.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

import grading_course as gc
from autograder import launcher, sandbox

pytestmark = [pytest.mark.sandbox]
FLAGS = ("--sandbox", "--cell-timeout", "20", "--memory-mb", "4096")
_PROBE: list = []


def _probe() -> tuple[bool, str]:
    if not _PROBE:
        _PROBE.append(sandbox.probe())
    return _PROBE[0]


@pytest.fixture(scope="module", autouse=True)
def sandbox_available():
    ok, why = _probe()
    if not ok:
        pytest.skip(f"sandbox unavailable here: {why}")


class Listener:
    """A TCP server on the host's 127.0.0.1 that counts connections (none may arrive)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            conn.close()


# ----------------------------------------------------------------------------- the sandbox alone

PROBE_CODE = r"""
import json, os, socket, sys
report = {"uid": os.getuid(), "pid": os.getpid(), "cwd": os.getcwd(), "entries": sorted(os.listdir("."))}
status = open("/proc/self/status").read()
report["cap_eff"] = [l.split()[1] for l in status.splitlines() if l.startswith("CapEff")][0]
report["no_new_privs"] = [l.split()[1] for l in status.splitlines() if l.startswith("NoNewPrivs")][0]
report["processes"] = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
report["interfaces"] = [n for _, n in socket.if_nameindex()]
report["secret"] = os.environ.get("TP3_TEST_SECRET")
report["readable"] = [p for p in sys.argv[1:] if os.path.exists(p)]
connected = []
for host, port in [("127.0.0.1", int(os.environ.get("TP3_TEST_PORT", "1"))), ("1.1.1.1", 53)]:
    try:
        socket.create_connection((host, port), timeout=3).close()
        connected.append(host)
    except OSError:
        pass
report["connected"] = connected
written = []
for path in ["tp3_run/adapter.safetensors", "/usr/evil", "/opt/tp3/lab_utils/evil.py"]:
    try:
        open(path, "ab").write(b"x")
        written.append(path)
    except OSError:
        pass
open("scratch.txt", "w").write("mine")  # the working folder is writable (a tmpfs)
report["written"] = written
try:
    blob = bytearray(6 << 30)
    report["memory"] = "allocated"
except MemoryError:
    report["memory"] = "refused"
import time
forks = 0
for _ in range(3000):
    try:
        pid = os.fork()
    except OSError:
        break
    if pid == 0:
        time.sleep(2)
        os._exit(0)
    forks += 1
report["forks"] = forks
print(json.dumps(report))
"""


def _run_in_sandbox(tmp: Path, code: str, args: list[str], env: dict, nproc: int = 64) -> dict:
    submission = tmp / "submission"
    (submission / "tp3_run").mkdir(parents=True)
    (submission / "tp3_run" / "adapter.safetensors").write_bytes(b"student's own file")
    (submission / "tp3_partie1.ipynb").write_text("{}")  # a notebook being graded: never shown
    private = tmp / "private"
    private.mkdir()
    sandbox.write_etc(str(tmp / "etc"))
    argv = sandbox.bwrap_argv([sys.executable, "-I", "-c", code, *args], submission=str(submission),
                              private_dir=str(private), etc_dir=str(tmp / "etc"))

    def limits():
        launcher.set_limits(memory_mb=1024, cpu_seconds=60, nproc=nproc, fsize_mb=16)

    out = subprocess.run(argv, capture_output=True, text=True, timeout=120, preexec_fn=limits,
                         env={**os.environ, **env})
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_inside_the_sandbox(tmp_path):
    listener = Listener()
    secrets = [str(gc.GRADING / "source" / "tp3" / "tp3_partie1.ipynb"), str(gc.GRADING / "course.py"),
               str(tmp_path / "submission" / "tp3_partie1.ipynb"), "/etc/shadow", __file__, "/var/run/docker.sock",
               str(gc.REPO / "grading"), "/root/.ssh"]
    report = _run_in_sandbox(tmp_path, PROBE_CODE, secrets, {"TP3_TEST_SECRET": "hunter2",
                                                             "TP3_TEST_PORT": str(listener.port)})
    assert report["uid"] == sandbox.SANDBOX_UID and report["cap_eff"] == "0000000000000000"
    assert report["no_new_privs"] == "1"
    assert report["processes"] == [1, 2], report["processes"]  # bwrap's init and the process: own PID namespace
    assert report["interfaces"] == ["lo"] and report["connected"] == [] and listener.connections == 0
    assert report["cwd"] == sandbox.WORKDIR and report["entries"] == ["tp3_run"]  # no notebook
    assert report["readable"] == [] and report["secret"] is None
    assert report["written"] == []
    assert (tmp_path / "submission" / "tp3_run" / "adapter.safetensors").read_bytes() == b"student's own file"
    assert not list((tmp_path / "submission").glob("scratch.txt"))  # the kernel's writes vanish with it
    assert report["memory"] == "refused"
    assert 0 < report["forks"] < 64


def test_interrupt_reaches_a_sandboxed_kernel_and_limits_apply(tmp_path):
    """The launcher relays SIGINT to the sandboxed process (as jupyter_client's interrupt does)."""
    code = ("import signal, sys, time\n"
            "try:\n    time.sleep(60)\nexcept KeyboardInterrupt:\n    print('interrupted'); sys.exit(0)\n")
    private = tmp_path / "conn"
    private.mkdir()
    conn = private / "kernel.json"
    conn.write_text("{}")
    (tmp_path / "sub").mkdir()
    sandbox.write_etc(str(tmp_path / "etc"))
    proc = subprocess.Popen([sys.executable, launcher.__file__, "--sandbox", f"--private-dir={private}",
                             f"--etc-dir={tmp_path / 'etc'}", "--memory-mb=1024", "--",
                             sys.executable, "-c", code, "-f", str(conn)],
                            cwd=tmp_path / "sub", start_new_session=True)
    time.sleep(3)
    os.killpg(proc.pid, 2)  # what jupyter_client sends to interrupt a kernel
    assert proc.wait(timeout=30) == 0
    log = (tmp_path / "kernel.log").read_text()
    assert "interrupted" in log


# ----------------------------------------------------------------------------- attacks, graded

def _attack_disk(folder: Path, root: Path, port: int):
    """Part 1: wrong answers to Q2 and Q3a, fixed only if another student's notebook or the
    instructor's source leaks; reads the gradebook and writes to it; writes outside; network."""
    (folder / "tp3_partie2.ipynb").unlink()
    attack = textwrap.dedent(f"""
        import glob, json, os, socket, sqlite3
        ROOT, REPO = {str(root)!r}, {str(gc.REPO)!r}
        _attack = {{"read": {{}}, "wrote": [], "net": []}}
        _targets = [ROOT + "/gradebook.db", ROOT + "/source/tp3/tp3_partie1.ipynb",
                    ROOT + "/submitted/complete/tp3/tp3_partie1.ipynb",
                    ROOT + "/submitted/complete/tp3/tp3_run/adapter.safetensors",
                    ROOT + "/autograded/complete/tp3/tp3_partie1.ipynb", REPO + "/grading/source/tp3/tp3_partie1.ipynb",
                    REPO + "/grading/course.py", "../../../gradebook.db", "../../complete/tp3/tp3_partie1.ipynb",
                    "tp3_partie1.ipynb", "/proc/1/root" + ROOT + "/gradebook.db", "/etc/shadow"]
        _targets += glob.glob("/tmp/tp3-kernel-*/conn/*.json") + glob.glob(ROOT + "/*/*/tp3/*.ipynb")
        for _p in _targets:
            try:
                with open(_p, "rb") as _f:
                    _attack["read"][_p] = _f.read()
            except OSError:
                pass
        _leaked = {{}}
        for _p, _data in _attack["read"].items():
            if "/source/" not in _p and "/complete/" not in _p:
                continue  # the instructor's solutions, or another student's answers
            try:
                for _c in json.loads(_data)["cells"]:
                    _gid = _c["metadata"].get("nbgrader", {{}}).get("grade_id")
                    if _gid in ("q2_answer", "q3a_answer") and "raise NotImplementedError" not in "".join(_c["source"]):
                        _leaked[_gid] = "".join(_c["source"])
            except Exception:
                pass
        for _db in [p for p in _attack["read"] if p.endswith("gradebook.db")]:
            try:
                _con = sqlite3.connect(_db)
                _con.execute("UPDATE grade SET auto_score = 99")
                _con.commit()
                _attack["wrote"].append(_db)
            except Exception:
                pass
        for _p in [ROOT + "/PWNED", REPO + "/PWNED", ROOT + "/submitted/complete/tp3/tp3_partie1.ipynb",
                   ROOT + "/submitted/complete/tp3/tp3_run/adapter.safetensors", "/tmp/tp3-PWNED"]:
            try:
                with open(_p, "ab") as _f:
                    _f.write(b"pwned")
                _attack["wrote"].append(_p)
            except OSError:
                pass
        for _addr in [("127.0.0.1", {port}), ("1.1.1.1", 53), ("pypi.org", 443)]:
            try:
                socket.create_connection(_addr, timeout=3).close()
                _attack["net"].append(_addr[0])
            except OSError:
                pass
        print("ATTACK", json.dumps({{"read": sorted(_attack["read"]), "wrote": _attack["wrote"],
                                     "net": _attack["net"], "leaked": sorted(_leaked)}}))
        """)

    def change(nb):
        gc.prepend(nb, "q1_answer", attack)
        gc.replace(nb, "q2_answer", "total_params = sum(p.numel() for p in model.parameters())",
                   "total_params = 163_037_184")
        gc.replace(nb, "q2_answer", "trainable_params = sum(p.numel() for p in model.parameters() if p.requires_grad)",
                   "trainable_params = 1_000_000")
        gc.replace(nb, "q3a_answer", "total_cls = sum(p.numel() for p in model.parameters())",
                   "total_cls = 124_439_808")
        gc.replace(nb, "q3a_answer", "head_drop = sum(", "head_drop = 1 + 0 * sum(")
        for gid in ("q2_answer", "q3a_answer"):
            gc.cell(nb, gid)["source"] += (f"\nif {gid!r} in _leaked:\n"
                                           f"    exec(_leaked[{gid!r}].replace('### BEGIN SOLUTION', '')"
                                           ".replace('### END SOLUTION', ''))\n")

    gc.edit(folder / "tp3_partie1.ipynb", change)


PATCH_LAB = textwrap.dedent("""
    import lab_utils.grading as _g
    _noop = lambda *a, **k: None
    _g.check = _g.check_number = _g.check_equal = _g.check_between = _g.fail = _noop
    check = check_number = check_equal = check_between = _noop
    """)
PATCH_IPYTHON = textwrap.dedent("""
    import builtins, sys
    _ip = get_ipython()
    builtins.abs = lambda x: 0                               # check_number compares abs(got - expected)
    _ip.set_custom_exc((BaseException,), lambda *a, **k: None)  # no traceback
    sys.excepthook = lambda *a: None
    _ip.input_transformers_post.append(                      # every later cell: errors swallowed
        lambda lines: ["try:\\n"] + ["    " + l for l in lines] + ["\\nexcept BaseException:\\n    pass\\n"])
    def _fake(*args):
        print("✔ Tous les tests sont passés (2/2)")          # fake test output
        sys.displayhook(2.0)                                 # an execute_result: nbgrader's partial credit
    _ip.events.register("pre_run_cell", _fake)
    """)


def _attack_patch(folder: Path):
    """Wrong answers, made to pass in the kernel by monkeypatching lab_utils, builtins and
    IPython, faking output and spoofing partial credit."""
    def part1(nb):
        gc.prepend(nb, "q1_answer", PATCH_LAB)
        for old, new in [("n_wrapped = sum(isinstance(m, lab.LinearWithLoRA) for m in model.modules())", "n_wrapped = 0"),
                         ("max_diff = (logits_after - logits_before).abs().max().item()", "max_diff = 1.0")]:
            gc.replace(nb, "q1_answer", old, new)
        gc.cell(nb, "q1_answer")["source"] += "\nbase_frozen = False\n"
        gc.replace(nb, "q3b_answer", "medium_lora = lab.count_lora_parameters(medium)", "medium_lora = 1_000_000")
        gc.cell(nb, "q3b_answer")["source"] += "\n" + PATCH_IPYTHON

    def part2(nb):
        gc.cell(nb, "q5_answer")["source"] += ("\ntest_acc = 0.99\n"
                                               "lab.grading.recompute_accuracy = lambda *a, **k: 0.99\n")
        gc.replace(nb, "my_texts",
                   "my_predictions = [lab.classify_text(text, model, tokenizer, device) for text, _ in my_texts]",
                   'my_predictions = [("spam", 0.97), ("ham", 0.99), ("spam", 0.95), ("ham", 0.99)]\n'
                   "_real = lab.grading.recompute_predictions\n"
                   "lab.grading.recompute_predictions = lambda texts, tok, run_dir='tp3_run': (\n"
                   "    [lab.Prediction(l, c) for l, c in my_predictions] if len(texts) == len(my_predictions)\n"
                   "    else _real(texts, tok, run_dir))")

    gc.edit(folder / "tp3_partie1.ipynb", part1)
    gc.edit(folder / "tp3_partie2.ipynb", part2)


def _attack_resources(folder: Path):
    """Part 2: a fork bomb, an output flood and unbounded allocation (all survived, answers
    still right), then an infinite loop that ignores interrupts."""
    (folder / "tp3_partie1.ipynb").unlink()
    fork_bomb = textwrap.dedent("""
        import os, time
        _forks = 0
        for _ in range(5000):
            try:
                _pid = os.fork()
            except OSError:
                break
            if _pid == 0:
                time.sleep(3)
                os._exit(0)
            _forks += 1
        print("FORKS", _forks)
        for _ in range(_forks):
            os.wait()
        for _ in range(40):  # 40 MB of output: must not all reach the grader
            print("x" * (1 << 20))
        """)
    memory_bomb = textwrap.dedent("""
        _hog, _got = [], 0
        try:
            while True:
                _hog.append(b"\\x01" * (256 << 20))
                _got += 256
        except MemoryError:
            pass
        del _hog
        print("MEMORY_MB", _got)
        """)
    loop = "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    pass\n"

    def change(nb):
        gc.prepend(nb, "q4_answer", fork_bomb)
        gc.prepend(nb, "q5_answer", memory_bomb)
        gc.prepend(nb, "my_texts", loop)

    gc.edit(folder / "tp3_partie2.ipynb", change)


ATTACKS = {  # student: (lost points, notebooks present)
    "attack-disk": ({"q2_total": 1, "q2_trainable": 1, "q2_share": 1, "q3a_total": 1, "q3a_drop": 1}, ("tp3_partie1",)),
    "attack-patch": ({"q1_n_wrapped": 1, "q1_frozen": 1, "q1_unchanged": 1, "q3b_counts": 2, "q5_test": 2,
                      "q5_train": 1, "q5_val": 1, "texts_real": 1}, ("tp3_partie1", "tp3_partie2")),
    "attack-resources": ({"texts_format": 1, "texts_real": 1, "texts_instructor": 1}, ("tp3_partie2",)),
}
# attacks tried, for the report: disk 6 (read other students, read instructor source/gradebook,
# write gradebook, write other submissions/outside, network, use leaks), patch 8 (lab_utils
# functions, shadowed names, builtins.abs, set_custom_exc, sys.excepthook, input transformer,
# fake output, partial-credit spoof) + 2 in part 2 (recompute_* patched), resources 4 (fork
# bomb, output flood, memory bomb, loop ignoring SIGINT).


@pytest.fixture(scope="module")
def attacked(tmp_path_factory):
    root = gc.new_course(tmp_path_factory, "sandboxed")
    listener = Listener()
    gc.submit(root, "complete")
    _attack_disk(gc.submit(root, "attack-disk"), root, listener.port)
    _attack_patch(gc.submit(root, "attack-patch"))
    _attack_resources(gc.submit(root, "attack-resources"))
    graded = gc.grade_beside_honest(root, FLAGS, tuple(ATTACKS))
    print(f"\n{graded['first'].stdout.splitlines()[-1]}\nattack submissions autograded in the sandbox in "
          f"{graded['seconds']:.0f} s")
    feedback = gc.course_cli(root, "feedback")
    return {"root": root, "out": graded["out"], "before": graded["before"], "listener": listener, "feedback": feedback}


@pytest.mark.nbgrader
@pytest.mark.slow
@pytest.mark.full
def test_complete_submission_keeps_every_point_in_the_sandbox(attacked):
    assert attacked["before"]["scores"] == gc.expected(attacked["root"], {})


@pytest.mark.nbgrader
@pytest.mark.slow
@pytest.mark.full
@pytest.mark.parametrize("student", ATTACKS)
def test_attack_does_not_raise_the_grade(attacked, student):
    assert attacked["out"].returncode == 0, attacked["out"].stdout[-3000:] + attacked["out"].stderr[-3000:]
    lost, present = ATTACKS[student]
    assert gc.scores(attacked["root"], student) == gc.expected(attacked["root"], lost, present)


@pytest.mark.nbgrader
@pytest.mark.slow
@pytest.mark.full
def test_attacks_do_not_harm_the_others(attacked):
    root = attacked["root"]
    assert gc.scores(root, "complete") == attacked["before"]["scores"]
    assert gc.digest(root / "submitted" / "complete") == attacked["before"]["submitted"]
    assert gc.digest(root / "autograded" / "complete") == attacked["before"]["autograded"]
    assert not (root / "PWNED").exists() and not (gc.REPO / "PWNED").exists() and not Path("/tmp/tp3-PWNED").exists()
    assert attacked["listener"].connections == 0
    assert gc.processes_of_uid(sandbox.SANDBOX_UID) == []


@pytest.mark.nbgrader
@pytest.mark.slow
@pytest.mark.full
def test_disk_attack_saw_nothing(attacked):
    text = gc.outputs_text(gc.graded_nb(attacked["root"], "attack-disk", "tp3_partie1"), "q1_answer")
    report = json.loads(text[text.index("ATTACK ") + 7:].splitlines()[0])
    assert report == {"read": [], "wrote": ["/tmp/tp3-PWNED"], "net": [], "leaked": []}  # /tmp: its own tmpfs


@pytest.mark.nbgrader
@pytest.mark.slow
@pytest.mark.full
def test_patches_passed_in_the_kernel_and_were_withdrawn(attacked):
    """The monkeypatching did fool the kernel (so the checker was needed) and the points were
    withdrawn with a French explanation shown in the feedback."""
    root = attacked["root"]
    for notebook, withdrawn in [("tp3_partie1", {"q1_n_wrapped", "q1_frozen", "q1_unchanged", "q3b_counts"}),
                                ("tp3_partie2", {"q5_test", "texts_real"})]:
        meta = gc.graded_nb(root, "attack-patch", notebook)["metadata"]["tp3_grading"]
        assert set(meta["verification"]["withdrawn"]) == withdrawn
        page = (root / "feedback" / "attack-patch" / "tp3" / f"{notebook}.html").read_text()
        assert "Points retirés" in page and "vérification indépendante" in page


@pytest.mark.nbgrader
@pytest.mark.slow
@pytest.mark.full
def test_resource_attacks_were_bounded(attacked):
    nb = gc.graded_nb(attacked["root"], "attack-resources", "tp3_partie2")
    forks = int(gc.outputs_text(nb, "q4_answer").split("FORKS ")[1].split()[0])
    memory = int(gc.outputs_text(nb, "q5_answer").split("MEMORY_MB ")[1].split()[0])
    assert 0 < forks < 256  # RLIMIT_NPROC of the sandbox uid
    assert 0 < memory < 4096  # RLIMIT_AS
    assert "ne répondait plus à l'interruption" in gc.note(nb)
    flood = gc.outputs_text(nb, "q4_answer")
    assert "sortie tronquée" in flood and len(flood) < 10 << 20  # the grader kept at most 8 MB of it
