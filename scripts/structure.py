#!/usr/bin/env python3
"""How the source is laid out, in figures anyone can recompute.

    python3 scripts/structure.py            # long functions and backward imports
    python3 scripts/structure.py --list     # ... naming each long function

Two measures:

- functions longer than 60 and 80 lines (signature to closing brace), in
  `src/` and in `src/commands/`, outside `#[cfg(test)]` modules;
- imports that run back up: a module `crate::A` naming `crate::B` where B
  stands after A in the order below (the order `src/lib.rs` states). Test
  modules count too: a test that needs a later module belongs with it.

The duplicate pairs are the third measure of the layout; any duplicate
finder over `src/` gives them (the README's "Layout" names the one used).
"""
import os
import re
import sys

# The import order: a module may name only modules before it. Leaf utilities
# first, then the flow of data, then the entry points.
ORDER = [
    "failpoint", "signals", "ui", "io", "lock", "staging", "device", "cxx",
    "data", "models", "config", "fetch", "run_folder", "train", "nave",
    "localize", "detect", "audit", "revise", "report", "bench", "slurm", "status", "cli", "commands",
    "main", "lib",
]
# Macros exported at the crate root (`crate::info!`), not modules.
MACROS = {"info", "warn", "detail", "debug"}

FN = re.compile(r"^\s*(pub(\([^)]*\))?\s+)?(const\s+)?(async\s+)?(unsafe\s+)?(extern\s+\"C\"\s+)?fn\s+(\w+)")
TEST_MOD = re.compile(r"^\s*#\[cfg\(test\)\]")


def strip_code(text):
    """The text with comments, strings and char literals blanked (same
    length, newlines kept), so that braces can be counted."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i))
            i = j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        elif c == "r" and re.match(r'r#*"', text[i:i + 8]) and not (i > 0 and (text[i - 1].isalnum() or text[i - 1] == "_")):
            hashes = re.match(r'r(#*)"', text[i:]).group(1)
            end = '"' + hashes
            j = text.find(end, i + 2 + len(hashes))
            j = n if j < 0 else j + len(end)
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            j = min(j + 1, n)
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        elif c == "'":
            # A char literal ('a', '\n', '{') or a lifetime ('a): only the
            # former closes within a few characters.
            m = re.match(r"'(\\.|[^\\'])'|'\\u\{[0-9a-fA-F]+\}'|'\\x[0-9a-fA-F]{2}'", text[i:i + 12])
            if m:
                out.append(" " * len(m.group(0)))
                i += len(m.group(0))
            else:
                out.append(c)
                i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def block_end(code, start):
    """The index just past the brace block that opens at or after `start`,
    or None when a `;` comes first (a declaration without a body)."""
    depth = 0
    for i in range(start, len(code)):
        c = code[i]
        if c == ";" and depth == 0:
            return None
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return i + 1
    return None


def test_spans(code):
    """Line ranges (0-based, inclusive) of `#[cfg(test)]` items."""
    lines = code.split("\n")
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line) + 1)
    spans = []
    for no, line in enumerate(lines):
        if TEST_MOD.match(line):
            end = block_end(code, offsets[no + 1])
            if end is not None:
                spans.append((no, code.count("\n", 0, end)))
    return spans


def functions(path):
    text = open(path, encoding="utf-8").read()
    code = strip_code(text)
    lines = code.split("\n")
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line) + 1)
    tests = test_spans(code)
    for no, line in enumerate(lines):
        m = FN.match(line)
        if not m:
            continue
        end = block_end(code, offsets[no] + m.end())
        if end is None:
            continue
        last = code.count("\n", 0, end)
        in_test = any(a <= no <= b for a, b in tests)
        yield m.group(7), no + 1, last - no + 1, in_test


def module_of(path):
    rel = os.path.relpath(path, "src")
    return rel.split(os.sep)[0].removesuffix(".rs")


def rust_files(root):
    for dirpath, _, files in os.walk(root):
        for f in sorted(files):
            if f.endswith(".rs"):
                yield os.path.join(dirpath, f)


def main():
    listing = "--list" in sys.argv
    rows = []
    backward = []
    for path in sorted(rust_files("src")):
        for name, line, length, in_test in functions(path):
            if not in_test:
                rows.append((path, name, line, length))
        module = module_of(path)
        rank = ORDER.index(module) if module in ORDER else None
        code = strip_code(open(path, encoding="utf-8").read())
        for no, text in enumerate(code.split("\n"), 1):
            for target in re.findall(r"crate::(\w+)", text):
                if target in MACROS or target == module:
                    continue
                if target not in ORDER or rank is None:
                    backward.append((path, no, module, target, "not in the stated order"))
                elif ORDER.index(target) > rank:
                    backward.append((path, no, module, target, "further along"))
    for limit in (60, 80):
        for scope in ("src", "src/commands"):
            over = [r for r in rows if r[3] > limit and r[0].startswith(scope + "/")]
            print(f"functions over {limit} lines in {scope}/: {len(over)}")
            if listing:
                for path, name, line, length in sorted(over, key=lambda r: -r[3]):
                    print(f"    {length:4} {path}:{line} {name}")
    print(f"imports running back up the order: {len(backward)}")
    for path, no, module, target, why in backward:
        print(f"    {path}:{no}: {module} -> {target} ({why})")
    print("order: " + " -> ".join(ORDER[:-2]))


if __name__ == "__main__":
    main()
