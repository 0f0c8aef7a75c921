"""The README's Python example runs as written (as the engine's README examples run as doctests)."""

import contextlib
import io
import re

from conftest import REPO


def test_readme_python_examples_run():
    readme = (REPO / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.S)
    assert blocks, "README has no ```python block"
    for block in blocks:
        with contextlib.redirect_stdout(io.StringIO()):  # its asserts are the checks
            exec(compile(block, "README.md", "exec"), {})
