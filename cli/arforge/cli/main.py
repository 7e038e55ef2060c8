"""``arforge``: run the embedded stack and talk to the ARForge API.

Stack:   ``arforge up``, ``arforge down``, ``arforge demo``
Jobs:    ``arforge submit TYPE --input FILE [--param k=v] [--priority high] [--wait]``,
         ``arforge status ID``, ``arforge jobs``, ``arforge cancel ID``, ``arforge retry ID``,
         ``arforge dlq list``, ``arforge dlq replay ID``
Keys:    ``arforge keys create --tenant NAME``, ``arforge keys list``, ``arforge keys revoke ID``
See :mod:`arforge.cli.config` for where the API URL and key come from.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from rich.console import Console
from rich.markup import escape

from . import config, jobs
from .client import ApiError, Client

console = Console(highlight=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)
REPO = Path(__file__).resolve().parents[3]
SAMPLE = REPO / "samples" / "skull" / "skull-walkaround.mp4"
OUTPUT_DIR = Path("arforge-output")


def _say(text: str) -> None:
    console.print(f"[cyan]arforge[/] {text}", soft_wrap=True)


def _client(args: argparse.Namespace) -> Client:
    cfg = config.client_config(args.data_dir, args.api_url, args.api_key)
    return Client(cfg.api_url, cfg.require_key())


# --- stack commands --------------------------------------------------------------------
def _stack_options(args: argparse.Namespace, **extra: object):  # type: ignore[no-untyped-def]
    from .stack.stack import StackOptions

    workers = None
    if getattr(args, "workers", None) is not None:
        workers = [w for w in args.workers.split(",") if w]
    return StackOptions.from_env(
        data_dir=config.data_dir(getattr(args, "data_dir", None)),
        nats_port=args.nats_port,
        api_port=args.api_port,
        pg_port=args.pg_port,
        nats_url=args.nats_url,
        database_url=args.database_url,
        workers=workers,
        **extra,
    )


class _Stop(Exception):
    """Raised from a SIGTERM / SIGHUP handler to unwind into a clean shutdown."""


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    raise _Stop(signal.Signals(signum).name)


def _patient(signum: int, frame: FrameType | None) -> None:
    err_console.print("arforge: still stopping the stack, please wait")


def _print_ready(info, data_dir: Path) -> None:  # type: ignore[no-untyped-def]
    console.print(f"\n[green]ARForge is ready[/] in {info.ready_after_s:.1f} s")
    console.print(f"  API       {info.api_url}   (docs: {info.api_url}/docs)")
    console.print(f"  API key   {info.api_key}   (tenant default; also in {data_dir / 'api-key'})")
    console.print(f"  NATS      {info.nats_url}")
    console.print(f"  Postgres  {info.postgres}")
    console.print(f"  workers   {', '.join(info.workers) or '(none installed)'}")


def cmd_up(args: argparse.Namespace) -> int:
    from .stack.stack import Stack, StackError

    stack = Stack(_stack_options(args), say=_say)
    old = {s: signal.signal(s, _raise_stop) for s in (signal.SIGTERM, signal.SIGHUP)}
    rc = 0
    try:
        info = stack.start()
        _print_ready(info, stack.data_dir)
        console.print("Press Ctrl-C to stop.\n")
        while True:
            time.sleep(0.5)
            stack.check()
    except (KeyboardInterrupt, _Stop):
        _say("shutting down")
    except StackError as e:
        err_console.print(f"[red]arforge up failed:[/] {e}", soft_wrap=True)
        rc = 1
    finally:
        for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(s, _patient)
        claimed = stack.claimed
        stack.stop()
        for s, h in old.items():
            signal.signal(s, h)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        if claimed:
            _say("stopped")
    return rc


def _purge(data_dir: Path) -> int:
    """Forget a stopped stack: its database on the machine's PostgreSQL, then its data dir."""
    import shutil

    from .stack import postgres

    name = postgres.database_for(data_dir)
    if postgres.probe(postgres.LOCAL_ADMIN_URL).usable:
        try:
            dropped = postgres.drop_database(postgres.LOCAL_ADMIN_URL, name)
        except Exception as e:  # reported; the directory still goes
            err_console.print(f"could not drop database {name}: {e}")
            dropped = False
        if dropped:
            console.print(f"dropped database {name} (jobs, API keys, webhooks of this stack)")
    if data_dir.exists():
        shutil.rmtree(data_dir)
        console.print(f"removed {data_dir.absolute()}")
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    from .stack import procs
    from .stack.stack import running_supervisor

    d = config.data_dir(args.data_dir)
    rec = running_supervisor(d)
    if rec is None:
        # A supervisor killed with -9 may have left children: those recorded in run/*.pid.
        killed = procs.clean_stale(d / "run")
        if killed:
            console.print("cleaned up leftovers of a stack that was killed: " + ", ".join(killed))
        else:
            console.print(f"no ARForge stack is running ({config.where_looked(args.data_dir)})")
        return _purge(d) if args.purge else 0
    os.kill(rec.pid, signal.SIGTERM)
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        if not rec.is_live_and_ours():
            console.print(f"stopped the stack (pid {rec.pid})")
            return _purge(d) if args.purge else 0
        time.sleep(0.2)
    err_console.print(f"the stack (pid {rec.pid}) is still stopping after {args.timeout:.0f} s")
    return 1


def cmd_demo(args: argparse.Namespace) -> int:
    import _thread
    import threading

    from .stack import services
    from .stack.stack import Stack, StackError, running_supervisor

    if not services.runnable("arforge.photogrammetry"):
        err_console.print(
            "[red]arforge demo:[/] photogrammetry worker not installed "
            "(services/photogrammetry; run `make install`)",
            soft_wrap=True,
        )
        return 1
    sample = Path(args.input) if args.input else SAMPLE
    if not sample.is_file():
        err_console.print(f"[red]arforge demo:[/] sample not found: {sample} (pass --input)")
        return 2
    params = jobs.parse_params(args.param or [])
    d = config.data_dir(args.data_dir)
    if running_supervisor(d) is not None:
        _say(f"using the stack already running from {d}")
        with _client(args) as client:
            return jobs.submit(
                client, console, "photogrammetry", [sample], params, "default", True, OUTPUT_DIR
            )

    stack = Stack(_stack_options(args, critical_workers=frozenset({"photogrammetry"})), say=_say)
    old = signal.signal(signal.SIGTERM, _raise_stop)
    died: list[str] = []
    done = threading.Event()

    def watch() -> None:
        while not done.wait(0.5):
            for child in stack.sup.poll():
                died.append(stack.sup.death_report(child))
                if child.spec.critical:
                    _thread.interrupt_main()
                    return

    rc = 1
    try:
        info = stack.start()
        _print_ready(info, stack.data_dir)
        threading.Thread(target=watch, name="arforge-watch", daemon=True).start()
        _say(f"submitting photogrammetry on {sample}")
        with Client(info.api_url, info.api_key) as client:
            rc = jobs.submit(
                client, console, "photogrammetry", [sample], params, "default", True, OUTPUT_DIR
            )
    except (KeyboardInterrupt, _Stop):
        _say("interrupted")
        rc = 130
    except StackError as e:
        err_console.print(f"[red]arforge demo failed:[/] {e}", soft_wrap=True)
        rc = 1
    except ApiError as e:
        err_console.print(f"[red]arforge demo failed:[/] {e}", soft_wrap=True)
        rc = 1
    finally:
        done.set()
        for report in died:
            err_console.print(report, soft_wrap=True)
            rc = rc or 1
        if died and rc == 130:
            rc = 1
        signal.signal(signal.SIGINT, _patient)
        signal.signal(signal.SIGTERM, _patient)
        if stack.claimed:
            _say("stopping the stack")
        stack.stop()
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, old)
    return rc


# --- API commands -------------------------------------------------------------------------
def cmd_submit(args: argparse.Namespace) -> int:
    params = jobs.parse_params(args.param or [])
    with _client(args) as client:
        return jobs.submit(
            client,
            console,
            args.type,
            [Path(p) for p in args.input],
            params,
            args.priority,
            args.wait,
            Path(args.output_dir),
            args.idempotency_key,
        )


def cmd_wait(args: argparse.Namespace) -> int:
    with _client(args) as client:
        return jobs.wait_and_fetch(client, console, args.id, Path(args.output_dir))


def cmd_status(args: argparse.Namespace) -> int:
    with _client(args) as client:
        return jobs.status(client, console, args.id, args.json)


def cmd_jobs(args: argparse.Namespace) -> int:
    with _client(args) as client:
        return jobs.list_jobs(
            client,
            console,
            args.type,
            args.status,
            args.limit,
            args.json,
            cursor=args.cursor,
            wide=args.wide,
        )


def cmd_cancel(args: argparse.Namespace) -> int:
    with _client(args) as client:
        job = client.cancel(args.id)
    console.print(f"cancellation requested for job {_full_id(job, args.id)}")
    return 0


def cmd_retry(args: argparse.Namespace) -> int:
    with _client(args) as client:
        job = client.retry(args.id)
    console.print(f"job {_full_id(job, args.id)} queued again")
    return 0


def cmd_dlq(args: argparse.Namespace) -> int:
    with _client(args) as client:
        if args.dlq_command == "list":
            return jobs.dlq_list(client, console, args.json, wide=args.wide)
        job = client.replay(args.id)
    console.print(f"dead letter {_full_id(job, args.id)} replayed")
    return 0


def _full_id(answer: dict[str, Any], typed: str) -> str:
    """The whole job id from an API answer (the user may have typed a prefix)."""
    return str(answer.get("id") or answer.get("job_id") or typed)


TENANT_NAME_MAX = 200  # the tenants.name CHECK (migration 001_tenants_keys.sql)


def tenant_name(raw: str) -> str:
    """``raw`` without surrounding blanks, as the API stores it; ``ValueError`` with one
    sentence when it is empty or longer than 200 characters (the database's rule)."""
    name = raw.strip()
    if not name:
        raise ValueError("--tenant must not be empty")
    if len(name) > TENANT_NAME_MAX:
        raise ValueError(
            f"--tenant is {len(name)} characters long; tenant names have 1 to "
            f"{TENANT_NAME_MAX} characters"
        )
    return name


def cmd_keys(args: argparse.Namespace) -> int:
    import asyncpg

    from .keys import keys_table
    from .stack.stack import with_database

    try:
        from arforge.api import auth
    except ModuleNotFoundError as e:
        err_console.print(f"[red]error:[/] the API package is missing ({e.name}): make install")
        return 1
    url = config.database_url(args.data_dir, args.database_url)
    try:
        if args.keys_command == "create":
            name = tenant_name(args.tenant)
            key = with_database(url, lambda conn: auth.create_api_key(conn, name))
            console.print(f"API key for tenant {escape(name)} (shown once, store it safely):")
            print(key)
        elif args.keys_command == "list":
            tenant = tenant_name(args.tenant) if args.tenant is not None else None
            keys = with_database(url, lambda conn: auth.list_api_keys(conn, tenant))
            keys_table(keys, console, args.json, wide=args.wide)
        else:
            info = with_database(url, lambda conn: auth.revoke_api_key(conn, args.key))
            console.print(
                f"API key {escape(info.prefix)}… of tenant {escape(info.tenant)} is revoked "
                "(requests with it now answer 401)"
            )
    except ValueError as e:
        err_console.print(f"[red]error:[/] {escape(str(e))}", soft_wrap=True)
        return 2
    except LookupError as e:
        err_console.print(f"[red]error:[/] {escape(str(e.args[0]))}", soft_wrap=True)
        return 1
    except (asyncpg.PostgresError, OSError, TimeoutError) as e:
        why = " ".join(str(e).split()) or type(e).__name__
        what = {"create": "create the key in", "list": "list the keys of"}.get(
            args.keys_command, "revoke the key in"
        )
        err_console.print(
            f"[red]error:[/] cannot {what} the database: {escape(why)}", soft_wrap=True
        )
        return 1
    return 0


# --- parser ---------------------------------------------------------------------------------
class _Parser(argparse.ArgumentParser):
    """An argument parser whose epilog may be computed when help is shown (``lazy_epilog``),
    so building the parser does not import the job contracts."""

    lazy_epilog: Callable[[], str] | None = None

    def format_help(self) -> str:
        if self.lazy_epilog is not None and self.epilog is None:
            self.epilog = self.lazy_epilog()
        return super().format_help()


def job_types_help(width: int = 88) -> str:
    """The job types of the contract registry for ``submit --help``: per type with a worker
    its description, input count and kinds, and ``--param`` names with their defaults
    (wrapped to ``width`` columns); then the types without a worker in this version."""
    import textwrap

    from arforge.shared.contracts import Registry

    def wrapped(text: str) -> list[str]:
        return textwrap.wrap(text, width, initial_indent="    ", subsequent_indent="      ")

    lines = ["job types (TYPE):"]
    later = []
    for spec in sorted(Registry(), key=lambda s: s.type):
        if not spec.implemented:
            later.append(spec.type)
            continue
        lines.append(f"  {spec.type}: {spec.description}")
        kinds = ", ".join(sorted(spec.input_kinds)) or "any"
        lines += wrapped(f"inputs: {spec.min_inputs} to {spec.max_inputs} ({kinds})")
        params = []
        for name, f in spec.params.model_fields.items():
            default = "required" if f.is_required() else f"default {f.get_default()!r}"
            params.append(f"{name} ({default})")
        if params:
            lines += wrapped(f"--param: {', '.join(params)}")
    if later:
        lines += textwrap.wrap(
            f"listed in the contracts, no worker in this version: {', '.join(later)}",
            width,
            initial_indent="  ",
            subsequent_indent="    ",
        )
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (global options work before or after the sub-command)."""
    common = _Parser(add_help=False)
    common.add_argument(
        "--data-dir",
        default=argparse.SUPPRESS,
        help="stack files (default: ARFORGE_DATA_DIR, else the nearest .arforge in this "
        "directory or a parent)",
    )
    common.add_argument(
        "--api-url", default=argparse.SUPPRESS, help="API base URL (default: from the stack)"
    )
    common.add_argument(
        "--api-key", default=argparse.SUPPRESS, help="API key afk_... (default: from the stack)"
    )

    p = argparse.ArgumentParser(
        prog="arforge",
        parents=[common],
        description="ARForge: capture-to-AR processing. Run the embedded stack and submit jobs.",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)

    def stack_flags(sp: argparse.ArgumentParser) -> None:
        from .stack.stack import DEFAULT_API_PORT, DEFAULT_NATS_PORT, DEFAULT_PG_PORT

        sp.add_argument(
            "--nats-port",
            type=int,
            default=DEFAULT_NATS_PORT,
            help="port of the embedded NATS server (default: %(default)s)",
        )
        sp.add_argument(
            "--api-port",
            type=int,
            default=DEFAULT_API_PORT,
            help="port the API listens on, on 127.0.0.1 (default: %(default)s)",
        )
        sp.add_argument(
            "--pg-port",
            type=int,
            default=DEFAULT_PG_PORT,
            help="port for a private PostgreSQL (default: %(default)s)",
        )
        sp.add_argument("--nats-url", help="use this NATS (>= 2.10, JetStream) instead")
        sp.add_argument("--database-url", help="use this PostgreSQL instead")
        sp.add_argument("--workers", help="comma list (default: every installed worker)")

    sp = sub.add_parser("up", parents=[common], help="start the embedded stack (Ctrl-C stops)")
    stack_flags(sp)
    sp.set_defaults(func=cmd_up)

    sp = sub.add_parser("down", parents=[common], help="stop a stack started by `arforge up`")
    sp.add_argument(
        "--timeout",
        type=float,
        default=90.0,
        help="seconds to wait for the stack to stop (default: %(default)s)",
    )
    sp.add_argument(
        "--purge",
        action="store_true",
        help="then forget the stack: drop its database on 127.0.0.1:5432 and remove its "
        "data directory (jobs, API keys, webhooks, stored files)",
    )
    sp.set_defaults(func=cmd_down)

    sp = sub.add_parser(
        "demo", parents=[common], help="start the stack, reconstruct the sample, stop"
    )
    stack_flags(sp)
    sp.add_argument(
        "--input", metavar="FILE", help="capture to use (default: samples/skull walk-around)"
    )
    sp.add_argument(
        "--param", action="append", metavar="KEY=VALUE", help="photogrammetry parameter"
    )
    sp.set_defaults(func=cmd_demo)

    sp = sub.add_parser(
        "submit",
        parents=[common],
        help="upload inputs and submit a job",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    assert isinstance(sp, _Parser)
    sp.lazy_epilog = job_types_help
    sp.add_argument("type", metavar="TYPE", help="job type (listed below), e.g. photogrammetry")
    sp.add_argument(
        "--input",
        action="append",
        required=True,
        metavar="FILE",
        help="a video, photo, zip of photos or 3D model to upload; repeat for several; "
        "a directory stands for the photos in it",
    )
    sp.add_argument(
        "--param",
        action="append",
        metavar="KEY=VALUE",
        help="job parameter (listed below); VALUE is read as JSON when it parses",
    )
    sp.add_argument(
        "--priority",
        choices=("high", "default", "low"),
        default="default",
        help="queue priority (default: %(default)s)",
    )
    sp.add_argument("--wait", action="store_true", help="follow progress, download artifacts")
    sp.add_argument(
        "--idempotency-key",
        metavar="KEY",
        help="repeating the command with the same KEY and files returns the same job "
        "(nothing is uploaded again)",
    )
    sp.add_argument(
        "--output-dir",
        default=str(OUTPUT_DIR),
        help="where --wait saves artifacts, in a folder per job (default: %(default)s)",
    )
    sp.set_defaults(func=cmd_submit)

    sp = sub.add_parser("wait", parents=[common], help="follow a job and download artifacts")
    sp.add_argument("id", help="job id")
    sp.add_argument(
        "--output-dir",
        default=str(OUTPUT_DIR),
        help="where artifacts are saved, in a folder per job (default: %(default)s)",
    )
    sp.set_defaults(func=cmd_wait)

    json_help = "print the API's JSON instead of a table"
    sp = sub.add_parser("status", parents=[common], help="show one job")
    sp.add_argument("id", help="job id")
    sp.add_argument("--json", action="store_true", help="print the API's JSON")
    sp.set_defaults(func=cmd_status)

    sp = sub.add_parser("jobs", parents=[common], help="list recent jobs, newest first")
    sp.add_argument("--type", help="only jobs of this type, e.g. photogrammetry")
    sp.add_argument(
        "--status",
        help="only jobs with this status: queued, started, retrying, completed, failed, cancelled",
    )
    sp.add_argument(
        "--limit", type=int, default=20, help="jobs per page, 1 to 200 (default: %(default)s)"
    )
    sp.add_argument(
        "--cursor", help="the next page: the value printed after `(more: --cursor ...)`"
    )
    sp.add_argument("--wide", action="store_true", help="full ids, no column cut to fit")
    sp.add_argument("--json", action="store_true", help=json_help)
    sp.set_defaults(func=cmd_jobs)

    sp = sub.add_parser("cancel", parents=[common], help="cancel a job")
    sp.add_argument("id", help="job id")
    sp.set_defaults(func=cmd_cancel)

    sp = sub.add_parser("retry", parents=[common], help="run a failed job again")
    sp.add_argument("id", help="job id")
    sp.set_defaults(func=cmd_retry)

    sp = sub.add_parser("dlq", parents=[common], help="dead letters")
    dsub = sp.add_subparsers(dest="dlq_command", required=True, metavar="ACTION")
    dl = dsub.add_parser("list", parents=[common], help="list dead letters")
    dl.add_argument("--wide", action="store_true", help="full ids, no column cut to fit")
    dl.add_argument("--json", action="store_true", help=json_help)
    dr = dsub.add_parser("replay", parents=[common], help="replay one dead letter")
    dr.add_argument("id", help="job id of the dead letter")
    sp.set_defaults(func=cmd_dlq)

    sp = sub.add_parser("keys", parents=[common], help="API keys")
    ksub = sp.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    kc = ksub.add_parser("create", parents=[common], help="create a key (printed once)")
    kc.add_argument(
        "--tenant",
        required=True,
        help=f"tenant name, 1 to {TENANT_NAME_MAX} characters (created if new)",
    )
    db_help = "default: ARFORGE_DATABASE_URL or .arforge/stack.json"
    kc.add_argument("--database-url", help=db_help)
    kl = ksub.add_parser(
        "list", parents=[common], help="list keys: id, tenant, prefix, created, last used, revoked"
    )
    kl.add_argument("--tenant", help="only this tenant's keys")
    kl.add_argument("--wide", action="store_true", help="full ids, no column cut to fit")
    kl.add_argument("--json", action="store_true", help="print the keys as JSON")
    kl.add_argument("--database-url", help=db_help)
    kr = ksub.add_parser("revoke", parents=[common], help="revoke a key (its requests get 401)")
    kr.add_argument("key", help="the key's id or its display prefix (afk_ + 8), from keys list")
    kr.add_argument("--database-url", help=db_help)
    sp.set_defaults(func=cmd_keys)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``arforge`` console script; returns the exit code."""
    args = build_parser().parse_args(argv)
    for name in ("data_dir", "api_url", "api_key"):
        if not hasattr(args, name):
            setattr(args, name, None)
    try:
        return int(args.func(args))
    except config.ConfigError as e:
        err_console.print(f"[red]error:[/] {e}", soft_wrap=True)
        return 2
    except ApiError as e:
        err_console.print(f"[red]error:[/] {e.message} [dim]({e.code})[/]", soft_wrap=True)
        return 1
    except ValueError as e:
        err_console.print(f"[red]error:[/] {e}", soft_wrap=True)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
