"""How much of a kernel's output the grader keeps: bytes per cell and per notebook, errors
included.

Everything a kernel sends is read by the grader, then kept in memory, written in the
graded notebook and rendered in the feedback. So outputs are counted in bytes as they
arrive: past ``cell_bytes`` in a cell, or ``notebook_bytes`` in the notebook, they are
dropped with one French line saying so. Errors are cut to ``error_bytes`` (name, message
and traceback together), and the first error of a cell is always kept (an error is what
makes a test cell score zero); further errors count like any output.
A dropped stderr still leaves a stderr output (nbgrader gives 0 to a test cell that wrote
to stderr).
"""

from __future__ import annotations

import json

from nbformat.v4 import new_output

ERROR_BYTES = 16 << 10


def message_bytes(content) -> int:
    try:
        return len(json.dumps(content, default=str))
    except (TypeError, ValueError, RecursionError):
        return len(str(content))


def cut(text, limit: int) -> str:
    text = text if isinstance(text, str) else str(text)
    return text if len(text) <= limit else text[:limit] + " […]"


def small_error(content: dict, limit: int = ERROR_BYTES) -> dict:
    """An error message's content reduced to ``limit`` characters in all."""
    ename = cut(content.get("ename", ""), 200)
    evalue = cut(content.get("evalue", ""), limit // 2)
    traceback, room = [], limit - len(ename) - len(evalue)
    for line in content.get("traceback") or []:
        line = cut(line, room)
        room -= len(line)
        traceback.append(line)
        if room <= 0:
            traceback.append("[… trace coupée …]")
            break
    return {**content, "ename": ename, "evalue": evalue, "traceback": traceback}


class OutputBudget:
    """Bytes of output kept, for the cell being run and for the whole notebook."""

    def __init__(self, cell_bytes: int, notebook_bytes: int, error_bytes: int = ERROR_BYTES):
        self.cell_bytes, self.notebook_bytes, self.error_bytes = cell_bytes, notebook_bytes, error_bytes
        self.notebook_used = 0
        self.notebook_full = False  # something was dropped for the notebook's cap
        self.new_cell()

    def new_cell(self) -> None:
        self.cell_used, self.truncated = 0, False

    def admit(self, msg: dict, outs: list) -> dict | None:
        """The message to keep (``msg`` itself, or a reduced error), or None to drop it; in
        that case a French notice is appended to ``outs`` once per cell."""
        content = msg.get("content", {})
        if msg.get("msg_type") == "error":
            msg = {**msg, "content": small_error(content, self.error_bytes)}
            content = msg["content"]
            if not any(o.get("output_type") == "error" for o in outs):  # the first error of a cell: always kept
                size = message_bytes(content)
                self.cell_used += size
                self.notebook_used += size
                return msg
        size = message_bytes(content)
        if self.cell_used + size <= self.cell_bytes and self.notebook_used + size <= self.notebook_bytes:
            self.cell_used += size
            self.notebook_used += size
            return msg
        if self.notebook_used + size > self.notebook_bytes:
            self.notebook_full = True
        stderr = msg.get("msg_type") == "stream" and content.get("name") == "stderr"
        if not self.truncated or (stderr and not any(o.get("name") == "stderr" for o in outs)):
            self.truncated = True
            where = "par cellule" if self.cell_used + size > self.cell_bytes else "pour tout le notebook"
            limit = self.cell_bytes if where == "par cellule" else self.notebook_bytes
            outs.append(new_output("stream", name="stderr" if stderr else "stdout",
                                   text=f"\n[… sortie tronquée : plus de {limit >> 20} Mo {where} …]\n"))
        return None
