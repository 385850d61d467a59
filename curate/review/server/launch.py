"""Run argilla-server with the `sql` search engine registered (inside the argilla-server venv).

The stock `python -m argilla_server start` cannot load a search backend of ours, so this script
registers `sql_search` and then starts what was asked:

    launch.py check                 print the SearchEngine abstract methods and ours (JSON)
    launch.py migrate               create/upgrade the SQLite database (alembic head)
    launch.py users                 create owner + annotator (+ workspace) from the environment
    launch.py server HOST PORT      the FastAPI app under uvicorn
    launch.py worker                one rq worker on Argilla's queues

Configuration comes from Argilla's own environment variables (ARGILLA_HOME_PATH,
ARGILLA_DATABASE_URL, ARGILLA_REDIS_URL, ARGILLA_SEARCH_ENGINE) and, for `users`, SFTLOOP_ARGILLA_*
(set by `curate.review.server`, see docs/review.md).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def _register() -> None:
    import sql_search  # noqa: F401  (registers the `sql` engine on import)


def check() -> None:
    from argilla_server.search_engine.base import SearchEngine

    import sql_search

    print(json.dumps({
        "abstract": sorted(SearchEngine.__abstractmethods__),
        "implemented": sorted(sql_search.IMPLEMENTED),
        "defined_on_class": sorted(n for n in sql_search.IMPLEMENTED if n in sql_search.SQLSearchEngine.__dict__),
        "registered": sorted(SearchEngine.registered_classes),
    }))


def migrate() -> None:
    import alembic.config
    from argilla_server.database import ALEMBIC_CONFIG_FILE

    alembic.config.main(argv=["-c", ALEMBIC_CONFIG_FILE, "-q", "upgrade", "head"])


async def _users() -> None:
    from argilla_server.contexts import accounts
    from argilla_server.database import AsyncSessionLocal
    from argilla_server.models import User, Workspace, WorkspaceUser

    ws_name = os.environ.get("SFTLOOP_ARGILLA_WORKSPACE", "sftloop")
    wanted = [
        ("owner", os.environ["SFTLOOP_ARGILLA_OWNER"], os.environ["SFTLOOP_ARGILLA_OWNER_PASSWORD"], os.environ["SFTLOOP_ARGILLA_OWNER_KEY"]),
        ("annotator", os.environ["SFTLOOP_ARGILLA_ANNOTATOR"], os.environ["SFTLOOP_ARGILLA_ANNOTATOR_PASSWORD"], os.environ["SFTLOOP_ARGILLA_ANNOTATOR_KEY"]),
    ]
    async with AsyncSessionLocal() as db:
        ws = await Workspace.get_by(db, name=ws_name)
        if ws is None:
            ws = await Workspace.create(db, name=ws_name)
        for role, name, password, key in wanted:
            user = await accounts.get_user_by_username(db, name)
            if user is None:
                user = await User.create(
                    db, first_name=name, username=name, role=role,
                    password_hash=accounts.hash_password(password), api_key=key,
                )
                print(f"created {role} {name!r}")
            elif user.api_key != key:
                await user.update(db, api_key=key, password_hash=accounts.hash_password(password))
                print(f"updated {role} {name!r}")
            if await WorkspaceUser.get_by(db, workspace_id=ws.id, user_id=user.id) is None:
                await WorkspaceUser.create(db, workspace_id=ws.id, user_id=user.id)


def server(host: str, port: int) -> None:
    _register()
    import uvicorn
    from argilla_server import app

    uvicorn.run(app, host=host, port=port, access_log=False, log_level="warning")


def worker() -> None:
    _register()
    from argilla_server.jobs.queues import DEFAULT_QUEUE, HIGH_QUEUE, REDIS_CONNECTION
    from rq import Worker

    Worker([HIGH_QUEUE, DEFAULT_QUEUE], connection=REDIS_CONNECTION).work(logging_level="WARNING")


def main(argv: list[str]) -> None:
    cmd = argv[0] if argv else "check"
    if cmd == "check":
        check()
    elif cmd == "migrate":
        migrate()
    elif cmd == "users":
        asyncio.run(_users())
    elif cmd == "server":
        server(argv[1], int(argv[2]))
    elif cmd == "worker":
        worker()
    else:
        raise SystemExit(f"launch.py: unknown command {cmd!r} (check|migrate|users|server HOST PORT|worker)")


if __name__ == "__main__":
    main(sys.argv[1:])
