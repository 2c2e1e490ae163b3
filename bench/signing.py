"""DKIM signing cost per message (dkimpy, pure-Python RSA), on messages of digest sizes.

Signing happens in the sender as each message leaves (digestbot.deliver.signing), so this
CPU time per message bounds a signing sender's rate. Run: .venv/bin/python bench/signing.py [N]
"""

from __future__ import annotations

import os
import sys
import time

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from digestbot.deliver.signing import Signer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tests.test_deliver_support import make_message  # noqa: E402


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    print(f"cpu_count={os.cpu_count()} messages={n} (figures from a shared host vary)")
    for bits in (1024, 2048):
        key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        signer = Signer("example.org", "bench", pem)
        for size in (16_000, 56_000):
            data = make_message("reader@example.org", size=size).as_bytes()
            cpu, wall = time.process_time(), time.perf_counter()
            for _ in range(n):
                signer.sign(data)
            cpu = (time.process_time() - cpu) / n * 1000
            wall = (time.perf_counter() - wall) / n * 1000
            print(
                f"rsa-{bits} {size // 1000} KB: {cpu:.2f} ms CPU per message "
                f"({wall:.2f} ms wall, at most {1000 / cpu:.0f} messages/s per core)"
            )


if __name__ == "__main__":
    main()
