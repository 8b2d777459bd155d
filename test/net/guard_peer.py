#!/usr/bin/env python3
# guard_peer.py: hostile and hand-made peers of bvaultd for net_guard.sh.
# Usage: guard_peer.py SOCK MODE [ARGS...]; prints result lines that the
# test greps, "ready" (flushed) once the peers are in place, and for the
# modes that hold, waits until the file ARGS[-1] exists (or 60 s).
import hashlib, hmac, os, select, socket, struct, sys, time

SOCK, MODE, ARGS = sys.argv[1], sys.argv[2], sys.argv[3:]


def say(*a):
    print(*a, flush=True)


def frame(t, p=b''):
    return struct.pack('<IBBH', len(p), t, 0, 0) + p


def conn():
    s = socket.socket(socket.AF_UNIX)
    s.connect(SOCK)
    s.settimeout(30)
    return s


def answer(s):
    h = b''
    while len(h) < 8:
        d = s.recv(8 - len(h))
        if not d:
            return None, b''
        h += d
    n, t = struct.unpack('<IB', h[:5])
    p = b''
    while len(p) < n:
        d = s.recv(n - len(p))
        if not d:
            return None, b''
        p += d
    return t, p


def errmsg(p):
    return p[4:].decode(errors='replace')


def hello(name):
    return frame(1, b'BVAULTP1' + struct.pack('<H', 1) + bytes([len(name)]) + name)


def login(name, keyfile):
    key = bytes.fromhex(open(keyfile).read().strip())
    s = conn()
    s.sendall(hello(name))
    t, nonce = answer(s)
    mac = hmac.new(key, b'bvault-agent-auth-v1' + nonce + name,
                   hashlib.sha256).digest()
    s.sendall(frame(2, mac))
    t, p = answer(s)
    if t == 0x8f and struct.unpack('<H', p[:2])[0] == 8:
        raise ValueError(errmsg(p))  # ERROR busy
    assert t == 0x80, 'login failed'
    return s


def closed_by_server(s, limit):
    """Reads until end of stream; the ERROR text if one came, and when."""
    s.settimeout(limit)
    t0, msg = time.time(), ''
    try:
        t, p = answer(s)
        if t == 0x8f:
            msg = errmsg(p)
        while s.recv(4096):
            pass
        return True, time.time() - t0, msg
    except (socket.timeout, TimeoutError):
        return False, time.time() - t0, msg
    except OSError:
        return True, time.time() - t0, msg


def hold(flag):
    for _ in range(600):
        if os.path.exists(flag):
            return
        time.sleep(0.1)


if MODE == 'idle':  # N connections that send nothing
    n = int(ARGS[0])
    ss = [conn() for _ in range(n)]
    say('ready')
    hold(ARGS[-1])
    ok = sum(1 for s in ss if closed_by_server(s, 10)[0])
    say('idle closed', ok, 'of', n)
elif MODE == 'halfhello':  # N HELLOs stopped midway, half of them huge
    n = int(ARGS[0])
    ss, refused = [], 0
    for i in range(n):
        s = conn()
        if i % 2:
            # declares 4 MiB and sends 16 KiB of it
            s.sendall(struct.pack('<IBBH', 4 << 20, 1, 0, 0) + b'B' * 16384)
        else:
            # declares 100 bytes and sends 20
            s.sendall(struct.pack('<IBBH', 100, 1, 0, 0) + b'BVAULTP1' + b'x' * 12)
        ss.append(s)
    say('ready')
    hold(ARGS[-1])
    big = [closed_by_server(s, 10) for s in ss[1::2]]
    small = [closed_by_server(s, 10) for s in ss[0::2]]
    say('big refused', sum(1 for c, _, m in big if c and 'before login' in m), 'of', len(big))
    say('small closed', sum(1 for c, _, m in small if c and 'timed out' in m), 'of', len(small))
    say('big msg', big[0][2])
elif MODE == 'begins':  # NAME KEY N: N connections, each a BEGIN
    name, key, n = ARGS[0].encode(), ARGS[1], int(ARGS[2])
    ss = [login(name, key) for _ in range(n)]
    for s in ss:
        s.sendall(frame(3))
    time.sleep(0.5)
    ready = set(select.select(ss, [], [], 1.0)[0])
    granted, waiting = [], []
    for s in ss:
        if s in ready and answer(s)[0] == 0x80:
            granted.append(s)
        else:
            waiting.append(s)
    say('granted', len(granted), 'waiting', len(waiting))
    say('ready')
    if len(ARGS) > 4:  # ABORTFLAG: abort one granted session then
        hold(ARGS[3])
        granted[0].sendall(frame(9))
        granted[0].settimeout(5)
        say('abort', answer(granted[0])[0] == 0x80)
    hold(ARGS[-1])
elif MODE == 'midframe':  # NAME KEY: a frame stopped midway, then idle
    name, key = ARGS[0].encode(), ARGS[1]
    s = login(name, key)
    s.sendall(struct.pack('<IBBH', 20, 0x0a, 0, 0) + b'\x03ab')
    c, dt, m = closed_by_server(s, 20)
    say('midframe', c, '%.1f' % dt, m)
    s = login(name, key)
    c, dt, m = closed_by_server(s, 20)
    say('idle', c, '%.1f' % dt, m)
elif MODE == 'evilname':
    s = conn()
    s.sendall(hello(b'evil\nFAKE bvaultd: root logged in\x1b[31m\\'))
    t, _ = answer(s)
    s.sendall(frame(2, b'\0' * 32))
    t, p = answer(s)
    say('evil', t == 0x8f, errmsg(p))
elif MODE == 'rptime':  # NAME KEY REPLICA TIME: one RP with that time
    name, key, rep, when = ARGS[0].encode(), ARGS[1], ARGS[2].encode(), int(ARGS[3])
    s = login(name, key)
    s.sendall(frame(3))
    answer(s)
    s.sendall(frame(4, struct.pack('<QQ', int(ARGS[4]), 1 << 20) + bytes([len(rep)]) + rep))
    t, p = answer(s)
    s.sendall(frame(5, p[:4] + struct.pack('<Q', 0) + b'\x5a' * 4096))
    s.sendall(frame(8, bytes([1, 0]) + struct.pack('<q', when) + bytes([0])))
    t, p = answer(s)
    say('rptime', t == 0x80, struct.unpack('<Q', p[:8])[0] if t == 0x80 else errmsg(p))
elif MODE == 'full':  # NAME KEY N: N logged-in connections, then one more
    name, key, n = ARGS[0].encode(), ARGS[1], int(ARGS[2])
    ss = [login(name, key) for _ in range(n)]
    s = conn()
    try:
        s.sendall(hello(name))
    except OSError:
        pass  # refused at once: the ERROR is there to read
    t, p = answer(s)
    say('full', t == 0x8f and struct.unpack('<H', p[:2])[0] == 8, errmsg(p) if t == 0x8f else t)
    if len(ARGS) > 3:  # HOLDFLAG: keep the connections until it exists
        say('ready')
        hold(ARGS[-1])
elif MODE == 'agentfull':  # NAME KEY N HOLDFLAG: N logins, then one more
    name, key, n = ARGS[0].encode(), ARGS[1], int(ARGS[2])
    ss = [login(name, key) for _ in range(n)]
    try:
        login(name, key)
        say('agentfull False: the login past the limit was taken')
    except AssertionError:
        say('agentfull False: the login past the limit failed otherwise')
    except ValueError as e:
        say('agentfull True', e)
    say('ready')
    hold(ARGS[-1])
else:
    sys.exit('unknown mode ' + MODE)
