"""Connecting to Ray: a running instance is used as it is; otherwise `address` (or RAY_ADDRESS)
names a cluster to join, which is probed first so that an unreachable one fails at once with a
message naming it (Ray itself keeps retrying for a minute or more)."""
import os
import socket

import ray

__all__ = ["ensure_ray"]


def _probe(address, timeout):
    "Raises ConnectionError unless something accepts TCP connections at host:port."
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"address must be 'host:port' of a Ray cluster's head (or 'auto', "
                         f"'local' or a 'ray://host:port' client address), got {address!r}")
    host = host.strip("[]") or "127.0.0.1"
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except OSError as e:
        raise ConnectionError(f"could not reach the Ray cluster at {address!r} ({e.strerror or e}); "
                              f"start it with `ray start --head` there, or pass address=None to run "
                              f"on a local Ray instance") from None


def ensure_ray(address=None, timeout=10.0, **init_kwargs):
    """Makes sure this process is connected to Ray: keeps a running connection, or joins the
    cluster at `address` (default: $RAY_ADDRESS; none starts a local instance). An address that
    does not answer raises ConnectionError naming it."""
    if ray.is_initialized():
        return
    address = address if address is not None else os.environ.get("RAY_ADDRESS")
    if address not in (None, "", "auto", "local") and not str(address).startswith("ray://"):
        _probe(str(address), timeout)
    try:
        ray.init(address=address or None, **init_kwargs)
    except ConnectionError as e:
        raise ConnectionError(f"could not connect to the Ray cluster at {address!r}: {e}") from None
