#!/usr/bin/env python3
"""A TCP proxy that counts the bytes crossing it, for Tools/bench_transfer/bench_transfer.sh.

Usage: count_proxy.py LISTEN_PORT TARGET_HOST:TARGET_PORT STATS_FILE
Every byte in either direction is forwarded unchanged and counted (HTTP headers included); after
each connection closes, STATS_FILE is rewritten with {"up": client->server, "down": server->client,
"connections": n} (cumulative). Prints "ready" once listening.
"""
import asyncio
import json
import os
import sys

totals = {"up": 0, "down": 0, "connections": 0}


def dump(path):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(totals, f)
    os.replace(tmp, path)


async def pipe(reader, writer, key):
    try:
        while True:
            data = await reader.read(1 << 20)
            if not data:
                break
            totals[key] += len(data)
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        try:
            writer.close()
        except Exception:
            pass


async def main():
    listen, target, stats = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    host, port = target.rsplit(":", 1)
    dump(stats)

    async def handle(client_reader, client_writer):
        try:
            server_reader, server_writer = await asyncio.open_connection(host, int(port))
        except OSError:
            client_writer.close()
            return
        totals["connections"] += 1
        await asyncio.gather(pipe(client_reader, server_writer, "up"), pipe(server_reader, client_writer, "down"))
        dump(stats)

    server = await asyncio.start_server(handle, "127.0.0.1", listen)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
