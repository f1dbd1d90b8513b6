"""Reading the Dockerfile and .dockerignore without a Docker engine (tests/test_container.py).

``instructions(path)``: the Dockerfile's instructions as (stage, keyword, text), continuation lines joined, with
the ARG defaults before the first FROM substituted into FROM lines. ``ignored(rel, patterns)``: whether
.dockerignore leaves a path out of the build context, as Docker reads it (patterns in order, the last match
wins, ``!`` brings back, a pattern matching a parent folder covers what is inside, ``*`` stays inside one
folder, ``**`` crosses folders). ``stage_context(repo, dest)``: the build context Docker would send.
"""

import json
import os
import re
import shlex
import shutil


def instructions(path):
    with open(path, encoding="utf-8") as handle:
        lines = handle.read().splitlines()
    joined, current = [], ""
    for line in lines:
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1].rstrip() + " "
            continue
        joined.append(current + stripped)
        current = ""
    args, out, stage = {}, [], None
    for text in joined:
        keyword, _, rest = text.partition(" ")
        keyword = keyword.upper()
        rest = rest.strip()
        if keyword == "ARG" and stage is None:
            name, _, default = rest.partition("=")
            args[name] = default
            continue
        if keyword == "FROM":
            rest = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], rest)
            words = rest.split()
            stage = words[2] if len(words) == 3 and words[1].upper() == "AS" else str(len(out))
        out.append((stage, keyword, rest))
    return out


def exec_form(text):
    """The JSON array of an exec-form CMD (or HEALTHCHECK's CMD)."""
    return json.loads(text[text.index("[") :])


def copy_sources(text):
    """(--from stage or None, sources, destination) of a COPY."""
    words = shlex.split(text)
    source_stage = None
    while words[0].startswith("--"):
        flag = words.pop(0)
        if flag.startswith("--from="):
            source_stage = flag.split("=", 1)[1]
    return source_stage, words[:-1], words[-1]


def _regex(pattern):
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out + r"\Z")


def patterns(path):
    with open(path, encoding="utf-8") as handle:
        lines = [line.strip() for line in handle]
    out = []
    for line in lines:
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        raw = os.path.normpath(line.lstrip("!")).lstrip("/")
        out.append((negated, _regex(raw), raw))
    return out


def ignored(rel, rules):
    parts = rel.split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    excluded = False
    for negated, regex, _ in rules:
        if any(regex.match(p) for p in prefixes):
            excluded = not negated
    return excluded


def _may_bring_back(rel_dir, rules):
    """Whether a ``!`` pattern could match something inside the folder ``rel_dir``."""
    parts = rel_dir.split("/")
    for negated, _, raw in rules:
        head = raw.split("/")[: len(parts)]
        if negated and len(raw.split("/")) > len(parts) and ("**" in raw or _regex("/".join(head)).match(rel_dir)):
            return True
    return False


def stage_context(repo, dest, rules):
    """Copy the files of ``repo`` that .dockerignore keeps (untracked build outputs aside) to ``dest``."""
    kept = []
    for folder, dirs, files in os.walk(repo):
        rel_folder = os.path.relpath(folder, repo)
        dirs[:] = [
            d for d in dirs if not ignored(_join(rel_folder, d), rules) or _may_bring_back(_join(rel_folder, d), rules)
        ]
        for name in files:
            rel = _join(rel_folder, name)
            if ignored(rel, rules):
                continue
            os.makedirs(os.path.join(dest, os.path.dirname(rel)), exist_ok=True)
            shutil.copy2(os.path.join(repo, rel), os.path.join(dest, rel))
            kept.append(rel)
    return sorted(kept)


def _join(rel_folder, name):
    return name if rel_folder == "." else rel_folder + "/" + name
