"""Replacing a kernel that crashed or stopped answering, without losing the notebook.

nbgrader 0.9.6 aborts a whole submission on a dead kernel (DeadKernelError) and, when a
kernel ignores the interrupt sent at the time limit, lets every following cell time out.
Here the cell at fault gets an error output (zero if it is a test cell), a new kernel is
started, the cells before it are run again silently to rebuild the state, and execution
goes on. After ``max_restarts`` replacements the remaining cells are marked as not run.
"""

from __future__ import annotations

import asyncio
import time
from queue import Empty

from jupyter_core.utils import run_sync

from .notes import KERNEL_DIED, TIMEOUT, cell_id, error_output, is_test_cell


def cell_label(cell, index: int) -> str:
    """How the French notes name a cell."""
    gid = cell_id(cell)
    if is_test_cell(cell):
        return f"la cellule de test « {gid} »"
    if gid and cell.metadata.get("nbgrader", {}).get("solution"):
        return f"votre cellule de réponse « {gid} »"
    if gid:
        return f"la cellule « {gid} »"
    return f"la cellule n° {index + 1}"


class KernelRecovery:
    """Mixin for nbclient's NotebookClient: kernel replacement and state rebuilding.
    Uses ``max_restarts``, ``probe_seconds``, ``timeout`` and fills ``_incidents``,
    ``_culprits``, ``_restarts``, ``_abandoned`` (set by the executing class)."""

    def _replace_kernel(self, cell, index, why: str, add_output: bool = True) -> None:
        self._culprits.add(index)
        if why == "crash":
            text = ("le noyau Python s'est arrêté pendant cette cellule (plantage, mémoire épuisée, os._exit, "
                    "os.kill...)")
            if add_output:
                cell.outputs.append(error_output(KERNEL_DIED, text + "."))
        else:
            text = (f"cette cellule a dépassé la limite de {self.timeout} s et le noyau ne répondait plus à "
                    "l'interruption")
            if add_output:
                cell.outputs.append(error_output(TIMEOUT, text + "."))
        label = cell_label(cell, index).capitalize()
        self._restarts += 1
        if self._restarts > self.max_restarts:
            self._incidents.append(f"{label} : {text}. Trop d'incidents dans ce notebook : "
                                   "les cellules suivantes n'ont pas été exécutées et valent 0.")
            self._abandoned = "trop d'incidents plus haut dans le notebook (voir la note en tête)"
            self._ensure_km()
            return
        try:
            self._restart_kernel()
            self._replay(index)
        except Exception as err:  # noqa: BLE001 (anything: give up on the rest, never crash)
            self.log.error("could not restart the kernel: %s", err)
            self._incidents.append(f"{label} : {text}. Le noyau n'a pas pu être relancé : les cellules "
                                   "suivantes n'ont pas été exécutées et valent 0.")
            self._abandoned = "le noyau n'a pas pu être relancé (voir la note en tête)"
            self._ensure_km()
            return
        self._incidents.append(f"{label} : {text}. La correction a relancé un noyau, ré-exécuté les cellules "
                               "précédentes et continué ; cette cellule vaut 0 si elle est notée.")

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
