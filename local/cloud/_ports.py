"""Ports for the local cloud's servers, chosen together so that no two of them collide."""

from __future__ import annotations

import random
import socket
from collections.abc import Callable
from pathlib import Path

from local._process import free_port


def pick_ports(count: int) -> list[int]:
    """Distinct free ports below the kernel's ephemeral range.

    Ports from bind(0) are ephemeral ones: any outgoing connection, or another test asking the kernel for
    a free port, can take one between our check and the server's bind, which then "answers" for our
    server. Below the ephemeral range only explicit binds compete.
    """
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    if low < 12000:
        return _distinct(count, free_port)
    rng = random.SystemRandom()
    return _distinct(count, lambda: rng.randrange(10000, low))


def _distinct(count: int, candidate: Callable[[], int]) -> list[int]:
    held: list[socket.socket] = []
    try:
        while len(held) < count:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                sock.bind(("127.0.0.1", candidate()))  # held until all are chosen: no duplicates
            except OSError:
                sock.close()
                continue
            held.append(sock)
        return [sock.getsockname()[1] for sock in held]
    finally:
        for sock in held:
            sock.close()
