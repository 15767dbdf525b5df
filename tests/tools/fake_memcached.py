#!/usr/bin/python3
"""Servers that speak just enough of memcached's text protocol, or misbehave
in one precise way, for the daemon's robustness and scale tests. One process,
one thread (asyncio), any number of loopback ports.

    fake_memcached.py --serve MODE COUNT [--serve MODE COUNT ...]

Prints one line of JSON, {"MODE": [port, ...], ...}, once every port listens,
then serves until SIGTERM. Modes, per request ("stats", "version" or "flush_all"):

    stats         a short, valid stats reply (version: VERSION 1.6.99-fake, flush_all: OK)
    silent        reads, never answers
    garbage       answers an HTTP error
    trickle       the valid reply, one byte per send
    close_mid     half the valid reply, then closes
    endless       STAT lines forever, never END
    nonascii      a valid reply whose version is not ASCII
    flap:PATTERN  request i answers like PATTERN[i % len]: G valid, F closes
                  without answering (requests counted per port)
"""

import argparse
import asyncio
import json
import os
import resource
import signal
import socket
import sys

START = int.from_bytes(os.urandom(2), "little")


def stats_reply(port, version=b"1.6.99-fake"):
    return (b"STAT pid %d\r\nSTAT uptime %d\r\nSTAT version %s\r\nSTAT curr_items 0\r\n"
            b"STAT curr_connections 1\r\nSTAT get_hits 0\r\nSTAT get_misses 0\r\nSTAT evictions 0\r\nEND\r\n"
            % (100000 + port, 1000 + START, version))


class Port:
    def __init__(self, mode):
        self.mode = mode
        self.requests = 0
        self.port = 0

    async def handle(self, reader, writer):
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            while True:
                line = await reader.readline()
                if not line:
                    return
                if not await self.answer(line.strip(), writer):
                    return
        except (ConnectionError, OSError):
            return
        finally:
            writer.close()

    async def answer(self, command, writer):
        """Answers one request; False to close the connection."""
        index = self.requests
        self.requests += 1
        mode = self.mode
        if command == b"flush_all":
            reply = b"OK\r\n"
        elif command == b"stats":
            reply = stats_reply(self.port)
        elif command == b"version":
            reply = b"VERSION 1.6.99-fake\r\n"
        else:
            reply = b"ERROR\r\n"
        if mode == "silent":
            return True
        if mode == "garbage":
            writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
        elif mode == "trickle":
            for i in range(len(reply)):
                writer.write(reply[i:i + 1])
                await writer.drain()
                await asyncio.sleep(0)
        elif mode == "close_mid":
            writer.write(reply[:len(reply) // 2])
            await writer.drain()
            return False
        elif mode == "endless":
            line = b"STAT filler 12345678901234567890\r\n" * 64
            while True:  # until the peer closes: then drain raises
                writer.write(line)
                await writer.drain()
        elif mode == "nonascii":
            writer.write(stats_reply(self.port, b"1.6.\xff\xfe") if command == b"stats"
                         else b"VERSION 1.6.\xff\xfe\r\n" if command == b"version" else reply)
        elif mode.startswith("flap:"):
            pattern = mode[5:]
            if pattern[index % len(pattern)] == "F":
                return False
            writer.write(reply)
        else:
            writer.write(reply)
        await writer.drain()
        return True


async def main(specs):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    ports = {}
    servers = []
    for mode, count in specs:
        for _ in range(count):
            port = Port(mode)
            server = await asyncio.start_server(port.handle, "127.0.0.1", 0, backlog=64)
            port.port = server.sockets[0].getsockname()[1]
            servers.append(server)
            ports.setdefault(mode, []).append(port.port)
    print(json.dumps(ports), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    await stop.wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--serve", nargs=2, action="append", metavar=("MODE", "COUNT"), required=True)
    args = parser.parse_args()
    asyncio.run(main([(mode, int(count)) for mode, count in args.serve]))
    sys.exit(0)
