"""Grading-side extensions of nbgrader for TP3 (instructor only: never published, never
visible from a student's kernel).

- ``repair``: a sanitize step that normalises a submission before nbgrader grades it
  (kernel, duplicated / deleted / retyped cells, tampered metadata);
- ``execute``: nbgrader's Execute step, made to survive kernel crashes and unresponsive
  kernels, with resource limits and the optional bubblewrap sandbox, and recording the
  answers each test cell read;
- ``launcher`` and ``sandbox``: how the student's kernel is started (limits, isolation);
- ``answers``: which answers a test cell reads, and a value-only codec for them;
- ``verify``: the trusted re-verification of every test cell that scored, outside the
  student's kernel;
- ``grade``: one submission graded end to end (what ``course.py autograde`` loops over);
- ``notes``: the French explanations written into graded notebooks (shown by the feedback).
"""

ASSIGNMENT = "tp3"  # the nbgrader assignment (grading/source/tp3)
