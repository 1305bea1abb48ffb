"""Multiple-choice questions test understanding, not option length.

A question lists its options in markdown as ``* **A.** text`` (A-F; a new question starts when the
letters restart at A, so one cell may hold several). The next answer cell sets
``ANSWER_<NAME> = "<letter>"`` between the solution markers, one line per question, in order. Checks:

* every question is well formed (at least three options, a graded answer among them);
* across the course the right option is the strictly longest one in at most a third of the
  questions (a student who always picks the longest option must not pass), and never in every
  question of a notebook that has several.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import nbformat
import pytest

from pipeline_utils import assignment_ids, nbgrader_meta, source_notebook

OPTION = re.compile(r"^\s*[*-]\s+\*\*([A-F])\.\*\*\s+(.+?)\s*$")
ANSWER = re.compile(r"^\s*(ANSWER_\w+)\s*=\s*[\"']([A-F])[\"']\s*$", re.M)


@dataclass
class Question:
    assignment: str
    variable: str
    options: dict[str, str]
    right: str

    @property
    def right_is_longest(self) -> bool:
        lengths = {k: len(re.sub(r"\s+", " ", v)) for k, v in self.options.items()}
        return all(lengths[self.right] > n for k, n in lengths.items() if k != self.right)


def _solution_region(source: str) -> str:
    m = re.search(r"### BEGIN SOLUTION\n(.*?)### END SOLUTION", source, re.S)
    return m.group(1) if m else ""


def _option_groups(markdown: str) -> list[dict[str, str]]:
    groups: list[dict[str, str]] = []
    for m in map(OPTION.match, markdown.splitlines()):
        if m:
            letter, text = m.groups()
            if letter == "A" or not groups:
                groups.append({})
            groups[-1][letter] = text
    return [g for g in groups if len(g) >= 2]


def questions(assignment: str) -> list[Question]:
    nb = nbformat.read(str(source_notebook(assignment)), as_version=4)
    found, pending = [], []
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            pending += _option_groups(cell.source)
        elif cell.cell_type == "code" and pending and nbgrader_meta(cell).get("solution"):
            answers = ANSWER.findall(_solution_region(cell.source))
            if answers:
                assert len(answers) == len(pending), (
                    f"{assignment}: {len(pending)} option lists before the answer cell "
                    f"{nbgrader_meta(cell).get('grade_id')!r}, which sets {len(answers)} answers")
                found += [Question(assignment, var, opts, letter) for opts, (var, letter) in zip(pending, answers)]
            pending = []
    return found


ALL = [q for a in assignment_ids() for q in questions(a)]


def test_there_are_multiple_choice_questions():
    assert len(ALL) >= 5, f"found only {len(ALL)} multiple-choice questions in the course (format: module docstring)"


@pytest.mark.parametrize("question", ALL, ids=lambda q: f"{q.assignment}:{q.variable}")
def test_question_is_well_formed(question):
    assert len(question.options) >= 3, f"{question.variable}: only options {sorted(question.options)}"
    assert question.right in question.options, (
        f"{question.variable}: the graded answer {question.right!r} is not among the options {sorted(question.options)}")


def test_right_option_is_not_systematically_the_longest():
    longest = [q for q in ALL if q.right_is_longest]
    assert 3 * len(longest) <= len(ALL), (
        f"the right option is the longest in {len(longest)} of {len(ALL)} questions (at most a third allowed): "
        + ", ".join(f"{q.assignment}:{q.variable}" for q in longest))
    for a in {q.assignment for q in ALL}:
        mine = [q for q in ALL if q.assignment == a]
        assert len(mine) < 2 or not all(q.right_is_longest for q in mine), (
            f"{a}: the right option is the longest in every question")
