"""README's links, checked as GitHub renders them: a newcomer clicks the contents list and the figures' files.

Every `](#anchor)` must name a heading's anchor as GitHub makes it, every relative `](path)` a file of the project,
and the contents list near the top must link every `##` and `###` section, so a section added later is listed too.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).parents[1]
README = (ROOT / "README.md").read_text()
LINK = re.compile(r"\]\(([^)\s]+)\)")


def _prose(text: str) -> str:
    """The text outside code blocks: a `# 0. ...` comment in a bash block is not a heading."""
    return re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)


def _slug(heading: str) -> str:
    """GitHub's anchor of a heading: inline markup dropped, lower case, all but letters, digits, `_`, `-` and
    spaces removed, spaces made hyphens."""
    text = re.sub(r"[`*]|\[([^\]]*)\]\([^)]*\)", r"\1", heading).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _headings(text: str) -> list[tuple[int, str]]:
    """(level, anchor) of each heading, a repeated anchor numbered `-1`, `-2` as GitHub numbers it."""
    seen: dict[str, int] = {}
    found = []
    for hashes, title in re.findall(r"^(#{1,6}) +(.+?) *$", _prose(text), re.M):
        slug = _slug(title)
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        found.append((len(hashes), slug if count == 0 else f"{slug}-{count}"))
    return found


def _broken_links(text: str, root: Path) -> list[str]:
    """The links of `text` that lead nowhere: an anchor no heading has, a relative path with no file behind it."""
    anchors = {slug for _, slug in _headings(text)}
    broken = []
    for target in LINK.findall(_prose(text)):
        if target.startswith("#"):
            if target[1:] not in anchors:
                broken.append(target)
        elif not re.match(r"[a-z]+:", target) and not (root / target.split("#")[0]).exists():
            broken.append(target)
    return broken


def test_the_anchor_rule_is_githubs() -> None:
    """Anchors GitHub gives these headings (punctuation, code spans, `×` and a repeated title)."""
    text = ("## Two commands on a fresh machine\n### Regional volumes and linear baselines (`elr-mri volumes`, "
            "`evaluate --baselines`)\n#### 3D ×8 model: 2.25× TF32 fp32, against 3× aimed at\n## Results\n## Results\n")
    assert [slug for _, slug in _headings(text)] == [
        "two-commands-on-a-fresh-machine", "regional-volumes-and-linear-baselines-elr-mri-volumes-evaluate---baselines",
        "3d-8-model-225-tf32-fp32-against-3-aimed-at", "results", "results-1"]


def test_a_broken_anchor_or_missing_file_is_found() -> None:
    """The check below would fail on a README whose links lead nowhere (a renamed section, a moved figure)."""
    text = "## Training\n[ok](#training) [gone](#trainin) [fig](bench/no_such.png) [web](https://x.org) [me](README.md)\n"
    assert _broken_links(text, ROOT) == ["#trainin", "bench/no_such.png"]


def test_every_readme_link_resolves() -> None:
    assert _broken_links(README, ROOT) == []


def test_the_contents_list_links_every_section() -> None:
    """Near the top (before the first `##` section) README links each of its `##` and `###` sections."""
    top = README.split("\n## ", 1)[0]
    listed = {target[1:] for target in LINK.findall(top) if target.startswith("#")}
    sections = [slug for level, slug in _headings(README) if level in (2, 3)]
    assert [slug for slug in sections if slug not in listed] == []
