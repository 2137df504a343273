"""The repository stands alone and its cross-references resolve.

- No tracked file reads or names a folder beside the checkout (a user's clone has none).
- Every docs/ Markdown file a tracked file cites exists, and every design-notes section it cites
  (§N) has a heading `## §N ...` there.
"""
import os
import re
import subprocess

REPO = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
SIBLING = ".." + "/shared"  # spelled in two parts so that this file does not match itself
DOC_REF = re.compile(r"docs/([A-Za-z0-9_.-]+\.md)(?:\s*§(\d+))?")


def tracked_text_files():
    out = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, check=True, capture_output=True).stdout
    for rel in out.decode().split("\0"):
        if not rel or rel.endswith((".zst", ".png", ".so")):
            continue
        try:
            with open(os.path.join(REPO, rel), encoding="utf-8") as f:
                yield rel, f.read()
        except (UnicodeDecodeError, FileNotFoundError):
            continue


def test_no_tracked_file_names_a_sibling_folder():
    hits = [rel for rel, text in tracked_text_files() if SIBLING in text]
    assert hits == [], f"tracked files name {SIBLING}: {hits}"


def test_doc_references_resolve():
    sections = {}
    broken = []
    for rel, text in tracked_text_files():
        for m in DOC_REF.finditer(text):
            name, sec = m.group(1), m.group(2)
            path = os.path.join(REPO, "docs", name)
            if not os.path.exists(path):
                broken.append(f"{rel}: docs/{name} does not exist")
                continue
            if sec is None:
                continue
            if name not in sections:
                with open(path, encoding="utf-8") as f:
                    sections[name] = set(re.findall(r"^#+\s*§(\d+)\b", f.read(), flags=re.M))
            if sec not in sections[name]:
                broken.append(f"{rel}: docs/{name} §{sec} has no such section {sorted(sections[name])}")
    assert broken == [], "\n".join(broken)
