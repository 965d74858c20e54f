"""Run synthcohort commands in this process with every socket connection and name lookup recorded.

Usage: python tests/netguard.py REPORT.json ALLOWED_HOST:PORT[,...] -- ARGV_JSON
Connections to an allowed address pass; any other connection or lookup is recorded and refused.
"""

from __future__ import annotations

import json
import sys
from typing import Any


def main() -> int:
    report_path, allowed_arg, _, argv_json = sys.argv[1:5]
    allowed = {(h, int(p)) for h, p in (a.rsplit(":", 1) for a in allowed_arg.split(",") if a)}
    allowed_hosts = {h for h, _ in allowed}
    seen: list[dict[str, Any]] = []

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if event == "socket.connect":
            addr = args[1]
            ok = isinstance(addr, tuple) and (str(addr[0]), int(addr[1])) in allowed
            seen.append({"event": event, "address": repr(addr), "allowed": ok})
            if not ok:
                raise OSError("network access refused by the test")
        elif event in ("socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyaddr"):
            host = args[0]
            host = host.decode() if isinstance(host, bytes) else host
            ok = host in allowed_hosts
            seen.append({"event": event, "address": repr(host), "allowed": ok})
            if not ok:
                raise OSError("name lookup refused by the test")

    sys.addaudithook(hook)
    from synthcohort.cli.main import cli

    codes = []
    for argv in json.loads(argv_json):
        try:
            code = cli.main(args=argv, prog_name="synthcohort", standalone_mode=False)
            codes.append(int(code or 0))
        except SystemExit as exc:
            codes.append(int(exc.code or 0))
        except Exception as exc:  # the CLI maps errors itself; anything else is a failure of the test subject
            codes.append(-1)
            seen.append({"event": "exception", "address": type(exc).__name__, "allowed": False})
    with open(report_path, "w", encoding="utf-8") as fh:
        json.dump({"codes": codes, "seen": seen}, fh)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
