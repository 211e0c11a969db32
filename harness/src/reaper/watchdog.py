# hadrill's watchdog: runs in a container of the base image with the engine's socket. It
# accepts one connection from the process that owns the runs (io.hadrill.owner=$HADRILL_OWNER)
# and, when that connection drops (the process exited, was SIGKILLed, OOM-killed, or its CI
# runner died), removes every container and network carrying that owner label and the owner's
# private run directories under /private (the host's temporary directory), then exits.
import http.client
import json
import os
import shutil
import socket
import time
import urllib.parse

OWNER = os.environ["HADRILL_OWNER"]


class Engine(http.client.HTTPConnection):
    def __init__(self):
        super().__init__("localhost", timeout=60)

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(60)
        self.sock.connect("/var/run/docker.sock")


def call(method, path):
    engine = Engine()
    try:
        engine.request(method, path)
        response = engine.getresponse()
        return response.status, response.read()
    finally:
        engine.close()


def owned(listing):
    filters = urllib.parse.quote(json.dumps({"label": ["io.hadrill.owner=" + OWNER]}))
    status, body = call("GET", f"{listing}filters={filters}")
    return json.loads(body) if status == 200 else []


def reap():
    removed = 0
    for c in owned("/containers/json?all=1&"):
        status, _ = call("DELETE", f"/containers/{c['Id']}?force=1&v=1")
        removed += status in (204, 404)
    for n in owned("/networks?"):
        status, _ = call("DELETE", f"/networks/{n['Id']}")
        removed += status in (204, 404)
    # The owner's private run directories (staged config with secrets), mounted at /private.
    prefix, owner_file = os.environ["HADRILL_PRIVATE_PREFIX"], os.environ["HADRILL_OWNER_FILE"]
    for name in os.listdir("/private"):
        path = os.path.join("/private", name)
        try:
            with open(os.path.join(path, owner_file)) as f:
                mine = name.startswith(prefix) and f.read() == OWNER
        except OSError:
            continue
        if mine:
            shutil.rmtree(path, ignore_errors=True)
            removed += 1
    return removed


server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("0.0.0.0", 7000))
server.listen(1)
# An owner that never connects (it died while starting us) is treated as gone.
server.settimeout(120)
try:
    conn, _ = server.accept()
    conn.settimeout(None)
    conn.sendall(b"ready\n")
    while conn.recv(4096):
        pass
except OSError:
    pass
# Twice: a create request the owner sent just before it died may complete after the first pass.
total = reap()
time.sleep(1)
total += reap()
print(f"owner {OWNER} gone; removed {total} object(s)", flush=True)
