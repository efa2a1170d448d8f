"""`_headers` and `_redirects` of a Static Assets directory, in Cloudflare's syntax.

Parsed by the control API at deploy (the tenant's text never reaches the gateway as
it is): what Cloudflare skips with a warning (a bad line, a rule past the limits, a
redirect loop) is skipped here with the same kind of warning, returned to the CLI.
Limits are Cloudflare's: 100 header rules, 2,000 static and 100 dynamic redirects,
lines of at most 2,000 characters; a file is at most 1 MiB (WDL's bound; Cloudflare
reads the file whole).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, urlsplit

from services.assets.manifest import AssetError

MAX_RULES_FILE_BYTES = 1024 * 1024
MAX_LINE_LENGTH = 2000
MAX_HEADER_RULES = 100
MAX_STATIC_REDIRECTS = 2000
MAX_DYNAMIC_REDIRECTS = 100
REDIRECT_STATUSES = frozenset({200, 301, 302, 303, 307, 308})

_HOSTED = re.compile(r"^https://+(?P<host>[^/]+)/?(?P<path>.*)$")
_PLACEHOLDER = re.compile(r":[A-Za-z]\w*")
_LOOKS_LIKE_PATH = re.compile(r"^([^\s]+://|/)")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _check_size(name: str, text: str) -> None:
    if len(text.encode("utf-8")) > MAX_RULES_FILE_BYTES:
        raise AssetError(413, "assets_rules_too_large", f"{name} is over "
                         f"{MAX_RULES_FILE_BYTES:,} bytes", f"assets.{name}")


def _normalize_path(path: str, *, keep_query: bool = False) -> str:
    """A URL path as a browser sends it: dot segments resolved, unsafe bytes quoted."""
    if not path.startswith("/"):
        path = "/" + path
    parts = urlsplit("http://x/" + path.lstrip("/"))
    out: list[str] = []
    for seg in parts.path.split("/")[1:]:
        if seg == "..":
            if out:
                out.pop()
        elif seg != ".":
            out.append(seg)
    resolved = "/" + "/".join(out)
    resolved = quote(resolved, safe="/%:@!$&'()*+,;=-._~")
    tail = ""
    if keep_query:
        if parts.query:
            tail += "?" + quote(parts.query, safe="=&%:@!$'()*+,;/?-._~")
        if parts.fragment:
            tail += "#" + quote(parts.fragment, safe="%:@!$&'()*+,;=/?-._~")
    return resolved + tail


def _url(token: str, *, only_relative: bool, no_ports: bool,
         keep_query: bool) -> tuple[str | None, str | None]:
    hosted = _HOSTED.match(token)
    if hosted and hosted.group("host"):
        if only_relative:
            return None, f"Only relative URLs are allowed. Skipping absolute URL {token}."
        if no_ports and re.search(r":\d+$", hosted.group("host")):
            return None, f"Specifying ports is not supported. Skipping absolute URL {token}."
        return (f"https://{hosted.group('host')}"
                f"{_normalize_path(hosted.group('path'), keep_query=keep_query)}"), None
    if only_relative and not token.startswith("/"):
        token = "/" + token
    if token.startswith("/"):
        return _normalize_path(token, keep_query=keep_query), None
    return None, ("URLs should begin with a forward-slash." if only_relative else
                  "URLs should either be relative (e.g. begin with a forward-slash), or use "
                  "HTTPS (e.g. begin with \"https://\").")


def _rule_lines(name: str, text: str, warnings: list[str]) -> Iterator[tuple[int, int, str]]:
    """(line number, lines in the file, the line stripped) of each line that may hold a
    rule: blank lines and comments skipped, over-long lines skipped with a warning."""
    lines = text.split("\n")
    for n, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if len(line) > MAX_LINE_LENGTH:
            warnings.append(f"{name} line {n}: ignored, longer than {MAX_LINE_LENGTH} "
                            "characters")
            continue
        yield n, len(lines), line


def parse_headers(text: str) -> tuple[list[dict[str, Any]], list[str]]:
    """([{path, set, unset}], warnings)."""
    _check_size("_headers", text)
    rules: list[dict[str, Any]] = []
    warnings: list[str] = []
    rule: dict[str, Any] | None = None

    def close() -> None:
        if rule is None:
            return
        if rule["set"] or rule["unset"]:
            rules.append({"path": rule["path"], "set": rule["set"], "unset": rule["unset"]})
        else:
            warnings.append(f"_headers line {rule['line']}: no headers specified")

    for n, total, line in _rule_lines("_headers", text, warnings):
        if _LOOKS_LIKE_PATH.match(line):
            if len(rules) >= MAX_HEADER_RULES:
                warnings.append(f"_headers: at most {MAX_HEADER_RULES} rules; skipped the "
                                f"remaining {total - n + 1} lines")
                rule = None
                break
            close()
            path, problem = _url(line, only_relative=False, no_ports=True, keep_query=False)
            if problem or path is None:
                warnings.append(f"_headers line {n}: {problem}")
                rule = None
                continue
            rule = {"path": path, "set": {}, "unset": [], "line": n}
            continue
        if ":" not in line:
            if rule is not None and line.startswith("! "):
                rule["unset"].append(line[2:].strip().lower())
            else:
                warnings.append(f"_headers line {n}: " + (
                    "expected a path beginning with at least one forward-slash"
                    if rule is None else "expected a colon-separated header pair "
                    "(e.g. name: value)"))
            continue
        name, _, value = line.partition(":")
        name, value = name.strip().lower(), value.strip()
        problem = ("header name cannot include spaces" if " " in name else
                   "no header name specified" if not name else
                   "no header value specified" if not value else
                   "invalid characters in the header" if _CONTROL.search(name + value) else
                   f"path should come before header ({name}: {value})" if rule is None
                   else None)
        if problem:
            warnings.append(f"_headers line {n}: {problem}")
            continue
        assert rule is not None
        had = rule["set"].get(name)
        rule["set"][name] = f"{had}, {value}" if had else value
    close()
    return rules, warnings


def parse_redirects(text: str, html_handling: str) -> tuple[dict[str, Any], list[str]]:
    """({static: {from: {to, status, line}}, dynamic: [{from, to, status}]}, warnings)."""
    _check_size("_redirects", text)
    static: dict[str, dict[str, Any]] = {}
    dynamic: list[dict[str, Any]] = []
    warnings: list[str] = []
    seen: set[str] = set()
    statics = dynamics = 0
    static_ok = True
    for n, total, line in _rule_lines("_redirects", text, warnings):
        tokens = re.sub(r"\s+#.*$", "", line).split()
        if not 2 <= len(tokens) <= 3:
            warnings.append(f"_redirects line {n}: expected exactly 2 or 3 whitespace-"
                            f"separated tokens, got {len(tokens)}")
            continue
        src, dst, status_text = tokens[0], tokens[1], tokens[2] if len(tokens) == 3 else "302"
        source, problem = _url(src, only_relative=True, no_ports=True, keep_query=False)
        if problem or source is None:
            warnings.append(f"_redirects line {n}: {problem}")
            continue
        if static_ok and "*" not in source and not _PLACEHOLDER.search(source):
            statics += 1
            if statics > MAX_STATIC_REDIRECTS:
                warnings.append(f"_redirects line {n}: at most {MAX_STATIC_REDIRECTS} static "
                                "rules; skipped")
                continue
        else:
            static_ok = False
            dynamics += 1
            if dynamics > MAX_DYNAMIC_REDIRECTS:
                warnings.append(f"_redirects: at most {MAX_DYNAMIC_REDIRECTS} dynamic rules; "
                                f"skipped the remaining {total - n + 1} lines")
                break
        target, problem = _url(dst, only_relative=False, no_ports=False, keep_query=True)
        if problem or target is None:
            warnings.append(f"_redirects line {n}: {problem}")
            continue
        if not status_text.isdigit() or int(status_text) not in REDIRECT_STATUSES:
            warnings.append(f"_redirects line {n}: valid status codes are 200, 301, 302 "
                            f"(default), 303, 307, or 308; got {status_text}")
            continue
        status = int(status_text)
        relative = not target.startswith("https://")
        loops = (source.endswith("/*") and re.search(r"/index(\.html)?$", target)) or (
            source.endswith("/") and re.search(r"/index(\.html)?$", target)
            and html_handling != "none")
        if relative and loops:
            warnings.append(f"_redirects line {n}: infinite loop detected in this rule; "
                            "ignored")
            continue
        if source in seen:
            warnings.append(f"_redirects line {n}: ignoring duplicate rule for path {source}")
            continue
        seen.add(source)
        if status == 200 and not relative:
            warnings.append(f"_redirects line {n}: proxy (200) redirects can only point to "
                            f"relative paths; got {target}")
            continue
        if static_ok:
            static[source] = {"to": target, "status": status, "line": n}
        else:
            # After the first splat or placeholder every rule is matched in order.
            dynamic.append({"from": source, "to": target, "status": status})
    return {"static": static, "dynamic": dynamic}, warnings
