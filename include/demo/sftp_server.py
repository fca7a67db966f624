"""A small SFTP server for the demo (pure Python, asyncssh): a customer's drop folder without root or sshd.

Serves ``--root`` (chrooted: clients see it as ``/``) on 127.0.0.1, public-key login only. On start it
writes its host key and a client key pair into ``--keys`` (reused when present) and, with ``--seed``,
drops a sample order file in ``/outbound/orders`` the way globex's system would: latin-1, ';'.

    python include/demo/sftp_server.py --port 2222 --root DIR --keys DIR --seed
"""

from __future__ import annotations

import argparse
import asyncio
from datetime import date
from pathlib import Path

import asyncssh


def ensure_keys(keys: Path) -> tuple[Path, Path]:
    """(host key, client private key); the client's public key is the only one authorized."""
    keys.mkdir(parents=True, exist_ok=True)
    host, client = keys / "host_ed25519", keys / "client_ed25519"
    for path in (host, client):
        if not path.exists():
            key = asyncssh.generate_private_key("ssh-ed25519")
            key.write_private_key(str(path))
            key.write_public_key(str(path) + ".pub")
            path.chmod(0o600)
    return host, client


def seed(root: Path) -> Path:
    folder = root / "outbound" / "orders"
    folder.mkdir(parents=True, exist_ok=True)
    today = date.today().isoformat()
    lines = [
        "order_id;order_date;sku;quantity;unit_price;status",
        f"GX-1001;{today};Größe-M;3;19.90;new",
        f"GX-1002;{today};Jäger-Tee;12;4.50;shipped",
        f"GX-1003;{today};Über-Box;1;99.00;new",
        "GX-1004;not-a-date;Fehler;2;1.00;new",
    ]
    path = folder / f"orders-{today}.csv"
    path.write_bytes(("\n".join(lines) + "\n").encode("latin-1"))
    return path


async def serve(port: int, root: Path, keys: Path, host: str = "127.0.0.1") -> None:
    host_key, client_key = ensure_keys(keys)
    root.mkdir(parents=True, exist_ok=True)
    await asyncssh.listen(
        host,
        port,
        server_host_keys=[str(host_key)],
        authorized_client_keys=str(client_key) + ".pub",
        sftp_factory=lambda chan: asyncssh.SFTPServer(chan, chroot=str(root).encode()),
        allow_scp=False,
    )
    print(f"demo SFTP server on {host}:{port}, root {root}, client key {client_key}", flush=True)
    await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--port", type=int, default=2222)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0 in a container)")
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--keys", type=Path, required=True)
    parser.add_argument("--seed", action="store_true", help="drop a sample order file")
    args = parser.parse_args()
    if args.seed:
        print(f"seeded {seed(args.root)}", flush=True)
    asyncio.run(serve(args.port, args.root, args.keys, args.host))


if __name__ == "__main__":
    main()
