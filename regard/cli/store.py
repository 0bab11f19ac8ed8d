"""The `regard` subcommands that work on a store: collection, person, consent, enroll, search, log,
sweep. Thin: they parse, call regard.store / regard.gallery, and format."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

from regard.cli.common import (
    EXIT_BAD_INPUT,
    EXIT_NEGATIVE,
    EXIT_OK,
    EXIT_TAMPERED,
    MASTER_KEY_HELP,
    add_actor_option,
    add_store_option,
    master_key_file,
)
from regard.cli.common import open_store as _store
from regard.cli.common import out as _out


def _photos(paths: list[str]) -> list[Path]:
    """Photos named, and photos inside folders named (recursively, sorted)."""
    from regard.image import photo_files

    return photo_files(paths)


# ---------------------------------------------------------------- collection


def _init(args: argparse.Namespace) -> int:
    """Create a store on purpose (every other command refuses a named store that does not exist),
    and the service's master key if there is none."""
    from regard import config
    from regard.config import redact_url
    from regard.service.keys import KeyRing
    from regard.store import default_store_url, open_store

    url = args.store or config.current().store_url or default_store_url()
    existed = not url.startswith("sqlite:///") or Path(url[len("sqlite:///") :]).is_file()
    key_path = master_key_file(args, url).path  # before the store is created: the rule looks at what exists
    store = open_store(url, create=True)
    try:
        had_key = key_path.exists()
        KeyRing(store, key_path)._master(create=True)  # noqa: SLF001 - the one place that creates it on purpose
    finally:
        store.close()
    lines = [f"store {redact_url(url)}: " + ("exists already, brought up to date" if existed else "created")]
    lines.append(
        f"master key {key_path}: exists already" if had_key else
        f"master key {key_path}: created (mode 600). Back it up and keep it secret: every API key's secret derives from it"
    )  # fmt: skip
    _out(args, {"store": redact_url(url), "created": not existed, "master_key": str(key_path), "master_key_created": not had_key}, "\n".join(lines))
    return EXIT_OK


def _collection(args: argparse.Namespace) -> int:
    from regard.face import QualityLevel

    store = _store(args)
    if args.action == "create":
        c = store.create_collection(
            args.id,
            purpose=args.purpose,
            actor=args.actor,
            retention_days=args.retention_days,
            min_quality=QualityLevel(args.min_quality),
            store_thumbnails=args.thumbnails,
            model=args.model,
        )
        _out(args, c.to_dict(), f"created collection {c.id!r} for: {c.purpose} (model {c.model})")
    elif args.action == "list":
        rows = store.list_collections()
        _out(
            args,
            [c.to_dict() for c in rows],
            "\n".join(f"{c.id:<24} {c.face_count:>7} faces {c.person_count:>6} persons  {c.purpose}" for c in rows)
            or "no collections",
        )
    elif args.action == "describe":
        c = store.get_collection(args.id)
        d = c.to_dict()
        if store.recognizer(c.model).calibrated:
            d["search_threshold"] = store.search_threshold(args.id)
            d["search_expected"] = store.search_expectations(args.id)
        else:
            d["search_threshold"] = None
            d["search_expected"] = {"words": f"none: its model {c.model} is not calibrated, so it may enrol faces but not be searched"}
        text = "\n".join(f"{k:>17}: {v}" for k, v in d.items() if k != "search_expected")
        _out(args, d, text + "\nsearch: " + d["search_expected"]["words"])
    elif args.action == "delete":
        erased = store.delete_collection(args.id, actor=args.actor, reason=args.reason)
        _out(args, {"deleted": args.id, "faces_erased": erased}, f"deleted {args.id!r}: {erased} faces erased")
    elif args.action == "reembed":
        from regard.reembed import reembed

        before = store.get_collection(args.id).model
        moved, plan = reembed(
            store, args.id, args.model, actor=args.actor, reason=args.reason, photos=Path(args.photos) if args.photos else None
        )
        _out(
            args,
            {"collection": args.id, "model": moved.model, "previous_model": before, "faces_reembedded": len(plan.vectors)},
            f"moved {args.id!r} from {before} to {moved.model}: {len(plan.vectors)} faces re-embedded; its own "
            "threshold, if it had one, is cleared (set one again with regard audit --apply-to)",
        )
    return EXIT_OK


def _person(args: argparse.Namespace) -> int:
    store = _store(args)
    if args.action == "add":
        p = store.add_person(args.collection, args.id, actor=args.actor, display_name=args.name)
        _out(args, p.to_dict(), f"added person {p.id!r} to {p.collection!r} (no consent recorded yet)")
    elif args.action == "list":
        rows = store.list_persons(args.collection)
        _out(
            args,
            [p.to_dict() for p in rows],
            "\n".join(
                f"{p.id:<24} {p.face_count:>4} faces  consent: {p.consent.basis.value if p.consent else 'none'}"
                for p in rows
            )
            or "no persons",
        )
    elif args.action == "forget":
        erased = store.forget_person(args.collection, args.id, actor=args.actor, reason=args.reason)
        _out(args, {"forgotten": args.id, "faces_erased": erased}, f"forgot {args.id!r}: {erased} faces erased")
    return EXIT_OK


def _consent(args: argparse.Namespace) -> int:
    from regard.store import ConsentBasis

    store = _store(args)
    if args.action == "record":
        expires = parse_when(args.expires, "--expires", future=True) if args.expires else None
        c = store.record_consent(
            args.collection,
            args.person,
            basis=ConsentBasis(args.basis),
            actor=args.actor,
            expires_at=expires,
            reference=args.reference,
        )
        _out(args, c.to_dict(), f"recorded {c.basis.value} for {args.person!r}" + (f", until {c.expires_at}" if c.expires_at else ""))
    else:
        erased = store.revoke_consent(args.collection, args.person, actor=args.actor, reason=args.reason)
        _out(args, {"revoked": args.person, "faces_erased": erased}, f"revoked consent of {args.person!r}: {erased} faces erased")
    return EXIT_OK


# ---------------------------------------------------------------- enroll and search


def _progress(items: list[Path]) -> Any:
    if sys.stderr.isatty() and len(items) > 1:
        from tqdm import tqdm

        return tqdm(items, desc="enrolling", unit="photo", file=sys.stderr)
    return items


def _enroll_folders(args: argparse.Namespace) -> int:
    """`enroll COLLECTION FOLDER --people-from-folders`: regard.bulk on every core."""
    from regard.bulk import bulk_enroll, people_from_folders, read_consent_csv

    if len(args.photos) != 1 or not Path(args.photos[0]).is_dir():
        print("regard: --people-from-folders takes one FOLDER with a sub-folder per person", file=sys.stderr)
        return EXIT_BAD_INPUT
    folder = Path(args.photos[0])
    consents = read_consent_csv(Path(args.consent_from)) if args.consent_from else None
    store = _store(args)
    store.get_collection(args.collection)  # an unknown collection: fail before any work
    total = sum(len(v) for v in people_from_folders(folder).values())
    bar = None
    if sys.stderr.isatty() and total > 1:
        from tqdm import tqdm

        bar = tqdm(total=total, desc="enrolling", unit="photo", file=sys.stderr)
    try:
        report = bulk_enroll(
            store,
            args.collection,
            folder,
            actor=args.actor,
            workers=args.workers,
            batch_size=args.batch,
            consents=consents,
            max_pixels=args.max_pixels,
            progress=bar.update if bar is not None else None,
        )
    finally:
        if bar is not None:
            bar.close()
    data = report.to_dict()
    lines = [f"{item['photo']}: not enrolled ({', '.join(item['reasons'])})" for item in report.rejected]
    if report.persons_without_consent:
        lines.append(
            "no valid consent, photos left alone: " + ", ".join(report.persons_without_consent)
            + " (record consent, or pass --consent-from FILE.csv)"
        )
    lines.append(
        f"{report.enrolled} enrolled, {report.skipped} already enrolled, {len(report.rejected)} not enrolled "
        f"of {report.photos} photos in {report.seconds:.1f} s ({data['photos_per_second'] or 0:.1f} photos/s)"
    )
    if report.rejected:
        lines.append("not enrolled, by reason: " + ", ".join(f"{r} {n}" for r, n in sorted(report.reasons.items())))
    _out(args, data, "\n".join(lines))
    return EXIT_OK if not report.rejected else EXIT_NEGATIVE


_UNITS = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_when(text: str, option: str, *, future: bool) -> datetime:
    """A time as people write it: an ISO date (midnight UTC), an ISO time (UTC unless it has a
    zone), or a duration such as 30d, 12h, 2w counted from now (forward for `future`, else back)."""
    from datetime import timedelta, timezone

    from regard.errors import InvalidArgumentError

    value = text.strip()
    match = re.fullmatch(r"(\d+)\s*([mhdw])", value.lower())
    if match:
        delta = timedelta(seconds=int(match.group(1)) * _UNITS[match.group(2)])
        now = datetime.now(timezone.utc)
        return now + delta if future else now - delta
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidArgumentError(
            f"{option} {text!r} is not a time: give a date (2027-01-01), a time (2027-01-01T09:00+01:00) or a duration (30d, 12h)"
        ) from None
    return when if when.tzinfo is not None else when.replace(tzinfo=timezone.utc)


def _numbered_faces(not_enrolled: list[dict[str, Any]]) -> list[str]:
    """The faces of an enrollment's report with the numbers `--face` takes (regard detect's)."""
    lines = []
    for item in sorted(not_enrolled, key=lambda n: n["index"]):
        b = item["box"]
        lines.append(
            f"  {item['index'] + 1:>3}  left {b['left']:.0f}, top {b['top']:.0f}, {b['width']:.0f}x{b['height']:.0f} px"
            f"  ({', '.join(item['reasons'])})"
        )
    return lines


def _enroll(args: argparse.Namespace) -> int:
    from regard.errors import ImageError
    from regard.gallery import FaceChoice, enroll

    if args.people_from_folders:
        if args.face is not None or args.face_box is not None:
            print("regard: --face and --face-box name a face of one photo, not of a folder of people", file=sys.stderr)
            return EXIT_BAD_INPUT
        return _enroll_folders(args)
    if not args.person:
        print("regard: enroll needs --person ID, or --people-from-folders for a folder of people", file=sys.stderr)
        return EXIT_BAD_INPUT
    choice = None
    if args.face is not None and args.face_box is not None:
        print("regard: name the face by --face N or by --face-box, not both", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.face is not None:
        if args.face < 1:
            print("regard: --face N counts from 1, as regard detect numbers the faces", file=sys.stderr)
            return EXIT_BAD_INPUT
        choice = FaceChoice(index=args.face - 1)
    elif args.face_box is not None:
        choice = FaceChoice.parse_box(args.face_box)
    store = _store(args)
    store.get_person(args.collection, args.person)  # unknown collection/person: fail before the photos
    photos = list(_photos(args.photos))
    if choice is not None and len(photos) != 1:
        print("regard: --face and --face-box name a face of one photo; give exactly one", file=sys.stderr)
        return EXIT_BAD_INPUT
    report, status = [], EXIT_OK
    enrolled = skipped = failed = 0
    for photo in _progress(photos):
        try:
            result = enroll(store, args.collection, photo, person_id=args.person, actor=args.actor, face=choice)
        except ImageError as exc:
            print(f"regard: {exc}", file=sys.stderr)
            report.append({"photo": str(photo), "error": str(exc)})
            status, failed = EXIT_BAD_INPUT, failed + 1
            continue
        entry = {"photo": str(photo), **result.to_dict()}
        report.append(entry)
        if result.skipped:
            skipped += 1
        elif result.enrolled:
            enrolled += 1
        else:
            failed += 1
            status = max(status, EXIT_NEGATIVE)
    lines = []
    for entry in report:
        if "error" in entry:
            lines.append(f"{entry['photo']}: error")
        elif entry["skipped_already_enrolled"]:
            lines.append(f"{entry['photo']}: already enrolled")
        elif entry["enrolled"]:
            lines.append(f"{entry['photo']}: enrolled face {entry['enrolled'][0]['face_id']}")
        else:
            reasons = {r for n in entry["not_enrolled"] for r in n["reasons"]} or {"NO_FACE"}
            lines.append(f"{entry['photo']}: not enrolled ({', '.join(sorted(reasons))})")
            if "MULTIPLE_FACES" in reasons:
                lines.append(
                    "  several faces could be the person's; nothing was stored. Name theirs with --face N "
                    "(as regard detect numbers them) or --face-box LEFT,TOP,WIDTH,HEIGHT:"
                )
                lines.extend(_numbered_faces(entry["not_enrolled"]))
        if entry.get("enrolled") and len(entry.get("not_enrolled", [])) and "error" not in entry:
            b = entry["enrolled"][0]["box"]
            lines.append(f"  the face at left {b['left']:.0f}, top {b['top']:.0f}, {b['width']:.0f}x{b['height']:.0f} px")
    lines.append(f"{enrolled} enrolled, {skipped} already enrolled, {failed} not enrolled")
    _out(args, report, "\n".join(lines))
    return status


def _search(args: argparse.Namespace) -> int:
    from regard.gallery import Found, search_face, search_photo
    from regard.store.core import expectations

    store = _store(args)
    if bool(args.photo) == bool(args.face_id):
        print("regard: search takes a PHOTO or --face-id, one of the two", file=sys.stderr)
        return EXIT_BAD_INPUT
    threshold = args.threshold  # None: the collection's own, else the default for its size
    found: Found[Any]
    if args.face_id:
        found = search_face(
            store, args.collection, args.face_id, actor=args.actor, purpose=args.purpose, k=args.k, threshold=threshold
        )
        hits = [{"face_id": args.face_id, "candidates": [c.to_dict() for c in found]}]
    else:
        found = search_photo(
            store,
            args.collection,
            args.photo,
            actor=args.actor,
            purpose=args.purpose,
            largest=args.largest,
            k=args.k,
            threshold=threshold,
        )
        hits = [h.to_dict() for h in found]
    expect = expectations(store.table_for(found.model), found.threshold, found.gallery_size, found.collection_threshold)
    lines = [expect["words"]]
    if not hits:
        lines.append("no face found in the photo")
    for i, hit in enumerate(hits, 1):
        where = ""
        if hit.get("box"):
            b = hit["box"]
            where = f" at left {b['left']:.0f}, top {b['top']:.0f}, {b['width']:.0f}x{b['height']:.0f} px ({hit['quality']})"
        persons = hit.get("persons")
        if persons is None:  # a search by face id: faces only
            lines.append(f"face {hit['face_id']}: {len(hit['candidates'])} candidate(s)")
            for c in hit["candidates"]:
                lines.append(f"   {c['person_id'] or '-':<24} score {c['score']:>6.2f}  FMR {c['fmr']:.2g}  face {c['face_id']}")
            continue
        lines.append(f"face {i}{where}: {len(persons)} candidate(s)")
        for p in persons:
            faces = ", ".join(p["face_ids"])
            lines.append(f"   {p['person_id'] or '-':<24} score {p['score']:>6.2f}  FMR {p['fmr']:.2g}  face {faces}")
    if any(h["candidates"] for h in hits):
        lines.append("candidates are leads for a person to review, not identifications")
    _out(args, {"collection": args.collection, "threshold": found.threshold, "expected": expect, "faces": hits}, "\n".join(lines))
    return EXIT_OK if any(h["candidates"] for h in hits) else EXIT_NEGATIVE


# ---------------------------------------------------------------- log and sweep


def _log(args: argparse.Namespace) -> int:
    from regard.auditlog import checkpoint as cp

    if args.action == "keygen":
        public = cp.generate_key(Path(args.path))
        _out(args, {"path": args.path, "public_key": public}, f"signing key written to {args.path}\npublic key {public}")
        return EXIT_OK
    store = _store(args)
    if args.action == "checkpoint":
        signed = cp.sign_head(store, Path(args.key))
        if args.out:
            cp.append(Path(args.out), signed)
        _out(args, json.loads(signed.to_line()), signed.to_line() + (f"\nappended to {args.out}" if args.out else ""))
        return EXIT_OK
    if args.action == "verify":
        report = store.verify_audit()
        if args.checkpoint:
            checkpoints = cp.read(Path(args.checkpoint))
            problems = cp.verify(store, checkpoints, public_key=args.public_key)
            data = {"ok": not problems, "checkpoints": len(checkpoints), "head_seq": report.head_seq, "problems": problems}
            text = (
                f"audit log intact and extends all {len(checkpoints)} checkpoints: head #{report.head_seq} {report.head_hash}"
                if not problems
                else "AUDIT LOG FAILED VERIFICATION:\n" + "\n".join(f"  {p}" for p in problems)
            )
            _out(args, data, text)
            return EXIT_OK if not problems else EXIT_TAMPERED
        data = {
            "ok": report.ok,
            "checked": report.checked,
            "head_seq": report.head_seq,
            "head_hash": report.head_hash,
            "problems": report.problems,
        }
        text = (
            f"audit log intact: {report.checked} entries, head #{report.head_seq} {report.head_hash}"
            if report.ok
            else "AUDIT LOG FAILED VERIFICATION:\n" + "\n".join(f"  {p}" for p in report.problems)
        )
        _out(args, data, text)
        return EXIT_OK if report.ok else EXIT_TAMPERED
    since = parse_when(args.since, "--since", future=False) if args.since else None
    rows = store.audit_entries(collection=args.collection, action=args.action_filter, actor=args.by, since=since)
    if args.limit is not None:
        rows = rows[-args.limit :] if args.limit > 0 else []  # the newest N, oldest first
    data = [
        {
            "seq": e.seq,
            "time": e.time,
            "actor": e.actor,
            "action": e.action.value,
            "collection": e.collection,
            "purpose": e.purpose,
            "details": e.details,
            "hash": e.hash,
        }
        for e in rows
    ]
    text = "\n".join(
        f"#{e.seq:<6} {e.time}  {e.actor:<12} {e.action.value:<17} {e.collection or '-':<16} "
        f"{(e.purpose or '')[:40]}  {json.dumps(e.details)[:120]}"
        for e in rows
    )
    _out(args, data, text or "no entries")
    return EXIT_OK


def _sweep(args: argparse.Namespace) -> int:
    report = _store(args).sweep(actor=args.actor)
    _out(
        args,
        {"faces_erased": report.faces_erased, "persons_erased": report.persons_erased, "details": report.details},
        f"erased {report.faces_erased} faces ({report.persons_erased} persons' consent expired)",
    )
    return EXIT_OK


def _purge(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    _store(args).purge_erased(full=args.full)
    seconds = time.perf_counter() - started
    _out(args, {"full": args.full, "seconds": round(seconds, 3)}, f"store files rewritten without erased rows in {seconds:.1f} s")
    return EXIT_OK


# ---------------------------------------------------------------- parser


def add_store_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add the store subcommands to the `regard` parser."""
    from regard.face import QualityLevel
    from regard.store import ConsentBasis

    store_opts = argparse.ArgumentParser(add_help=False, parents=[common])
    add_store_option(store_opts)
    add_actor_option(store_opts)

    def command(name: str, help: str, func: Callable[[argparse.Namespace], int]) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, parents=[store_opts])
        p.set_defaults(func=func)
        return p

    init = command("init", "create a store (and the service's master key) on purpose", _init)
    init.add_argument("--master-key", metavar="PATH", help=f"where the master key goes ({MASTER_KEY_HELP})")

    collection = command("collection", "create, list, describe or delete collections", _collection)
    c_sub = collection.add_subparsers(dest="action", required=True)
    create = c_sub.add_parser("create", parents=[store_opts])
    create.add_argument("id")
    create.add_argument("--purpose", required=True, help="what the collection is for (shown in every audit entry)")
    create.add_argument("--retention-days", type=int, help="erase faces this many days after enrollment")
    create.add_argument("--min-quality", default="MEDIUM", choices=[q.value for q in QualityLevel])
    create.add_argument("--thumbnails", action="store_true", help="keep a small aligned face image per face")
    create.add_argument(
        "--model", help="the recognition model its faces are embedded and searched with, for good (default: the built-in one; see regard models)"
    )
    c_sub.add_parser("list", parents=[store_opts])
    describe = c_sub.add_parser("describe", parents=[store_opts])
    describe.add_argument("id")
    delete = c_sub.add_parser("delete", parents=[store_opts])
    delete.add_argument("id")
    delete.add_argument("--reason", required=True)
    move = c_sub.add_parser(
        "reembed", parents=[store_opts],
        help="move a collection to another recognition model: every face re-embedded, consent and audit trail kept",
    )  # fmt: skip
    move.add_argument("id")
    move.add_argument("--model", required=True, help="the registered model to move to (regard models)")
    move.add_argument("--reason", required=True)
    move.add_argument(
        "--photos", metavar="FOLDER",
        help="re-embed from the enrolment photos, matched by external image id (default: the thumbnails the collection keeps)",
    )  # fmt: skip

    person = command("person", "add, list or forget persons", _person)
    p_sub = person.add_subparsers(dest="action", required=True)
    add = p_sub.add_parser("add", parents=[store_opts])
    add.add_argument("collection")
    add.add_argument("id")
    add.add_argument("--name", help="display name")
    plist = p_sub.add_parser("list", parents=[store_opts])
    plist.add_argument("collection")
    forget = p_sub.add_parser("forget", parents=[store_opts], help="erase a person and every trace of their faces")
    forget.add_argument("collection")
    forget.add_argument("id")
    forget.add_argument("--reason", required=True)

    consent = command("consent", "record or revoke a person's consent", _consent)
    k_sub = consent.add_subparsers(dest="action", required=True)
    record = k_sub.add_parser("record", parents=[store_opts])
    record.add_argument("collection")
    record.add_argument("person")
    record.add_argument("--basis", required=True, choices=[b.value for b in ConsentBasis])
    record.add_argument("--expires", help="when consent ends: a date (2027-12-31, midnight UTC), a time with zone, or a duration from now (30d, 12h, 2w)")
    record.add_argument("--reference", help="reference of the signed release")
    revoke = k_sub.add_parser("revoke", parents=[store_opts], help="withdraw consent and erase the person's faces")
    revoke.add_argument("collection")
    revoke.add_argument("person")
    revoke.add_argument("--reason", required=True)

    enroll = command("enroll", "enroll the main face of photos (or folders) for a person", _enroll)
    enroll.add_argument("collection")
    enroll.add_argument("photos", nargs="+", metavar="PHOTO")
    enroll.add_argument("--person", help="the person the photos show")
    enroll.add_argument(
        "--face", type=int, metavar="N",
        help="in a photo of several people: enroll face N, as `regard detect` numbers them (from 1)",
    )
    enroll.add_argument(
        "--face-box", metavar="L,T,W,H", help="in a photo of several people: enroll the face at this box (pixels)"
    )
    enroll.add_argument(
        "--people-from-folders", action="store_true",
        help="PHOTO is one folder with a sub-folder per person, named by person id (all cores, resumable)",
    )
    enroll.add_argument(
        "--consent-from", metavar="CSV",
        help="with --people-from-folders: person_id,basis,reference[,expires_at][,display_name] per person; "
        "adds missing persons and records their consent (audited)",
    )
    enroll.add_argument("--workers", type=int, default=os.cpu_count(), help="worker processes (default: all cores)")
    enroll.add_argument("--batch", type=int, default=64, help="faces per database write (default %(default)s)")

    search = command("search", "search a collection for the faces of a photo (audited)", _search)
    search.add_argument("collection")
    search.add_argument("photo", nargs="?", metavar="PHOTO")
    search.add_argument("--face-id", help="search with an enrolled face instead of a photo")
    search.add_argument("--purpose", required=True, help="why you are searching (written to the audit log)")
    search.add_argument("--largest", action="store_true", help="search only the photo's largest face (default: every face)")
    search.add_argument("--all-faces", action="store_true", help=argparse.SUPPRESS)  # the default since 0.2
    search.add_argument("--k", type=int, default=10, help="candidates per face at most")
    search.add_argument("--threshold", type=float, help="score threshold (default: FPIR <= 1 %% for this collection's size)")

    log = command("log", "show or verify the audit log", _log)
    l_sub = log.add_subparsers(dest="action", required=True)
    verify = l_sub.add_parser("verify", parents=[store_opts])
    verify.add_argument("--checkpoint", metavar="FILE", help="also prove the log extends every signed checkpoint in FILE")
    verify.add_argument("--public-key", metavar="HEX", help="with --checkpoint: accept only checkpoints signed by this key")
    keygen = l_sub.add_parser("keygen", help="make an Ed25519 key to sign checkpoints with (keep it away from the store)")
    keygen.add_argument("path")
    keygen.add_argument("--json", action="store_true")
    checkpoint = l_sub.add_parser("checkpoint", parents=[store_opts], help="sign the audit log's head")
    checkpoint.add_argument("--key", required=True, help="the signing key (regard log keygen)")
    checkpoint.add_argument("--out", metavar="FILE", help="append the signed checkpoint to FILE (else print it)")
    show = l_sub.add_parser("show", parents=[store_opts])
    show.add_argument("--collection")
    show.add_argument("--action", dest="action_filter")
    show.add_argument("--by", help="entries by this actor")
    show.add_argument("--since", help="a date (2026-11-01, midnight UTC), a time with zone, or how long ago (7d, 12h)")
    show.add_argument("--limit", type=int, help="only the newest N entries")

    command("sweep", "erase faces whose retention ran out or whose consent expired", _sweep)
    purge = command("purge", "rewrite the store's files without the bytes of erased faces (VACUUM)", _purge)
    purge.add_argument(
        "--full", action="store_true", help="PostgreSQL: VACUUM FULL (new files; locks the faces table while it runs)"
    )
