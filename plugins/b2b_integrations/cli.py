"""Command line: ``python -m b2b_integrations validate include/``, ``schema``, ``replay``,
``replay-dead-letters``, ``quarantine list|replay``, ``rollout`` and ``pools``."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from b2b_integrations.config.loader import load_project
from b2b_integrations.factory.planner import plan_project


def _validate(args: argparse.Namespace) -> int:
    from b2b_integrations.config.deployment_checks import deployment_problems

    project = load_project(args.include_dir)
    if args.check_imports or args.check_connections:
        project.problems.extend(deployment_problems(project, args.check_imports, args.check_connections))
    for problem in project.problems:
        print(f"error: {problem}")
    for warning in project.warnings:
        print(f"warning: {warning}")
    dags = len(plan_project(project))
    summary = (
        f"{project.files_checked} files checked: {len(project.problems)} errors, {len(project.warnings)} warnings; "
        f"{dags} DAGs would be generated"
    )
    print(summary, file=sys.stderr if project.problems else sys.stdout)
    return 1 if project.problems else 0


def _schema(args: argparse.Namespace) -> int:
    from b2b_integrations.config.schema import write_schemas

    for path in write_schemas(Path(args.out_dir)):
        print(f"wrote {path}")
    return 0


def _replay(args: argparse.Namespace) -> int:
    """Needs Airflow's metadata DB configuration (run it where ``airflow`` commands work)."""
    from airflow.utils.session import create_session

    from b2b_integrations.replay.webhooks import replay_webhook

    try:
        with create_session() as session:
            event_id = replay_webhook(args.customer, args.integration, args.flow, args.message_id, session)
    except LookupError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"queued webhook {args.message_id} again as asset event {event_id}")
    return 0


def _replay_dead_letters(args: argparse.Namespace) -> int:
    """Needs the flow's connections (run it where ``airflow`` commands work)."""
    from b2b_integrations.replay.dead_letters import replay_dead_letters

    try:
        results = replay_dead_letters(
            Path(args.include_dir), args.customer, args.integration, args.flow, args.event
        )
    except LookupError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    failed = 0
    for r in results:
        print(
            f"{r['target']}: {r['events']} dead letter(s): {r['delivered']} delivered, "
            f"{r['superseded']} superseded by newer events, {r['already_delivered']} delivered before, "
            f"{r['dead_lettered']} still failing"
        )
        failed += r["dead_lettered"]
    return 1 if failed else 0


def _quarantine_list(args: argparse.Namespace) -> int:
    """Needs Airflow's metadata DB configuration (run it where ``airflow`` commands work)."""
    from airflow.utils.session import create_session

    from b2b_integrations.state.quarantine import describe, list_quarantined

    with create_session() as session:
        found = list_quarantined(session, args.customer, args.integration, args.flow)
    for q in found:
        status = f"replayed as {q.replayed_as}" if q.replayed_as else "quarantined"
        print(
            f"{q.integration}/{q.flow} {q.message_id} {status} at {q.entry.get('quarantined_at')} "
            f"(run {q.entry.get('run_id')}): {describe(q.entry)}"
        )
    waiting = sum(1 for q in found if not q.replayed_as)
    print(f"{len(found)} quarantined message(s), {waiting} not replayed", file=sys.stderr)
    return 0


def _quarantine_replay(args: argparse.Namespace) -> int:
    """Needs Airflow's metadata DB configuration (run it where ``airflow`` commands work)."""
    from airflow.utils.session import create_session

    from b2b_integrations.replay.quarantine import replay_quarantined

    if not args.message_ids and not args.all:
        print("error: name the message ids to replay, or --all", file=sys.stderr)
        return 2
    try:
        with create_session() as session:
            outcomes = replay_quarantined(
                session, args.customer, args.integration, args.flow, args.message_ids or None
            )
    except LookupError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    for message_id, outcome in outcomes:
        print(f"{message_id}: {outcome}")
    return 0


def _rollout(args: argparse.Namespace) -> int:
    """Plan (and unless ``--dry-run``, apply) moving instances to another template version."""
    from b2b_integrations.instances.rollout import apply_rollout, plan_rollout

    include = Path(args.include_dir)
    plan = plan_rollout(include, args.integration, args.to, args.customers or None)
    for problem in plan.problems:
        print(f"error: {problem}", file=sys.stderr)
    if plan.problems:
        return 1
    for customer in plan.unchanged:
        print(f"{customer}: already on version {plan.to_version}")
    for problem in plan.unreadable:
        print(f"skipped: {problem}", file=sys.stderr)
    if args.dry_run:
        outcomes = [(item, item.ok, item.problems, "ok" if item.ok else "would fail") for item in plan.items]
    else:
        from b2b_integrations.instances.store import InstanceStore

        done = apply_rollout(InstanceStore(include), plan, actor=args.actor)
        outcomes = [
            (
                o.item,
                o.applied,
                o.problems,
                f"applied (instance version {o.version})" if o.applied else o.reason,
            )
            for o in done
        ]
    for item, _, problems, verdict in outcomes:
        print(f"{item.customer}: {args.integration} {item.from_version} -> {item.to_version}: {verdict}")
        for change in item.changes:
            before = repr(change["from"]) if "from" in change else "(unset)"
            after = repr(change["to"]) if "to" in change else "(removed)"
            print(f"  {change['path']}: {before} -> {after}")
        for problem in problems:
            print(f"  problem: {problem}")
    failed = sum(1 for _, ok, _, _ in outcomes if not ok) + len(plan.unreadable)
    summary = (
        f"{len(outcomes)} instance(s) of {args.integration} to version {plan.to_version}: {failed} failing"
    )
    print(summary + (" (dry run: nothing written)" if args.dry_run else ""), file=sys.stderr)
    return 1 if failed else 0


def _pools(args: argparse.Namespace) -> int:
    """Needs Airflow's metadata DB configuration (run it where ``airflow`` commands work)."""
    from airflow.utils.session import create_session

    from b2b_integrations.config.last_valid import default_store
    from b2b_integrations.pools import sync_pools, wanted_pools

    # The same customers the DAG files build: a broken file counts as its last valid copy.
    project = load_project(args.include_dir, last_valid=default_store())
    for problem in project.problems:
        print(f"warning: {problem}", file=sys.stderr)
    with create_session() as session:
        result = sync_pools(wanted_pools(i.customer for i in project.customers), session, prune=args.prune)
    for label, names in (("created", result.created), ("resized", result.updated), ("pruned", result.pruned),
                         ("orphaned (no customer caps it; --prune removes it)", result.orphaned)):  # fmt: skip
        for name in names:
            print(f"{label}: {name}")
    print(f"{len(result.unchanged)} customer pool(s) unchanged")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="b2b_integrations", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    validate = commands.add_parser(
        "validate", help="check every template and customer file; exit 1 on errors"
    )
    validate.add_argument(
        "include_dir", nargs="?", default="include", help="folder with integrations/ and customers/"
    )
    validate.add_argument(
        "--no-import-check",
        dest="check_imports",
        action="store_false",
        help="skip importing the templates' callables (done in a subprocess)",
    )
    validate.add_argument(
        "--check-connections",
        action="store_true",
        help="also check that every connection id customers name exists in this deployment (run it where "
        "`airflow` commands reach the deployment, e.g. after `source scripts/demo-env.sh`)",
    )
    validate.set_defaults(func=_validate)
    schema = commands.add_parser("schema", help="write the JSON Schemas of template and customer files")
    schema.add_argument("out_dir", nargs="?", default="include/schema")
    schema.set_defaults(func=_schema)
    again = commands.add_parser("replay", help="process a stored webhook again (queues it as a new event)")
    for name in ("customer", "integration", "flow", "message_id"):
        again.add_argument(name)
    again.set_defaults(func=_replay)
    dead = commands.add_parser(
        "replay-dead-letters", help="re-send a flow's dead-lettered events (exit 1 if some still fail)"
    )
    for name in ("customer", "integration", "flow"):
        dead.add_argument(name)
    dead.add_argument("--event", help="only this event id")
    dead.add_argument(
        "--include-dir",
        default=os.environ.get("B2B_INCLUDE_DIR", "include"),
        help="integrations/ and customers/",
    )
    dead.set_defaults(func=_replay_dead_letters)
    quarantine = commands.add_parser(
        "quarantine", help="inbox messages set aside because they can never succeed: list or replay them"
    ).add_subparsers(dest="action", required=True)
    listing = quarantine.add_parser("list", help="a customer's quarantined messages, with their reasons")
    listing.add_argument("customer")
    listing.add_argument("integration", nargs="?")
    listing.add_argument("flow", nargs="?")
    listing.set_defaults(func=_quarantine_list)
    requeue = quarantine.add_parser(
        "replay", help="queue quarantined messages into their inbox again (once each)"
    )
    for name in ("customer", "integration", "flow"):
        requeue.add_argument(name)
    requeue.add_argument("message_ids", nargs="*", help="the messages to replay")
    requeue.add_argument("--all", action="store_true", help="every message not replayed yet")
    requeue.set_defaults(func=_quarantine_replay)
    rollout = commands.add_parser(
        "rollout", help="move instances of an integration to another template version (exit 1 if some fail)"
    )
    rollout.add_argument("integration")
    rollout.add_argument("--to", required=True, help="the template version to move to")
    rollout.add_argument(
        "--customer", dest="customers", action="append", help="only this customer (repeatable); default: all"
    )
    rollout.add_argument(
        "--dry-run", action="store_true", help="check every affected instance, write nothing"
    )
    rollout.add_argument(
        "--include-dir",
        default=os.environ.get("B2B_INCLUDE_DIR", "include"),
        help="integrations/ and customers/",
    )
    rollout.add_argument(
        "--actor", default=f"cli:{os.environ.get('USER', 'unknown')}", help="who is recorded in each version"
    )
    rollout.set_defaults(func=_rollout)
    pools = commands.add_parser(
        "pools", help="create or resize the Airflow pool of every customer with limits.max_active_tasks"
    )
    pools.add_argument("include_dir", nargs="?", default=os.environ.get("B2B_INCLUDE_DIR", "include"))
    pools.add_argument(
        "--prune",
        action="store_true",
        help="also remove customer pools no customer asks for and no task waits in",
    )
    pools.set_defaults(func=_pools)
    args = parser.parse_args(argv)
    return int(args.func(args))
