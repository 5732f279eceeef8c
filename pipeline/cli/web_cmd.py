"""`edgeline web`: the audit API + dashboard server, and `edgeline web token create|list|revoke`.

Responsible for: arguments and output. `token create` prints the new token as its last line (scripts
take `tail -1`), together with the dashboard link that carries it once.
Not responsible for: the app (pipeline.web) or token storage (pipeline.db.api_tokens).
"""

from __future__ import annotations

from typing import Any

RUN = "pipeline.cli.web_run"


def register(sub: Any) -> None:
    """Add the `web` command and its `token` subcommands."""
    parser = sub.add_parser(
        "web",
        help="serve the audit API, the live dashboard and /metrics",
        description="Serve the read-only audit API (/api/v1, OpenAPI at /api/v1/openapi.json), the dashboard "
        "(/) and Prometheus metrics (/metrics) over the configured database. Every request needs a token: "
        "create one with `edgeline web token create --role viewer|auditor|admin`.",
    )
    parser.add_argument("--listen", metavar="HOST:PORT", help="default: setting web_listen, 127.0.0.1:8080")
    parser.add_argument("--signing-key", metavar="FILE", help="Ed25519 private key signing record exports")
    parser.set_defaults(func=f"{RUN}:_serve")
    web_sub = parser.add_subparsers(dest="web_command", metavar="SUBCOMMAND")
    token = web_sub.add_parser(
        "token",
        help="manage API tokens",
        description="API tokens for the audit API and the dashboard, stored only as hashes. Roles: viewer "
        "(read), auditor (read and export), admin.",
    ).add_subparsers(dest="token_command", metavar="ACTION", required=True)
    create = token.add_parser(
        "create",
        help="create a token; prints it as the last line",
        description="Create a token with a role and print it as the last line (scripts take `tail -1`), "
        "with a dashboard link that carries it once. It cannot be shown again.",
    )
    create.add_argument("--role", choices=("viewer", "auditor", "admin"), required=True)
    create.add_argument("--name", default="cli", help="who or what the token is for")
    create.add_argument("--listen", metavar="HOST:PORT", help="for the printed dashboard link")
    create.set_defaults(func=f"{RUN}:_token_create")
    token.add_parser(
        "list",
        help="list tokens (never shows them)",
        description="List tokens by id, name, role, creation and revocation; never the tokens themselves.",
    ).set_defaults(func=f"{RUN}:_token_list")
    revoke = token.add_parser(
        "revoke", help="revoke a token by id", description="Revoke a token by its id (see `web token list`)."
    )
    revoke.add_argument("id", type=int)
    revoke.set_defaults(func=f"{RUN}:_token_revoke")
