"""docs/testing.md, run: its files become a throwaway project whose suites must all pass.

Every ```python block of the page starts with ``# path/of/the/file.py``; the
blocks are written to those paths in a project made as in
:mod:`tests.testing_support.test_user_project` (its settings, ``manage.py`` and
app configuration), then the project runs pytest (pytest-django, the plugin
from the entry point) and ``manage.py test``, in subprocesses. Every test the
page shows must pass, and each is counted, so a block that stops being run is
caught.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from .test_user_project import (
    APP,
    MANAGE,
    PYTEST_INI,
    SETTINGS,
    environment,
    junit_outcomes,
    run,
    write,
)

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "testing.md"


def page_files() -> dict[str, str]:
    """Return the page's blocks by the path their first line names."""
    files = {}
    for block in re.findall(r"```python\n(.*?)```", PAGE.read_text(encoding="utf-8"), re.S):
        first, _, _ = block.partition("\n")
        assert first.startswith("# ") and first.endswith(".py"), first
        files[first[2:]] = block
    return files


def defined_tests(source: str) -> list[str]:
    """Return the test functions and methods a file defines."""
    return [
        node.name
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")
    ]


def test_the_pages_files_pass_with_pytest_and_manage_py_test(tmp_path: Path) -> None:
    """pytest runs the page's tests/ files, manage.py test its signup/tests.py: all pass."""
    files = page_files()
    assert {"signup/receivers.py", "signup/mail.py", "signup/tests.py"} <= set(files)
    pytest_files = {path: text for path, text in files.items() if path.startswith("tests/")}
    assert len(pytest_files) >= 3
    root = tmp_path / "shop"
    write(
        root,
        {
            "manage.py": MANAGE,
            "pytest.ini": PYTEST_INI,
            "shop/__init__.py": "",
            "shop/settings.py": SETTINGS,
            "signup/__init__.py": "",
            "signup/apps.py": APP,
            **files,
        },
    )

    report = root / "report.xml"
    done = run(["-m", "pytest", "-rA", f"--junitxml={report}"], root, environment())
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    expected = {name for text in pytest_files.values() for name in defined_tests(text)}
    assert len(expected) >= 6
    assert junit_outcomes(report) == dict.fromkeys(expected, "passed"), output

    done = run(["manage.py", "test", "signup", "-v", "2"], root, environment())
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    for name in defined_tests(files["signup/tests.py"]):
        assert re.search(rf"^{name} \(.*\) \.\.\. ok$", output, re.M), (name, output)


def test_the_readme_shows_a_test_the_page_runs() -> None:
    """The README's test example (a ```py block, not run there) is one of the page's tests."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("### Testing your project", 1)[1].split("\n### ", 1)[0]
    (example,) = re.findall(r"```py\n(.*?)```", section, re.S)
    assert "def test_" in example
    assert example in page_files()["tests/test_welcome.py"]
