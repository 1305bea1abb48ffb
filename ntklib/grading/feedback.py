"""``HideHiddenTests``: the feedback step that never shows a hidden test (replaces nbgrader's ``ClearHiddenTests``).

nbgrader's ``ClearHiddenTests`` removes the hidden regions from the sources of test cells, but it
raises on a student's cell that merely contains a marker string (so the student gets no feedback)
and it never looks at outputs. This preprocessor:

* removes the ``BEGIN HIDDEN TESTS``/``END HIDDEN TESTS`` regions of the graded test cells (an
  unclosed region runs to the end of the cell);
* leaves every other cell's source as the student wrote it (markers included), except that any
  line equal to a line of a hidden test is replaced;
* replaces, in every output of every cell (streams, rich data, errors), each line that contains a
  line of a hidden test (lines of at least ``min_line`` characters, so that ``)`` or ``else:`` are
  not counted).

With the sandboxed checker the kernel never sees a hidden test, so this is a second line of defence.
"""
from __future__ import annotations

from nbgrader.preprocessors import NbGraderPreprocessor
from traitlets import Integer, Unicode

from .analysis import is_test_cell

__all__ = ["HideHiddenTests", "REDACTED"]

REDACTED = "[removed by the grader: a line of a hidden test]"


class HideHiddenTests(NbGraderPreprocessor):
    begin_test_delimeter = Unicode("BEGIN HIDDEN TESTS").tag(config=True)
    end_test_delimeter = Unicode("END HIDDEN TESTS").tag(config=True)
    min_line = Integer(8, help="Shorter hidden-test lines are not searched for in outputs.").tag(config=True)

    def _split(self, source: str) -> tuple[list[str], list[str]]:
        """(lines outside hidden regions, lines inside), delimiter lines dropped."""
        kept, hidden, inside = [], [], False
        for line in source.split("\n"):
            if self.begin_test_delimeter in line:
                inside = True
            elif self.end_test_delimeter in line:
                inside = False
            elif inside:
                hidden.append(line)
            else:
                kept.append(line)
        return kept, hidden

    def preprocess(self, nb, resources):
        hidden: set[str] = set()
        for cell in nb.cells:
            if is_test_cell(cell):
                kept, secret = self._split(cell.source)
                cell.source = "\n".join(kept)
                hidden |= {ln.strip() for ln in secret if len(ln.strip()) >= self.min_line}
        public = set()
        for cell in nb.cells:
            if is_test_cell(cell):
                public |= {ln.strip() for ln in cell.source.split("\n")}
        hidden -= public
        for cell in nb.cells:
            if not is_test_cell(cell):
                cell.source = "\n".join(REDACTED if ln.strip() in hidden else ln for ln in cell.source.split("\n"))
            for out in cell.get("outputs", []) or []:
                self._redact_output(out, hidden)
        if "celltoolbar" in nb.metadata:
            del nb.metadata["celltoolbar"]
        return nb, resources

    @staticmethod
    def _redact_text(text, hidden: set[str]):
        if isinstance(text, list):
            return [HideHiddenTests._redact_text(t, hidden) for t in text]
        if not isinstance(text, str) or not hidden:
            return text
        lines = text.split("\n")
        return "\n".join(REDACTED if any(h in ln for h in hidden) else ln for ln in lines)

    def _redact_output(self, out, hidden: set[str]) -> None:
        if "text" in out:
            out["text"] = self._redact_text(out["text"], hidden)
        if "data" in out:
            for mime in list(out["data"]):
                out["data"][mime] = self._redact_text(out["data"][mime], hidden)
        for key in ("evalue", "traceback"):
            if key in out:
                out[key] = self._redact_text(out[key], hidden)

    def preprocess_cell(self, cell, resources, index):  # pragma: no cover - preprocess does the work
        return cell, resources
