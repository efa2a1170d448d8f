"""`python -m services.crypto genkey [--id KID]`: print a new `kid:base64key` root key.

Put the line first in WDL_ROOT_KEYS to make it the active key (see docs/secrets.md).
"""

from __future__ import annotations

import argparse
import sys

from services.crypto.config import generate_root_key


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.crypto")
    commands = parser.add_subparsers(dest="command", required=True)
    genkey = commands.add_parser("genkey", help="print a fresh root key as kid:base64key")
    genkey.add_argument("--id", dest="key_id", default=None, help="key id (default k-<random>)")
    args = parser.parse_args(argv)
    if args.command == "genkey":
        sys.stdout.write(generate_root_key(args.key_id).export() + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
