"""nbgrader's Execute step, hardened for grading a whole class.

What nbgrader 0.9.6 does, and what this adds:

- kernel crash (``os._exit``, ``os.kill(os.getpid(), 9)``, a segfault, the memory limit):
  nbgrader aborts the whole submission (DeadKernelError), and ``course.py`` used to stop
  there. Here the cell that killed the kernel gets an error output (zero if it is a test
  cell), a new kernel is started, the cells before it are run again silently to rebuild
  the state, and grading goes on with the next cell;
- a cell past the time limit: nbgrader interrupts the kernel and moves on, but a kernel
  that ignores the interrupt (a loop in C code, SIGINT ignored) makes every following cell
  time out, then aborts the submission. Here, when the kernel does not answer within a few
  seconds of the interrupt, it is replaced as after a crash;
- after ``max_restarts`` replacements, the remaining cells are marked as not executed
  (errors, so their tests score zero: a cell that did not run must never pass);
- the kernel is always the assignment's Python kernel, started through ``launcher.py``
  (memory, CPU time, file size limits; the bubblewrap sandbox with ``sandbox=True``);
- just before each test cell (or locked cell using answers) runs, the answers it reads are
  asked from the kernel
  (``answers.encode_answers``) and kept in the notebook's metadata, for the trusted
  re-verification (``verify.py``).

Everything that happened is explained in French in the graded notebook (``notes``).
"""

from __future__ import annotations

import ast
import asyncio
import os
import shutil
import sys
import tempfile
import time
from queue import Empty

from jupyter_client.manager import AsyncKernelManager
from jupyter_core.utils import run_sync
from nbclient.exceptions import CellTimeoutError, DeadKernelError
from nbformat.v4 import new_output
from nbgrader.preprocessors import Execute
from traitlets import Bool, Integer, Unicode

from . import sandbox as sandboxing
from .answers import MAX_CHARS, answer_names, capture_expression, encoder_source
from .notes import add_note, cell_id, error_output, grading_meta, is_test_cell

LAUNCHER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "launcher.py")


class GraderKernelManager(AsyncKernelManager):
    """Starts the kernel through ``launcher.py`` (limits; sandbox when ``sandbox`` is set)."""

    sandbox = Bool(False, help="run the kernel inside the bubblewrap sandbox").tag(config=True)
    memory_mb = Integer(8192, help="address-space limit of each kernel process (MB, 0: none)").tag(config=True)
    cpu_seconds = Integer(3600, help="CPU time limit of each kernel process (s, 0: none)").tag(config=True)
    nproc = Integer(256, help="processes + threads of the sandbox uid (sandbox only)").tag(config=True)
    fsize_mb = Integer(512, help="largest file the kernel may write (MB)").tag(config=True)
    sandbox_uid = Integer(sandboxing.SANDBOX_UID, help="unprivileged uid of the sandboxed kernel").tag(config=True)
    scratch_dir = Unicode("", help="where the sandbox's private folders go (default: the temp dir)").tag(config=True)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._base = None
        if self.sandbox:
            self._base = tempfile.mkdtemp(prefix="tp3-kernel-", dir=self.scratch_dir or None)
            private = os.path.join(self._base, "conn")
            os.mkdir(private, 0o700)
            os.chown(private, self.sandbox_uid, self.sandbox_uid)
            sandboxing.write_etc(os.path.join(self._base, "etc"), self.sandbox_uid)
            self.transport = "ipc"  # ZeroMQ over unix sockets: TCP cannot cross the network namespace
            self.connection_file = os.path.join(private, "kernel.json")
            self.ip = os.path.join(private, "kernel-ipc")

    def format_kernel_cmd(self, extra_arguments=None):
        cmd = super().format_kernel_cmd(extra_arguments)
        launcher = [sys.executable, LAUNCHER, f"--memory-mb={self.memory_mb}", f"--cpu-seconds={self.cpu_seconds}",
                    f"--nproc={self.nproc}", f"--fsize-mb={self.fsize_mb}"]
        if self.sandbox:
            launcher += ["--sandbox", f"--private-dir={os.path.join(self._base, 'conn')}",
                         f"--etc-dir={os.path.join(self._base, 'etc')}", f"--uid={self.sandbox_uid}"]
        return [*launcher, "--", *cmd]

    async def cleanup_resources(self, restart: bool = False) -> None:
        await super().cleanup_resources(restart=restart)
        if self._base and not restart:
            shutil.rmtree(self._base, ignore_errors=True)


def _label(cell, index: int) -> str:
    gid = cell_id(cell)
    if is_test_cell(cell):
        return f"la cellule de test « {gid} »"
    if gid and cell.metadata.get("nbgrader", {}).get("solution"):
        return f"votre cellule de réponse « {gid} »"
    if gid:
        return f"la cellule « {gid} »"
    return f"la cellule n° {index + 1}"


MEMORY_ERRORS = ("MemoryError", "OutOfMemoryError")
MEMORY_TEXTS = ("can't allocate memory", "not enough memory", "Cannot allocate memory", "bad_alloc")


class GraderExecute(Execute):
    """Execute that survives crashes and runaway kernels, and records the answers tests read."""

    kernel_name = Unicode("python3", help="kernel used whatever the notebook says").tag(config=True)
    max_restarts = Integer(2, help="kernel replacements per notebook before giving up").tag(config=True)
    probe_seconds = Integer(10, help="how long a kernel may take to answer after an interrupt").tag(config=True)
    capture_seconds = Integer(60, help="time limit to collect a test cell's answers").tag(config=True)
    max_output_mb = Integer(8, help="outputs kept per cell (MB; errors are always kept)").tag(config=True)

    def __init__(self, **kwargs):
        kwargs.setdefault("kernel_manager_class", GraderKernelManager)
        super().__init__(**kwargs)

    # ------------------------------------------------------------------ notebook

    def preprocess(self, nb, resources=None, km=None):
        self._output_bytes, self._truncated = 0, False
        self._answers, self._incidents, self._culprits = {}, [], set()
        self._restarts, self._abandoned, self._timed_out = 0, None, False
        self.error_on_timeout = {
            "ename": "TempsDepasse",
            "evalue": f"la cellule a dépassé la limite de {self.timeout} s et a été interrompue.",
            "traceback": [f"TempsDepasse : la cellule a dépassé la limite de {self.timeout} s (boucle infinie ?) "
                          "et a été interrompue."],
        }
        cells = [{"grade_id": cell_id(c), "cell_type": c.cell_type, "source": c.source,
                  "locked": c.metadata.get("nbgrader", {}).get("locked", False)} for c in nb.cells]
        self._names = answer_names(cells)
        started = time.monotonic()
        nb, resources = super().preprocess(nb, resources, km)
        meta = grading_meta(nb)
        meta.update({"answers": self._answers, "incidents": self._incidents, "complete": True,
                     "restarts": self._restarts, "seconds": round(time.monotonic() - started, 1),
                     "sandbox": bool(self.config.get("GraderKernelManager", {}).get("sandbox", False))})
        for text in self._incidents:
            add_note(nb, text)
        return nb, resources

    def preprocess_cell(self, cell, resources, index):
        if self._abandoned is not None:
            if cell.cell_type == "code" and cell.source.strip():
                cell.outputs = [error_output("CelluleNonExecutee",
                                             f"cette cellule n'a pas été exécutée : {self._abandoned}.")]
                cell.execution_count = None
            return cell, resources
        gid = cell_id(cell)
        if gid in self._names and cell.metadata.get("nbgrader", {}).get("locked"):
            self._answers[gid] = self._capture(self._names[gid])
        self._timed_out = False
        self._output_bytes, self._truncated = 0, False
        try:
            cell, resources = super().preprocess_cell(cell, resources, index)
        except DeadKernelError:
            self._replace_kernel(cell, index, "crash")
            return cell, resources
        except CellTimeoutError:  # the kernel ignored the interrupt (no output after it)
            self._replace_kernel(cell, index, "timeout")
            return cell, resources
        if self._timed_out:
            if self._responsive():
                self._culprits.add(index)
                self._incidents.append(f"{_label(cell, index).capitalize()} a dépassé la limite de {self.timeout} s "
                                       "(boucle infinie ?) : elle a été interrompue et vaut 0 si elle est notée.")
            else:
                self._replace_kernel(cell, index, "timeout", add_output=False)
        self._check_memory(cell, index)
        return cell, resources

    def output(self, outs, msg, display_id, cell_index):
        """Keep at most ``max_output_mb`` of a cell's outputs in memory (a flood must not exhaust
        the grader). Errors are always kept, and a dropped stderr still leaves a stderr output
        (nbgrader gives 0 to a test cell that wrote to stderr)."""
        size = len(str(msg.get("content", "")))
        if msg.get("msg_type") == "error" or self._output_bytes + size <= self.max_output_mb << 20:
            self._output_bytes += size
            return super().output(outs, msg, display_id, cell_index)
        stderr = msg.get("msg_type") == "stream" and msg.get("content", {}).get("name") == "stderr"
        if not self._truncated or (stderr and not any(o.get("name") == "stderr" for o in outs)):
            self._truncated = True
            outs.append(new_output("stream", name="stderr" if stderr else "stdout",
                                   text=f"\n[… sortie tronquée : plus de {self.max_output_mb} Mo …]\n"))
        return None

    async def _async_handle_timeout(self, timeout, cell=None):
        self._timed_out = True
        return await super()._async_handle_timeout(timeout, cell)

    # ------------------------------------------------------------------ incidents

    def _check_memory(self, cell, index) -> None:
        for out in cell.get("outputs", []):
            if out.get("output_type") != "error":
                continue
            text = f"{out.get('ename', '')} {out.get('evalue', '')}"
            if out.get("ename") in MEMORY_ERRORS or any(t in text for t in MEMORY_TEXTS):
                limit = self.config.get("GraderKernelManager", {}).get(
                    "memory_mb", GraderKernelManager.memory_mb.default_value)
                self._incidents.append(f"{_label(cell, index).capitalize()} a dépassé la limite de mémoire du "
                                       f"noyau ({limit} Mo) : l'allocation a échoué (MemoryError) ; la cellule "
                                       "vaut 0 si elle est notée.")
                return

    def _replace_kernel(self, cell, index, why: str, add_output: bool = True) -> None:
        self._culprits.add(index)
        if why == "crash":
            text = ("le noyau Python s'est arrêté pendant cette cellule (plantage, mémoire épuisée, os._exit, "
                    "os.kill...)")
            if add_output:
                cell.outputs.append(error_output("NoyauArrete", text + "."))
        else:
            text = (f"cette cellule a dépassé la limite de {self.timeout} s et le noyau ne répondait plus à "
                    "l'interruption")
            if add_output:
                cell.outputs.append(error_output("TempsDepasse", text + "."))
        self._restarts += 1
        if self._restarts > self.max_restarts:
            self._incidents.append(f"{_label(cell, index).capitalize()} : {text}. Trop d'incidents dans ce notebook : "
                                   "les cellules suivantes n'ont pas été exécutées et valent 0.")
            self._abandoned = "trop d'incidents plus haut dans le notebook (voir la note en tête)"
            self._ensure_km()
            return
        try:
            self._restart_kernel()
            self._replay(index)
        except Exception as err:  # noqa: BLE001 (anything: give up on the rest, never crash)
            self.log.error("could not restart the kernel: %s", err)
            self._incidents.append(f"{_label(cell, index).capitalize()} : {text}. Le noyau n'a pas pu être "
                                   "relancé : les cellules suivantes n'ont pas été exécutées et valent 0.")
            self._abandoned = "le noyau n'a pas pu être relancé (voir la note en tête)"
            self._ensure_km()
            return
        self._incidents.append(f"{_label(cell, index).capitalize()} : {text}. La correction a relancé un noyau, "
                               "ré-exécuté les cellules précédentes et continué ; cette cellule vaut 0 si elle "
                               "est notée.")

    def _ensure_km(self) -> None:
        if self.km is None:
            self.km = self.create_kernel_manager()

    def _restart_kernel(self) -> None:
        self.log.warning("replacing the kernel")
        if self.km is not None:
            try:
                if run_sync(self.km.is_alive)():
                    run_sync(self.km.shutdown_kernel)(now=True)
            except Exception as err:  # noqa: BLE001
                self.log.warning("kernel shutdown: %s", err)
            previous = self.shutdown_kernel
            self.shutdown_kernel = "immediate"
            try:
                self._cleanup_kernel()
            finally:
                self.shutdown_kernel = previous
        self.km, self.kc = None, None
        self.km = self.create_kernel_manager()
        self.start_new_kernel()
        self.start_new_kernel_client()

    def _replay(self, index: int) -> None:
        """Run the code cells before ``index`` again (outputs dropped), except the culprits."""
        for i, cell in enumerate(self.nb.cells[:index]):
            if cell.cell_type != "code" or not cell.source.strip() or i in self._culprits:
                continue
            msg_id = self.kc.execute(cell.source, store_history=False, allow_stdin=False)
            if self._reply(msg_id, self.timeout or 600) is None:
                raise RuntimeError(f"cell {i + 1} did not finish while rebuilding the state")

    def _responsive(self) -> bool:
        msg_id = self.kc.execute("", silent=True, store_history=False)
        return self._reply(msg_id, self.probe_seconds) is not None

    def _reply(self, msg_id: str, timeout: float):
        """The shell reply to ``msg_id``, or None (timeout, dead kernel)."""
        return run_sync(self._async_reply)(msg_id, timeout)

    async def _async_reply(self, msg_id: str, timeout: float):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                msg = await self.kc.shell_channel.get_msg(timeout=1)
            except (Empty, asyncio.TimeoutError):
                if not await self.km.is_alive():
                    return None
                continue
            if msg.get("parent_header", {}).get("msg_id") == msg_id:
                return msg
        return None

    # ------------------------------------------------------------------ answers

    def _capture(self, names: list[str]) -> str | None:
        """The answers ``names`` as the kernel encodes them (the student's claim), or None."""
        if not names or self.kc is None:
            return None
        try:
            msg_id = self.kc.execute(encoder_source(), silent=True, store_history=False, allow_stdin=False,
                                     user_expressions={"answers": capture_expression(names)})
            reply = self._reply(msg_id, self.capture_seconds)
        except Exception as err:  # noqa: BLE001
            self.log.warning("could not collect answers: %s", err)
            return None
        if reply is None:
            return None
        found = reply.get("content", {}).get("user_expressions", {}).get("answers", {})
        if found.get("status") != "ok":
            return None
        text = found.get("data", {}).get("text/plain", "")
        if not isinstance(text, str) or len(text) > 2 * MAX_CHARS + 10:
            return None
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            return None
        return value if isinstance(value, str) else None
