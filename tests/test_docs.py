"""The README's and docs' pointers resolve: relative links to files that exist, anchors to their headings."""

import glob
import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGES = [os.path.join(ROOT, "README.md")] + sorted(glob.glob(os.path.join(ROOT, "docs", "*.md")))
_LINK = re.compile(r"\]\(([^)\s]+)\)")
_FENCE = re.compile(r"^```.*?^```", re.S | re.M)


def github_anchor(heading):
    """The anchor GitHub gives a Markdown heading."""
    text = re.sub(r"[`*]|\[([^\]]*)\]\([^)]*\)", lambda m: m.group(1) or "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path):
    with open(path, encoding="utf-8") as f:
        text = _FENCE.sub("", f.read())
    return {github_anchor(line.lstrip("#")) for line in text.splitlines() if re.match(r"#{1,6} ", line)}


def links(path):
    with open(path, encoding="utf-8") as f:
        text = _FENCE.sub("", f.read())
    return [target for target in _LINK.findall(text) if not re.match(r"[a-z]+:", target)]


def test_the_anchor_is_githubs():
    assert github_anchor("Memory: your own large images") == "memory-your-own-large-images"
    assert github_anchor("The `svhn_reader` preset (k=192)") == "the-svhn_reader-preset-k192"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: os.path.relpath(p, ROOT))
def test_every_relative_link_and_anchor_resolves(page):
    broken = []
    for target in links(page):
        file, _, anchor = target.partition("#")
        path = os.path.normpath(os.path.join(os.path.dirname(page), file)) if file else page
        if not os.path.exists(path):
            broken.append(target)
        elif anchor and path.endswith(".md") and anchor not in anchors(path):
            broken.append(target)
    assert not broken, f"{os.path.relpath(page, ROOT)}: links that do not resolve: {broken}"
