#!/usr/bin/env python3
"""gen_proto_corpus.py DIR: writes the seed corpus of fuzz-proto
(fuzz_proto.c): whole agent sessions of every message type (ok-*), and
one input for each way a session is stopped (bad-*, the reason after
the second dash: proto_replay.c checks it). An input opens with the
store's part (fuzz_proto.h): a length byte, then one byte for each
decision the store makes, in turn (AUTH: 1 refuses; BEGIN: three bytes,
flags then counts then limits; ADD in a session: 1 refuses); none is a
store that says yes to everything."""
import os
import struct
import sys

HELLO, AUTH, BEGIN, ADD, DATA, ZERO, RESIZE, COMMIT, ABORT, RPS, DIGESTS, \
    RPSV, ADDV, AUTH_SIG = range(1, 15)

YES = b'\x00' * 3                  # BEGIN: served at once
REMOVED, CANNOT, STOPPING = 1, 2, 4  # BEGIN's flags


def seed(frames, store=b''):
    return bytes([len(store)]) + store + frames


def frame(t, p=b''):
    return struct.pack('<IBBH', len(p), t, 0, 0) + p


def hello(name=b'agent1', ver=1):
    return frame(HELLO, b'BVAULTP1' + struct.pack('<HB', ver, len(name)) +
                 name)


def login(sig=False):
    return hello() + frame(AUTH_SIG if sig else AUTH,
                           b'\x5a' * (64 if sig else 32))


def name(n):
    return bytes([len(n)]) + n


def add(n, base=0, size=1 << 30):
    return frame(ADD, struct.pack('<QQ', base, size) + name(n))


def addv(n, base=0, size=1 << 30, ids=bytes(32)):
    return frame(ADDV, struct.pack('<QQ', base, size) + ids + name(n))


def session(slots=1, body=b''):
    out = frame(BEGIN)
    for i in range(slots):
        out += add(b'vm%d' % i)
    return out + body


def data(slot, off, n):
    return frame(DATA, struct.pack('<IQ', slot, off) + bytes([0xa5]) * n)


def zero(slot, off, n):
    return frame(ZERO, struct.pack('<IQQ', slot, off, n))


def resize(slot, size):
    return frame(RESIZE, struct.pack('<IQ', slot, size))


def commit(label=b'nightly', make=1, cons=0, when=0, number=None):
    p = struct.pack('<BBq', make, cons, when) + name(label)
    return frame(COMMIT, p + (struct.pack('<Q', number) if number else b''))


def rps(n):
    return frame(RPS, name(n))


def rpsv(n, first=1):
    return frame(RPSV, struct.pack('<Q', first) + name(n))


def digests(n, rp=0, first=0, count=1024):
    return frame(DIGESTS, struct.pack('<QQI', rp, first, count) + name(n))


SEEDS = {
    'ok-login-secret': seed(login()),
    'ok-login-key': seed(login(sig=True)),
    'ok-full-backup': seed(login() + session(1, data(0, 0, 65536) +
                                             data(0, 65536, 4096) +
                                             zero(0, 1 << 20, 1 << 20)) +
                           commit()),
    'ok-two-disks': seed(login(sig=True) +
                         session(2, data(0, 0, 512) + data(1, 0, 512) +
                                 resize(1, 1 << 30)) + commit(b'')),
    'ok-abort': seed(login() + session(1, data(0, 0, 100)) + frame(ABORT)),
    'ok-queries': seed(login() + rps(b'vm0') + rps(b'g' * 63) +
                       digests(b'vm0') + digests(b'vm0', 7, 1 << 40, 65536) +
                       rpsv(b'g') + rpsv(b'vm0', 0)),
    'ok-push': seed(login() + frame(BEGIN) +
                    addv(b'vm0', 3, 1 << 20, bytes(range(32))) +
                    data(0, 0, 4096) + commit(number=4, when=1700000000) +
                    session(1, zero(0, 0, 4096)) + commit(b'x' * 127, 1, 1)),
    'ok-second-begin': seed(login() + session(1) + frame(BEGIN) +
                            data(0, 0, 1) + commit()),
    # The store: the BEGIN waits (1 session open of 1, 1 of the agent's
    # of 1), is served later.
    'ok-begin-waits': seed(login() + session(1, data(0, 0, 512)) + commit(),
                           b'\x00' + b'\x00\x11\x00'),
    'ok-begin-stopping': seed(login() + frame(BEGIN) + rps(b'vm0') +
                              frame(BEGIN) + add(b'vm0') + commit(),
                              b'\x00' + bytes([STOPPING, 0, 0]) + YES + b'\x00'),
    # The engine cannot open the session: ADD and COMMIT outside one are
    # answered ERROR invalid, the connection goes on.
    'ok-begin-fails': seed(login() + frame(BEGIN) + add(b'vm0') + commit() +
                           frame(ABORT) + rps(b'vm0'),
                           b'\x00' + bytes([CANNOT, 0, 0])),
    # The first ADD is refused (denied, base), the second granted slot 0.
    'ok-add-refused': seed(login() + frame(BEGIN) + add(b'vm0', 5) +
                           add(b'vm1') + data(0, 0, 512) + commit(),
                           b'\x00' + YES + b'\x01\x00'),
    # COMMITs refused for their fields (ERROR invalid): the session is
    # aborted, the connection goes on.
    'ok-commit-refused': seed(login() + session(1) + commit(when=-1) +
                              session(1) + commit(when=253402300800) +
                              session(1) + commit(make=0, number=9) +
                              session(1) + commit(when=253402300799)),
    'bad-header-flags': seed(frame(HELLO)[:5] + b'\x01\x00\x00'),
    'bad-big-hello': seed(struct.pack('<IBBH', 513, HELLO, 0, 0) +
                          bytes(513)),
    'bad-order-auth-first': seed(frame(AUTH, bytes(32))),
    'bad-early-begin': seed(hello() + frame(BEGIN)),
    'bad-hello-magic': seed(frame(HELLO, b'BVAULTP2' + b'\x01\x00\x01a')),
    'bad-hello-noname': seed(frame(HELLO, b'BVAULTP1' + b'\x01\x00\x00')),
    'bad-hello-nul': seed(frame(HELLO, b'BVAULTP1' +
                                b'\x01\x00\x06agent\x00')),
    'bad-version-2': seed(hello(ver=2)),
    'bad-auth-wrong': seed(login(), b'\x01'),
    'bad-auth-key': seed(login(sig=True), b'\x01'),
    'bad-proof-short': seed(hello() + frame(AUTH, bytes(31))),
    'bad-sig-long': seed(hello() + frame(AUTH_SIG, bytes(65))),
    'bad-type-0x7f': seed(login() + frame(0x7f)),
    'bad-removed-begin': seed(login() + frame(BEGIN),
                              b'\x00' + bytes([REMOVED, 0, 0])),
    'bad-begin-payload': seed(login() + frame(BEGIN, b'\x01')),
    'bad-add-noname': seed(login() + frame(BEGIN) +
                           frame(ADD, bytes(16) + b'\x00')),
    'bad-add-long': seed(login() + frame(BEGIN) + add(b'v' * 64)),
    'bad-add-trailing': seed(login() + frame(BEGIN) +
                             frame(ADD, bytes(16) + name(b'vm0') + b'\x00')),
    'bad-addv-short': seed(login() + frame(BEGIN) +
                           frame(ADDV, bytes(16 + 31) + name(b'vm0'))),
    'bad-commit-rp2': seed(login() + session(1) + commit(make=2)),
    'bad-commit-app2': seed(login() + session(1) + commit(cons=2)),
    'bad-commit-label128': seed(login() + session(1) + commit(b'y' * 128)),
    'bad-commit-trailing': seed(login() + session(1) +
                                frame(COMMIT, bytes(11) + bytes(4))),
    'bad-label-nul': seed(login() + session(1) + commit(b'night\x00ly')),
    'bad-abort-payload': seed(login() + session(1) + frame(ABORT, b'\x00')),
    'bad-rps-trailing': seed(login() + frame(RPS, name(b'vm0') + b'!')),
    'bad-rpsv-short': seed(login() + frame(RPSV, bytes(7) + name(b'vm0'))),
    'bad-digests-zero': seed(login() + digests(b'vm0', count=0)),
    'bad-digests-many': seed(login() + digests(b'vm0', count=65537)),
    'bad-change-short': seed(login() + session(1, frame(DATA, bytes(12)))),
    'bad-change-zero-long': seed(login() +
                                 session(1, frame(ZERO, bytes(21)))),
    'bad-outside-data': seed(login() + data(0, 0, 16)),
    'bad-slot-7': seed(login() + session(1, data(7, 0, 16))),
    'bad-slot-refused': seed(login() + session(1, data(0, 0, 16)),
                             b'\x00' + YES + b'\x01'),
}


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    for n, b in SEEDS.items():
        with open(os.path.join(out, n), 'wb') as f:
            f.write(b)


main()
