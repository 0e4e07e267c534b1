#!/usr/bin/env python3
"""Lists the top-level imports of WebAssembly components, and checks them.

    scripts/component-imports.py FILE...              print each file's imports
    scripts/component-imports.py --allow PREFIX... -- FILE...
                                                     fail unless every import starts with a PREFIX

Type imports (a world's `use iface.{t}`) name no capability and are always allowed.

Only the component's own import section is read (standard library only, no
wasm tooling needed), so WASI imports pulled in by a language runtime show up
here exactly as the host's linker would see them.
"""

import sys


def leb(data, pos):
    result = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return result, pos


def name(data, pos):
    size, pos = leb(data, pos)
    return data[pos : pos + size].decode("utf-8"), pos + size


def imports(path):
    """The component's imports as (name, is a type import) pairs."""
    data = open(path, "rb").read()
    if data[:4] != b"\0asm" or data[4:8] != b"\x0d\x00\x01\x00":
        raise ValueError(f"{path}: not a WebAssembly component")
    pos, found = 8, []
    while pos < len(data):
        section, pos = data[pos], pos + 1
        size, pos = leb(data, pos)
        end = pos + size
        if section == 10:  # component import section
            count, p = leb(data, pos)
            for _ in range(count):
                tag, p = data[p], p + 1
                if tag not in (0x00, 0x01):
                    raise ValueError(f"{path}: unknown import name form {tag:#x}")
                import_name, p = name(data, p)
                if tag == 0x01:  # legacy form with a version suffix
                    _, p = name(data, p)
                kind, p = data[p], p + 1
                if kind == 0x00:  # core module: 0x11 typeidx
                    p += 1
                    _, p = leb(data, p)
                elif kind in (0x02, 0x03):  # value / type bound
                    _, p = data[p], p + 1
                    _, p = leb(data, p)
                else:  # func, component, instance: typeidx
                    _, p = leb(data, p)
                found.append((import_name, kind == 0x03))
        pos = end
    return found


def main(argv):
    allow = None
    if argv[:1] == ["--allow"]:
        split = argv.index("--")
        allow, argv = argv[1:split], argv[split + 1 :]
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    bad = False
    for path in argv:
        try:
            found = imports(path)
        except (OSError, ValueError, IndexError) as e:
            print(f"{path}: cannot read the imports: {e}", file=sys.stderr)
            bad = True
            continue
        names = [n for n, is_type in found if not is_type]
        types = [n for n, is_type in found if is_type]
        shown = ", ".join(names) if names else "nothing"
        if types:
            shown += f" (and the types {', '.join(types)})"
        print(f"{path}: imports {shown}")
        if allow is not None:
            for n in names:
                if not any(n.startswith(a) for a in allow):
                    print(f"{path}: unexpected import {n}", file=sys.stderr)
                    bad = True
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
