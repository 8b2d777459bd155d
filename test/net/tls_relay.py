#!/usr/bin/env python3
"""tls_relay.py: a machine in the middle, for net_tls.sh.

Usage: tls_relay.py PORTFILE IN OUT TARGET [CERT KEY]

Listens on 127.0.0.1 (its port written to PORTFILE) and relays every
connection to TARGET (a TCP port on 127.0.0.1, or a Unix socket path),
byte for byte in both directions. IN says how it talks to the agent:
"tls" (as a TLS server with CERT and KEY, its own key, not the store's)
or "plain"; OUT how it talks to TARGET: "tls" (as a TLS client that
checks nothing) or "plain". So it can read and rewrite everything it
relays: what stops it is the agent's pin (it shows another certificate)
and the channel binding (a login proof made for the agent-to-relay
connection does not fit the relay-to-server one).
"""
import os
import socket
import ssl
import sys
import threading


def pipe(a, b):
    try:
        while True:
            d = a.recv(65536)
            if not d:
                break
            b.sendall(d)
    except OSError:
        pass
    for s in (a, b):
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def serve(conn, inmode, outmode, target, sctx, cctx):
    try:
        if inmode == "tls":
            conn = sctx.wrap_socket(conn, server_side=True)
        if target.isdigit():
            up = socket.create_connection(("127.0.0.1", int(target)))
        else:
            up = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            up.connect(target)
        if outmode == "tls":
            up = cctx.wrap_socket(up, server_hostname="localhost")
    except (OSError, ssl.SSLError) as e:
        print(f"tls_relay: {e}", file=sys.stderr)
        conn.close()
        return
    t = threading.Thread(target=pipe, args=(up, conn), daemon=True)
    t.start()
    pipe(conn, up)
    t.join()
    conn.close()
    up.close()


def main():
    portfile, inmode, outmode, target = sys.argv[1:5]
    sctx = cctx = None
    if inmode == "tls":
        sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        sctx.load_cert_chain(sys.argv[5], sys.argv[6])
    if outmode == "tls":
        cctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        cctx.check_hostname = False
        cctx.verify_mode = ssl.CERT_NONE
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(16)
    tmp = portfile + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(ls.getsockname()[1]))
    os.rename(tmp, portfile)
    while True:
        conn, _ = ls.accept()
        threading.Thread(target=serve, daemon=True,
                         args=(conn, inmode, outmode, target, sctx,
                               cctx)).start()


main()
