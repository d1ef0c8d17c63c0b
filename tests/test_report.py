"""report.confusion_report: counts, accuracy and the table's layout."""
import numpy as np

from tinygrad_nlp import report


def test_confusion_report_counts_and_accuracy():
    text, accuracy = report.confusion_report(np.array([0, 0, 1, 1, 1]), np.array([0, 1, 1, 1, 0]),
                                             ["negative", "positive"])
    assert accuracy == 0.6
    lines = text.splitlines()
    assert lines[0] == "rows: true class, columns: predicted class"
    assert lines[2].split() == ["negative", "1", "1"] and lines[3].split() == ["positive", "1", "2"]
    assert lines[-1] == "accuracy 0.6000"
