"""The user-facing docs: links resolve, and facts that drift are not stated as numbers."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
LINK = re.compile(r"\]\(([^)#\s]+)")


def test_relative_links_and_images_resolve():
    broken = []
    for doc in DOCS:
        for target in LINK.findall(doc.read_text()):
            if target.startswith(("http://", "https://", "mailto:")):
                continue
            if not (doc.parent / target).exists():
                broken.append(f"{doc.relative_to(ROOT)} -> {target}")
    assert not broken, broken


def test_no_stale_dependency_or_count_claims():
    usage = (ROOT / "docs" / "usage.md").read_text()
    architecture = (ROOT / "docs" / "architecture.md").read_text()
    requires = (ROOT / "setup.cfg").read_text().split("[options.extras_require]")[0]
    assert "dp-accounting" in requires and "scipy" in requires
    assert "`dp-accounting` is a test" not in usage  # it is an install requirement
    assert "would add scikit-learn and SciPy" not in usage  # SciPy is required already
    assert not re.search(r"\b\d+ tests\b", architecture)  # a hard count goes stale with every test
    assert "DESIGN.md" not in architecture  # not a file of the repository


def test_readme_explains_the_guide_and_saferlearn_normalization():
    readme = (ROOT / "README.md").read_text()
    first = readme.index("the guide")
    assert '"the guide"' in readme[first : first + 200]
    assert "--normalization half" in readme
