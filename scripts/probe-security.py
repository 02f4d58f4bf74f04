"""Probe a running `raftbench cluster up` cluster's network surface from outside.

Usage: python3 scripts/probe-security.py DIR      (DIR: the `cluster up --dir`)

An independent client (Python standard library only, 3.11+; not raftbench's code) that
speaks the peer handshake (`src/transport/handshake.rs`) and tries what a stranger and an
insider might: a forged hello, wrong and missing secrets, forbidden raft messages,
oversized length prefixes, a flood of idle connections, admin calls with and without a
token or an Origin header. It prints what each attempt got and the leader's `security`
counters. Only the cluster's own 127.0.0.1 ports are contacted.
"""
import hashlib, hmac, json, os, socket, struct, sys, time, urllib.request

d = sys.argv[1]
import tomllib
cf = tomllib.load(open(f"{d}/cluster.toml", "rb"))
secret = open(cf["secret_file"]).read().strip().encode()
nodes = {n["id"]: n for n in cf["node"]}

def status(i):
    return json.load(urllib.request.urlopen(f"http://{nodes[i]['client_addr']}/status", timeout=5))
leader = status(1)["leader_id"]
follower = next(i for i in nodes if i != leader)
host, port = nodes[leader]["peer_addr"].split(":")

def frame(b, lie=None):
    return struct.pack(">I", len(b) if lie is None else lie) + b
def read_frame(s):
    h = b""
    while len(h) < 4:
        c = s.recv(4 - len(h))
        if not c: return None
        h += c
    n = struct.unpack(">I", h)[0]; b = b""
    while len(b) < n:
        c = s.recv(n - len(b))
        if not c: return None
        b += c
    return b
def closed(s, t=6):
    s.settimeout(t)
    try:
        while True:
            if not s.recv(4096): return "closed"
    except (ConnectionResetError, BrokenPipeError): return "reset"
    except socket.timeout: return "STILL OPEN"
def varint(v):
    out = b""
    while True:
        b = v & 0x7f; v >>= 7
        if v: out += bytes([b | 0x80])
        else: return out + bytes([b])
def field(n, v): return varint(n << 3) + varint(v)
def raft_msg(t, frm, to, entries=()):
    m = field(1, t) + field(2, to) + field(3, frm)
    for data in entries:
        e = varint(4 << 3 | 2) + varint(len(data)) + data   # Entry.data = 4
        m += varint(7 << 3 | 2) + varint(len(e)) + e
    return b"\x00" + m
def lp(x): x = x.encode() if isinstance(x, str) else x; return struct.pack("<Q", len(x)) + x
def mac(key, domain, ch, h):
    parts = ["raftbench-peer/3", domain, ch["nonce"], h["nonce"], str(ch["id"]), str(h["id"]),
             str(ch["max_frame"]), "true" if ch["authenticated"] else "false", h["peer_addr"], h["client_addr"]]
    return hmac.new(key, b"".join(lp(p) for p in parts), hashlib.sha256).hexdigest()
def handshake(key, me):
    s = socket.create_connection((host, int(port)))
    ch = json.loads(read_frame(s))
    h = {"id": me, "peer_addr": nodes[me]["peer_addr"] if me in nodes else "127.0.0.1:1",
         "client_addr": "127.0.0.1:2", "nonce": os.urandom(32).hex()}
    if key is not None: h["mac"] = mac(key, "hello", ch, h)
    s.sendall(frame(json.dumps(h).encode()))
    w = json.loads(read_frame(s))
    if w["result"] == "accepted":
        assert hmac.compare_digest(w["mac"], mac(secret, "welcome", ch, h)), "bad welcome mac"
    return s, w

r = {}
s = socket.create_connection((host, int(port)))
s.sendall(frame(json.dumps({"id": follower, "peer_addr": "x:1", "client_addr": "x:2"}).encode())
          + frame(raft_msg(2, follower, leader)))
r["1. forged hello (old format) + empty MsgPropose"] = closed(s)
s, w = handshake(b"w" * 64, follower); r["2. hello with a wrong secret"] = w
s, w = handshake(None, follower); r["3. hello without a secret"] = w
s, w = handshake(secret, follower); r["4. right secret, member id"] = w["result"]
s.sendall(frame(raft_msg(2, follower, leader)) + frame(raft_msg(2, follower, leader, [b"\xffpoison"]))
          + frame(raft_msg(15, follower, leader)) + frame(raft_msg(0, follower, leader)))
time.sleep(1)
r["   empty + poisoned MsgPropose, bare MsgReadIndex, MsgHup -> messages_refused"] = status(leader)["security"]["messages_refused"]
s.sendall(struct.pack(">I", 1 << 30) + b"\x00" * 1024)
r["5. 1 GiB frame prefix after the handshake"] = closed(s)
s = socket.create_connection((host, int(port))); read_frame(s); s.sendall(struct.pack(">I", 1 << 30))
r["6. 1 GiB prefix instead of a hello"] = closed(s)
idle = [socket.create_connection((host, int(port))) for _ in range(500)]
t0 = time.time()
req = urllib.request.Request(f"http://{nodes[leader]['client_addr']}/kv/flood", data=b"x", method="PUT")
code = urllib.request.urlopen(req, timeout=10).status
r["7. 500 idle peer connections; a PUT meanwhile"] = f"{code} in {1000*(time.time()-t0):.0f} ms"
for c in idle: c.close()
def admin(headers):
    req = urllib.request.Request(f"http://{nodes[leader]['client_addr']}/admin/heal", data=b"", method="POST", headers=headers)
    try: return urllib.request.urlopen(req, timeout=5).status
    except urllib.error.HTTPError as e: return f"{e.code} {json.load(e)['code']}"
r["8. POST /admin/heal on loopback, no token"] = admin({})
r["9. POST /admin/heal with Origin: http://evil.example"] = admin({"Origin": "http://evil.example"})
r["10. ... with Origin and the bearer token"] = admin({"Origin": "http://evil.example", "Authorization": "Bearer " + secret.decode()})
resp = urllib.request.urlopen(f"http://{nodes[follower]['client_addr']}/kv/flood?consistency=local", timeout=5)
r["11. local read headers"] = {k: v for k, v in resp.headers.items() if k.lower().startswith("x-raftbench")}
sec = {i: status(i)["security"] for i in nodes}
for k, v in r.items(): print(f"{k}: {v}")
print("leader security:", json.dumps({k: v for k, v in sec[leader].items() if v}))
print("all nodes role:", {i: status(i)["role"] for i in nodes})
