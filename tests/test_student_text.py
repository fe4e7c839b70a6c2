"""What students read is French, numbers included, and holds none of the instructor's hidden messages.

- help() on every lab function the notebooks call gives a French docstring;
- the notebooks' prose writes numbers the French way (no "1,327,104", no "0.807", no
  "81.54%"), outside code and formulas;
- the instructor's messages of the hidden test are in grading/instructor_texts.json (which the
  reference run scores) and nowhere in the public tree.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

import lab_utils as lab

REPO = Path(__file__).resolve().parents[1]
RELEASE = [REPO / "notebooks" / "tp3_partie1.ipynb", REPO / "notebooks" / "tp3_partie2.ipynb"]
SOURCES = sorted((REPO / "grading" / "source" / "tp3").glob("*.ipynb"))
SOURCE_PART2 = REPO / "grading" / "source" / "tp3" / "tp3_partie2.ipynb"
FRENCH = {"le", "la", "les", "de", "des", "du", "un", "une", "est", "et", "pour", "par", "sur", "dans", "chaque", "avec"}
ENGLISH = {"the", "of", "and", "with", "returns", "is", "for", "each"}


def _cells(path: Path, kind: str) -> list[str]:
    return ["".join(c["source"]) for c in json.loads(path.read_text())["cells"] if c["cell_type"] == kind]


def _called_names() -> list[str]:
    """What the notebooks call, in the given cells and in the instructor's solutions."""
    names = set()
    for path in RELEASE + SOURCES:
        for source in _cells(path, "code"):
            names |= set(re.findall(r"\blab\.([A-Za-z_]\w*)\s*\(", source))
    return sorted(names)


@pytest.mark.parametrize("name", _called_names())
def test_help_of_what_the_notebooks_call_is_french(name):
    doc = getattr(lab, name).__doc__ or ""
    words = re.findall(r"[a-zàâçéèêëîïôûùüÿœ]+", doc.lower())
    french, english = sum(w in FRENCH for w in words), sum(w in ENGLISH for w in words)
    assert french >= 3 and french > 2 * english, f"lab.{name}: {doc[:200]!r}"


def test_the_notebooks_call_the_expected_functions():
    assert {"make_submission", "train_or_load", "evaluate_splits", "classify_text", "fr_number"} <= set(_called_names())


def _prose(markdown: str) -> str:
    markdown = re.sub(r"```.*?```", " ", markdown, flags=re.S)
    markdown = re.sub(r"`[^`]*`", " ", markdown)
    markdown = re.sub(r"\$\$.*?\$\$", " ", markdown, flags=re.S)
    return re.sub(r"\$[^$]*\$", " ", markdown)


@pytest.mark.parametrize("path", RELEASE + SOURCES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_prose_numbers_are_french(path):
    for text in map(_prose, _cells(path, "markdown")):
        text = text.replace("CC BY 4.0", "")  # a licence's name
        assert not re.search(r"\d\.\d", text), re.search(r".{30}\d\.\d.{30}", text, re.S)
        assert not re.search(r"\d{1,3},\d{3},\d{3}", text)  # English thousands
        assert not re.search(r"\d \d{3}\b", text), re.search(r".{20}\d \d{3}.{20}", text, re.S)  # plain space
        assert not re.search(r"\d ?%", text), re.search(r".{20}\d ?%.{10}", text, re.S)  # "%" after a narrow space


def _instructor_messages() -> list[tuple[str, str]]:
    nb = json.loads(SOURCE_PART2.read_text())
    source = next("".join(c["source"]) for c in nb["cells"]
                  if c["metadata"].get("nbgrader", {}).get("grade_id") == "texts_instructor")
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "instructor":
            return [tuple(pair) for pair in ast.literal_eval(node.value)]
    raise AssertionError("no `instructor = [...]` in the hidden test")


def test_instructor_file_holds_the_hidden_test_messages():
    from lab_utils.thresholds import read_instructor_texts

    hidden = _instructor_messages()
    assert len(hidden) == 10 and {label for _, label in hidden} == {"spam", "ham"}
    assert read_instructor_texts(REPO / "grading" / "instructor_texts.json") == hidden


def test_instructor_messages_are_not_public():
    public = [*(REPO / "notebooks").glob("*.ipynb"), *(REPO / "lab_utils").rglob("*.py"), REPO / "docs" / "README.student.md"]
    for text, _ in _instructor_messages():
        for path in public:
            assert text not in path.read_text(encoding="utf-8"), (text, path)
