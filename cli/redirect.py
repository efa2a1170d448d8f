"""Wrangler's redirected config: `.wrangler/deploy/config.json` names the config to deploy.

Framework toolchains (`@cloudflare/vite-plugin`, React Router, Astro, ...) build a project
into `dist/` and write a complete wrangler config beside the built Worker
(`dist/<worker>/wrangler.json`, with `main` and `assets.directory` relative to it), then
point `.wrangler/deploy/config.json` (`{"configPath": "../../dist/<worker>/wrangler.json"}`)
at it. `wrangler deploy` in the project deploys that config, not the user's source config;
`wdl deploy` does the same, with wrangler's rules (wrangler-dist/cli.js,
`findRedirectedWranglerConfig`): the deploy config is looked for in the project directory
and its parents; its `configPath` is relative to the deploy config's directory; a deploy
config that does not parse, lacks `configPath` or points at no file is an error, as is one
that does not sit beside the user's config when there is one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from cli.wrangler import CONFIG_NAMES, ProjectError, strip_jsonc

DEPLOY_CONFIG = Path(".wrangler") / "deploy" / "config.json"


def find_deploy_config(directory: Path) -> Path | None:
    """`.wrangler/deploy/config.json` in `directory` or the nearest parent that has one.

    One found above the project must be the user's own: another local user could
    otherwise plant one in a shared parent (/tmp) and choose what a deploy from below it
    uploads (wrangler does not check this)."""
    for base in (directory, *directory.parents):
        candidate = base / DEPLOY_CONFIG
        if candidate.is_file():
            owner = candidate.stat().st_uid
            if base != directory and owner not in (os.getuid(), 0):
                raise ProjectError(f"refusing the deploy configuration file {candidate}: it "
                                   f"is above the project and owned by another user (uid "
                                   f"{owner}); remove it or deploy from its directory")
            return candidate
    return None


def redirected_config(directory: Path) -> Path | None:
    """The config wrangler would deploy instead of the one in `directory`, or None when
    there is no redirection. Raises ProjectError on a deploy config wrangler refuses."""
    deploy_config = find_deploy_config(directory)
    if deploy_config is None:
        return None
    user_config = next((directory / n for n in CONFIG_NAMES if (directory / n).is_file()), None)
    if user_config is not None and user_config.parent / DEPLOY_CONFIG != deploy_config:
        raise ProjectError(
            f"found both a user configuration file at {user_config} and a deploy "
            f"configuration file at {deploy_config}, but these do not share the same base "
            "path so it is not clear which should be used")
    try:
        doc = json.loads(strip_jsonc(deploy_config.read_text(encoding="utf-8")))
    except (OSError, ValueError) as exc:
        raise ProjectError(f"failed to parse the deploy configuration file at "
                           f"{deploy_config}: {exc}") from None
    target = doc.get("configPath") if isinstance(doc, dict) else None
    if not isinstance(target, str) or not target:
        raise ProjectError(f"a deploy configuration file was found at {deploy_config}, but "
                           "it is not valid: the required \"configPath\" property was not "
                           "found")
    config = (deploy_config.parent / target).resolve()
    if not config.is_file():
        raise ProjectError(f"there is a deploy configuration at {deploy_config}, but the "
                           f"redirected configuration path it points to, {config}, does "
                           "not exist")
    if config.name not in CONFIG_NAMES:
        raise ProjectError(f"the redirected configuration {config} (from {deploy_config}) "
                           f"must be named {', '.join(CONFIG_NAMES)} for WDL to read it")
    shadowing = next(config.parent / n for n in CONFIG_NAMES if (config.parent / n).is_file())
    if shadowing != config:
        raise ProjectError(f"the redirected configuration {config} (from {deploy_config}) "
                           f"has {shadowing.name} beside it; WDL would read that one")
    return config


def project_directory(directory: Path) -> tuple[Path, Path | None]:
    """(the directory whose config is deployed, the redirected config or None)."""
    config = redirected_config(directory)
    return (directory, None) if config is None else (config.parent, config)
