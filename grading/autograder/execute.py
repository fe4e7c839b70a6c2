"""nbgrader's Execute step, hardened for grading a whole class.

- the kernel is always the assignment's Python kernel, started by ``kernel.GraderKernelManager``
  (control group, limits, sandbox);
- a crash or a kernel deaf to interrupts is survived (``recovery.KernelRecovery``);
- outputs are kept within a byte budget per cell and per notebook, errors included
  (``outputs.OutputBudget``);
- just before each test cell (or locked cell using answers) runs, the answers it reads are
  asked from the kernel (``answers.encode_answers``) and kept in the notebook's metadata,
  for the trusted re-verification (``verify.py``): only the student's claim.

Everything that happened is explained in French in the graded notebook (``notes``).
"""

from __future__ import annotations

import ast
import time

from nbclient.exceptions import CellTimeoutError, DeadKernelError
from nbgrader.preprocessors import Execute
from traitlets import Integer, Unicode

from .answers import MAX_CHARS, answer_names, capture_expression, encoder_source
from .kernel import GraderKernelManager
from .notes import NOT_RUN, TIMEOUT, add_note, cell_id, error_output, grading_meta
from .outputs import OutputBudget
from .recovery import KernelRecovery, cell_label

MEMORY_ERRORS = ("MemoryError", "OutOfMemoryError")
MEMORY_TEXTS = ("can't allocate memory", "not enough memory", "Cannot allocate memory", "bad_alloc")


class GraderExecute(KernelRecovery, Execute):
    """Execute that survives crashes and runaway kernels, bounds outputs, and records the
    answers tests read."""

    kernel_name = Unicode("python3", help="kernel used whatever the notebook says").tag(config=True)
    max_restarts = Integer(2, help="kernel replacements per notebook before giving up").tag(config=True)
    probe_seconds = Integer(10, help="how long a kernel may take to answer after an interrupt").tag(config=True)
    capture_seconds = Integer(60, help="time limit to collect a test cell's answers").tag(config=True)
    max_output_mb = Integer(8, help="outputs kept per cell (MB; errors are cut to 16 kB each)").tag(config=True)
    max_notebook_output_mb = Integer(24, help="outputs kept for the whole notebook (MB)").tag(config=True)

    def __init__(self, **kwargs):
        kwargs.setdefault("kernel_manager_class", GraderKernelManager)
        super().__init__(**kwargs)

    # ------------------------------------------------------------------ notebook

    def preprocess(self, nb, resources=None, km=None):
        self._budget = OutputBudget(self.max_output_mb << 20, self.max_notebook_output_mb << 20)
        self._answers, self._incidents, self._culprits = {}, [], set()
        self._restarts, self._abandoned, self._timed_out = 0, None, False
        self.error_on_timeout = {
            "ename": TIMEOUT,
            "evalue": f"la cellule a dépassé la limite de {self.timeout} s et a été interrompue.",
            "traceback": [f"{TIMEOUT} : la cellule a dépassé la limite de {self.timeout} s (boucle infinie ?) "
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
        if self._budget.notebook_full:
            self._incidents.append("Les sorties de ce notebook dépassaient la taille permise : une partie "
                                   "n'a pas été gardée.")
        for text in self._incidents:
            add_note(nb, text)
        return nb, resources

    def preprocess_cell(self, cell, resources, index):
        if self._abandoned is not None:
            if cell.cell_type == "code" and cell.source.strip():
                cell.outputs = [error_output(NOT_RUN, f"cette cellule n'a pas été exécutée : {self._abandoned}.")]
                cell.execution_count = None
            return cell, resources
        gid = cell_id(cell)
        if gid in self._names and cell.metadata.get("nbgrader", {}).get("locked"):
            self._answers[gid] = self._capture(self._names[gid])
        self._timed_out = False
        self._budget.new_cell()
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
                self._incidents.append(f"{cell_label(cell, index).capitalize()} a dépassé la limite de "
                                       f"{self.timeout} s (boucle infinie ?) : elle a été interrompue et vaut 0 "
                                       "si elle est notée.")
            else:
                self._replace_kernel(cell, index, "timeout", add_output=False)
        self._check_memory(cell, index)
        return cell, resources

    def output(self, outs, msg, display_id, cell_index):
        """Keep outputs within the budget (see ``outputs``)."""
        kept = self._budget.admit(msg, outs)
        return None if kept is None else super().output(outs, kept, display_id, cell_index)

    async def _async_handle_timeout(self, timeout, cell=None):
        self._timed_out = True
        return await super()._async_handle_timeout(timeout, cell)

    def _check_memory(self, cell, index) -> None:
        for out in cell.get("outputs", []):
            if out.get("output_type") != "error":
                continue
            text = f"{out.get('ename', '')} {out.get('evalue', '')}"
            if out.get("ename") in MEMORY_ERRORS or any(t in text for t in MEMORY_TEXTS):
                limit = self.config.get("GraderKernelManager", {}).get(
                    "memory_mb", GraderKernelManager.memory_mb.default_value)
                self._incidents.append(f"{cell_label(cell, index).capitalize()} a dépassé la limite de mémoire du "
                                       f"noyau ({limit} Mo) : l'allocation a échoué (MemoryError) ; la cellule "
                                       "vaut 0 si elle est notée.")
                return

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
        if not isinstance(found, dict) or found.get("status") != "ok":
            return None
        text = found.get("data", {}).get("text/plain", "")
        if not isinstance(text, str) or len(text) > 2 * MAX_CHARS + 10:
            return None
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            return None
        return value if isinstance(value, str) else None
