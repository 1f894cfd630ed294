#!/usr/bin/env python3
"""Writes text/clean_tables.h, the tables of text/clean.c, from the
references themselves: ftfy's per-character fixers (C1 controls read as
windows-1252, Latin ligatures, full-width forms, curly quotes; the control
characters it removes; its HTML entity table), Python's html.unescape
(html.entities.html5 and its invalid character references) and Python's
whitespace. Run it with the ftfy open_clip_torch installs (6.3):

    python3 text/gen_clean.py > text/clean_tables.h
"""
import html
import html.entities
import sys

import ftfy
from ftfy import fixes
from ftfy.chardata import CONTROL_CHARS, HTML_ENTITIES, LIGATURES, WIDTH_MAP


def cstr(s):
    """A C string literal; a hex digit after an escape is escaped too, so
    that it does not extend it."""
    out, esc = '"', False
    for b in s.encode("utf-8"):
        esc = (b < 0x20 or b >= 0x7f or chr(b) in '"\\?' or
               (esc and chr(b) in "0123456789abcdefABCDEF"))
        out += "\\x%02x" % b if esc else chr(b)
    return out + '"'


def ranges(codes):
    """Sorted [first, last] runs of consecutive code points."""
    out = []
    for c in sorted(codes):
        if out and out[-1][1] == c - 1:
            out[-1][1] = c
        else:
            out.append([c, c])
    return out


def main():
    w = sys.stdout.write
    w("/* Made by text/gen_clean.py from ftfy %s and Python %s's html "
      "module;\n * do not edit. */\n" % (ftfy.__version__,
                                         sys.version.split()[0]))
    # The per-character fixers, in ftfy's order, composed.
    keys = set(range(0x80, 0xA0)) | {0x2BC} | set(range(0x2018, 0x2020))
    keys |= set(LIGATURES) | set(WIDTH_MAP)
    rows = []
    for c in sorted(keys):
        s = chr(c)
        t = fixes.uncurl_quotes(fixes.fix_character_width(
            fixes.fix_latin_ligatures(fixes.fix_c1_controls(s))))
        if t != s:
            rows.append((c, t))
    w("static const struct {\n    uint32_t cp;\n    const char *to;\n} "
      "clean_chars[] = {\n")
    for c, t in rows:
        w("    {0x%x, %s},\n" % (c, cstr(t)))
    w("};\n\n")
    # Removed characters, as ranges.
    w("static const uint32_t clean_controls[][2] = {\n")
    for a, b in ranges(CONTROL_CHARS):
        w("    {0x%x, 0x%x},\n" % (a, b))
    w("};\n\n")
    w("typedef struct {\n    const char *name, *to;\n} clean_entity;\n\n")
    w("/* ftfy's entities, with their '&' and ';'. */\n")
    w("static const clean_entity ftfy_entities[] = {\n")
    for k in sorted(HTML_ENTITIES, key=lambda k: k.encode()):
        w("    {%s, %s},\n" % (cstr(k), cstr(HTML_ENTITIES[k])))
    w("};\n\n")
    w("/* html.entities.html5: names without '&', some with ';'. */\n")
    w("static const clean_entity html5_entities[] = {\n")
    for k in sorted(html.entities.html5, key=lambda k: k.encode()):
        w("    {%s, %s},\n" % (cstr(k), cstr(html.entities.html5[k])))
    w("};\n\n")
    w("static const struct {\n    uint32_t num;\n    const char *to;\n} "
      "html_invalid_refs[] = {\n")
    for k in sorted(html._invalid_charrefs):
        w("    {0x%x, %s},\n" % (k, cstr(html._invalid_charrefs[k])))
    w("};\n\n")
    w("static const uint32_t html_invalid_cps[][2] = {\n")
    for a, b in ranges(html._invalid_codepoints):
        w("    {0x%x, 0x%x},\n" % (a, b))
    w("};\n\n")
    sp = [c for c in range(0x110000) if chr(c).isspace()]
    w("/* Python's str.isspace. */\nstatic const uint32_t py_spaces[] = {\n")
    for i in range(0, len(sp), 8):
        w("    " + ", ".join("0x%x" % c for c in sp[i:i + 8]) + ",\n")
    w("};\n")


if __name__ == "__main__":
    main()
