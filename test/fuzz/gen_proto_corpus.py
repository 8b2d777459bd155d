#!/usr/bin/env python3
"""gen_proto_corpus.py DIR: writes the seed corpus of fuzz-proto
(fuzz_proto.c): whole agent sessions of every message type (ok-*), and
one input for each way a session is stopped (bad-*, the reason after
the second dash: proto_replay.c checks it). The outcomes the store
decides (AUTH good, BEGIN given a session, ADD accepted) are the first
payload byte's low bit in fuzz_proto.c, so the sound sessions set it."""
import os
import struct
import sys

HELLO, AUTH, BEGIN, ADD, DATA, ZERO, RESIZE, COMMIT, ABORT, RPS, DIGESTS, \
    RPSV, ADDV, AUTH_SIG = range(1, 15)


def frame(t, p=b''):
    return struct.pack('<IBBH', len(p), t, 0, 0) + p


def hello(name=b'agent1', ver=1):
    return frame(HELLO, b'BVAULTP1' + struct.pack('<HB', ver, len(name)) +
                 name)


def login(sig=False):
    proof = b'\x01' + bytes(63 if sig else 31)
    return hello() + frame(AUTH_SIG if sig else AUTH, proof)


def name(n):
    return bytes([len(n)]) + n


def session(slots=1, body=b''):
    out = frame(BEGIN, b'\x01' + bytes(3))
    for i in range(slots):
        out += frame(ADD, b'\x01' + name(b'vm%d' % i) + bytes(8))
    return out + body


def data(slot, off, n):
    return frame(DATA, struct.pack('<IQ', slot, off) + bytes([0xa5]) * n)


def zero(slot, off, n):
    return frame(ZERO, struct.pack('<IQQ', slot, off, n))


def resize(slot, size):
    return frame(RESIZE, struct.pack('<IQ', slot, size))


def commit(label=b'nightly'):
    return frame(COMMIT, b'\x01\x00' + struct.pack('<q', 0) + name(label))


SEEDS = {
    'ok-login-secret': login(),
    'ok-login-key': login(sig=True),
    'ok-full-backup': login() + session(1, data(0, 0, 65536) +
                                        data(0, 65536, 4096) +
                                        zero(0, 1 << 20, 1 << 20)) +
    commit(),
    'ok-two-disks': login(sig=True) + session(2, data(0, 0, 512) +
                                              data(1, 0, 512) +
                                              resize(1, 1 << 30)) +
    commit(b''),
    'ok-abort': login() + session(1, data(0, 0, 100)) + frame(ABORT),
    'ok-queries': login() + frame(RPS, b'\x01' + name(b'vm0')) +
    frame(DIGESTS, b'\x01' + name(b'vm0') + bytes(24)) +
    frame(RPSV, b'\x01' + name(b'g')),
    'ok-push': login() + frame(BEGIN, b'\x01' + bytes(3)) +
    frame(ADDV, b'\x01' + name(b'vm0') + bytes(40)) + data(0, 0, 4096) +
    commit() + session(1, zero(0, 0, 4096)) + commit(),
    'ok-second-begin': login() + session(1) + frame(BEGIN, b'\x01') +
    data(0, 0, 1) + commit(),
    'bad-header-flags': frame(HELLO)[:5] + b'\x01\x00\x00',
    'bad-big-hello': struct.pack('<IBBH', 513, HELLO, 0, 0) + bytes(513),
    'bad-order-auth-first': frame(AUTH, bytes(32)),
    'bad-hello-magic': frame(HELLO, b'BVAULTP2' + b'\x01\x00\x01a'),
    'bad-hello-noname': frame(HELLO, b'BVAULTP1' + b'\x01\x00\x00'),
    'bad-hello-nul': frame(HELLO, b'BVAULTP1' + b'\x01\x00\x06agent\x00'),
    'bad-auth-wrong': hello() + frame(AUTH, bytes(32)),
    'bad-type-0x7f': login() + frame(0x7f),
    'bad-change-short': login() + session(1, frame(DATA, bytes(12))),
    'bad-change-zero-long': login() + session(1, frame(ZERO, bytes(21))),
    'bad-outside-data': login() + data(0, 0, 16),
    'bad-slot-7': login() + session(1, data(7, 0, 16)),
}


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    for n, b in SEEDS.items():
        with open(os.path.join(out, n), 'wb') as f:
            f.write(b)


main()
