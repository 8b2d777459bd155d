#!/usr/bin/env python3
# prom_check.py FILE: checks Prometheus text exposition format (0.0.4)
# line by line: every sample's metric has a TYPE line before it, HELP
# and TYPE name the metric once, a metric's samples are one block, names
# and label names are valid, label values are correctly escaped
# strings, values are numbers. Prints what is wrong; exit 0 when valid.
import re
import sys

NAME = re.compile(r'[a-zA-Z_:][a-zA-Z0-9_:]*')
LNAME = re.compile(r'[a-zA-Z_][a-zA-Z0-9_]*')
TYPES = {'counter', 'gauge', 'histogram', 'summary', 'untyped'}


def labels(s, i, ln):
    """Parses '{k="v",...}' from s[i] == '{'; returns (dict, index)."""
    out = {}
    i += 1
    while True:
        if s[i] == '}':
            return out, i + 1
        m = LNAME.match(s, i)
        if not m:
            raise ValueError('line %d: bad label name' % ln)
        k = m.group(0)
        i = m.end()
        if s[i:i + 2] != '="':
            raise ValueError('line %d: label %s without ="' % (ln, k))
        i += 2
        v = []
        while s[i] != '"':
            if s[i] == '\\':
                if s[i + 1] not in '\\"n':
                    raise ValueError('line %d: bad escape \\%s' %
                                     (ln, s[i + 1]))
                v.append({'\\': '\\', '"': '"', 'n': '\n'}[s[i + 1]])
                i += 2
            elif s[i] == '\n':
                raise ValueError('line %d: newline in a label' % ln)
            else:
                v.append(s[i])
                i += 1
        i += 1
        if k in out:
            raise ValueError('line %d: label %s twice' % (ln, k))
        out[k] = ''.join(v)
        if s[i] == ',':
            i += 1
        elif s[i] != '}':
            raise ValueError('line %d: no , or } after a label' % ln)


def main():
    text = open(sys.argv[1], encoding='utf-8').read()
    if text and not text.endswith('\n'):
        print('the last line has no newline')
        return 1
    types, helps, done, cur = {}, set(), set(), None
    samples = 0
    try:
        for ln, line in enumerate(text.split('\n')[:-1], 1):
            if line.startswith('# HELP ') or line.startswith('# TYPE '):
                kw, rest = line[2:6], line[7:]
                name = rest.split(' ', 1)[0]
                if not NAME.fullmatch(name):
                    raise ValueError('line %d: bad name %r' % (ln, name))
                if kw == 'TYPE':
                    t = rest[len(name) + 1:]
                    if t not in TYPES or name in types:
                        raise ValueError('line %d: bad or second TYPE' % ln)
                    if name in done:
                        raise ValueError('line %d: TYPE after samples' % ln)
                    types[name] = t
                else:
                    if name in helps:
                        raise ValueError('line %d: second HELP' % ln)
                    helps.add(name)
                continue
            if line.startswith('#') or line == '':
                continue
            m = NAME.match(line)
            if not m:
                raise ValueError('line %d: no metric name' % ln)
            name, i = m.group(0), m.end()
            lab = {}
            if i < len(line) and line[i] == '{':
                lab, i = labels(line + '\n', i, ln)
            if line[i:i + 1] != ' ':
                raise ValueError('line %d: no space before the value' % ln)
            parts = line[i + 1:].split(' ')
            float(parts[0])
            if len(parts) > 2:
                raise ValueError('line %d: extra fields' % ln)
            if name not in types:
                raise ValueError('line %d: %s has no TYPE' % (ln, name))
            if cur != name:
                if name in done:
                    raise ValueError('line %d: %s split in two blocks' %
                                     (ln, name))
                if cur:
                    done.add(cur)
                cur = name
            samples += 1
            if 'store' not in lab:
                raise ValueError('line %d: no store label' % ln)
    except (ValueError, IndexError) as e:
        print(e)
        return 1
    if not samples:
        print('no samples')
        return 1
    return 0


sys.exit(main())
