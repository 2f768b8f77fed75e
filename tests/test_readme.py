"""The README's Python example runs as written."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_example_runs():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "README has no python example"
    scope: dict = {}
    exec(compile(blocks[0], "README.md", "exec"), scope)  # noqa: S102 - the README is ours
    assert scope["out"].shape == (8, 3, 224, 224)
    assert scope["batch"].shape == (8, 3, 224, 224)


def test_readme_links_exist():
    text = README.read_text()
    for link in re.findall(r"\]\((docs/[^)#]+)\)", text):
        assert (README.parent / link).exists(), f"README links to missing {link}"
