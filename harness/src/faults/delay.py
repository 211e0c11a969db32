"""hadrill's delay proxy, run inside a node. New connections to the node's port are
redirected here (iptables REDIRECT); each goes on to where it was headed (SO_ORIGINAL_DST),
and what the node sends back is held LATENCY ± JITTER ms (uniform) before it leaves, in
order. Each hold is appended to LOG (ms), so the fault's record states what was achieved.

usage: delay.py LISTEN_PORT LATENCY_MS JITTER_MS LOG READY_FILE [ERRORS]

With ERRORS, it lets go of the terminal it was started from (an SSH command returns once
nothing holds its output) and writes its own errors there.
"""
import asyncio
import os
import random
import socket
import struct
import sys
import time

LISTEN = int(sys.argv[1])
LATENCY = float(sys.argv[2]) / 1000
JITTER = float(sys.argv[3]) / 1000
HOLDS = open(sys.argv[4], "a", buffering=1)
READY = sys.argv[5]
SO_ORIGINAL_DST = 80

if len(sys.argv) > 6:
    errors = os.open(sys.argv[6], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
    os.dup2(errors, 1)
    os.dup2(errors, 2)


def original_destination(sock):
    raw = sock.getsockopt(socket.SOL_IP, SO_ORIGINAL_DST, 16)
    (port,) = struct.unpack("!H", raw[2:4])
    return socket.inet_ntoa(raw[4:8]), port


async def pipe(reader, writer, delayed):
    # A reader stamps each chunk with when it may leave; a writer sends them in order, so a
    # long response is held once, not once per chunk.
    queue = asyncio.Queue()

    async def read():
        last = 0.0
        while True:
            try:
                data = await reader.read(65536)
            except OSError:
                data = b""
            got = time.monotonic()
            due = got
            if delayed and data:
                due = max(last, got + max(0.0, LATENCY + random.uniform(-JITTER, JITTER)))
                last = due
            await queue.put((got, due, data))
            if not data:
                return

    async def write():
        while True:
            got, due, data = await queue.get()
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            if not data:
                if writer.can_write_eof():
                    writer.write_eof()
                return
            writer.write(data)
            await writer.drain()
            if delayed:
                HOLDS.write(f"{(time.monotonic() - got) * 1000:.1f}\n")

    await asyncio.gather(read(), write())


def reset(writer):
    # The client reached the proxy: where the node refuses, it is refused too (a reset).
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.close()


async def handle(client_reader, client_writer):
    try:
        host, port = original_destination(client_writer.get_extra_info("socket"))
        server_reader, server_writer = await asyncio.open_connection(host, port)
    except OSError:
        reset(client_writer)
        return
    try:
        await asyncio.gather(
            pipe(client_reader, server_writer, False),
            pipe(server_reader, client_writer, True),
        )
    except (OSError, asyncio.IncompleteReadError):
        pass
    finally:
        for w in (client_writer, server_writer):
            w.close()


async def main():
    server = await asyncio.start_server(handle, "0.0.0.0", LISTEN, reuse_address=True)
    open(READY, "w").close()
    await server.serve_forever()


asyncio.run(main())
