"""The guide's links to lines of the code point at what they name, so a learner who follows
"Function.__call__" lands on it after the code moves (the fix: update the line number)."""
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[1]
GUIDE = ROOT / "docs" / "backward.md"
WORDS = {"links itself": "self.parents =", "accumulates": "def accumulate_grad", "releases": "def release"}


def test_every_line_link_lands_on_what_it_names():
    links = re.findall(r"\[([^\]]+)\]\(\.\./(tinygrad_nlp/[\w/]+\.py)#L(\d+)\)", GUIDE.read_text(encoding="utf-8"))
    assert links, "the guide links no line of the code"
    for text, path, line in links:
        code = (ROOT / path).read_text(encoding="utf-8").splitlines()[int(line) - 1]
        name = text.strip("`").replace("()", "")
        expected = WORDS.get(name) or f" {name.split('.')[-1]}("
        if expected.startswith(" ") and name[:1].isupper() and "." not in name:
            expected = f"class {name}"
        assert expected in code, f"docs/backward.md: [{text}]({path}#L{line}) lands on {code.strip()!r}"
