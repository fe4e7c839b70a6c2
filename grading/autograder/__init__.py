"""The grading pipeline of TP3 (instructor only: never published, never visible from a
student's kernel), one module per step:

- collect: ``ids`` (which names may be student ids), ``intake`` (the expected files only,
  plain, within caps), ``collect`` (archives and the exchange into ``submitted/``),
  ``exchange`` (nbgrader's exchange collect that refuses impersonation);
- grade one submission (``grade``): ``workspace`` (a private course folder),
  ``gradebook`` (private copies, the one transfer into the course), ``cgroup`` and
  ``reaper`` (the submission's processes bounded and ended), ``unfinished`` (explained
  zeros), ``verify`` and ``replay`` (the trusted re-verification), ``sanitize`` and
  ``safe_markdown`` (inert HTML);
- inside nbgrader: ``repair`` (sanitize step), ``execute`` with ``kernel``, ``launcher``,
  ``sandbox``, ``recovery`` and ``outputs`` (the execute step), ``answers`` (the claims a
  test reads), ``notes`` (French explanations);
- a class: ``classroom`` (several at once, one writer, progress); after it ``feedback``,
  ``overview``, ``same_loss``, ``scores``, ``export``; before it ``preflight``;
  ``instructor_lab`` (formgrader's JupyterLab).
"""

ASSIGNMENT = "tp3"  # the nbgrader assignment (grading/source/tp3)
