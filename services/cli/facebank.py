"""`faceflow facebank ...`: the known people of a show, enrolled from seed images or promoted from
a reviewed identity (docs/facebank.md#learning-from-review)."""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

from faceflow.v1 import orchestrator_pb2, storage_pb2

from services.cli.session import session
from services.common import errors
from services.common.grpc_errors import translate_rpc_errors


def cmd_facebank_add(args: argparse.Namespace) -> int:
    images = []
    for path in args.images:
        p = Path(path)
        if not p.is_file():
            raise errors.NotFound(f"image file {path} does not exist")
        images.append(orchestrator_pb2.EnrollPersonRequest.SeedImage(name=p.name, data=p.read_bytes()))
    with session(args) as s, translate_rpc_errors("orchestrator"):
        response = s.orchestrator.EnrollPerson(
            orchestrator_pb2.EnrollPersonRequest(show_id=args.show, name=args.name, images=images, append=args.append)
        )
    print(
        f"enrolled {response.person.name} ({response.person.person_id}) in show {response.person.show_id} "
        f"with {len(response.person.exemplars)} exemplar(s)"
    )
    for rejected in response.rejected:
        print(f"  rejected {rejected.name}: {rejected.reason}")
    return 0


def cmd_facebank_promote(args: argparse.Namespace) -> int:
    with session(args) as s, translate_rpc_errors("orchestrator"):
        response = s.orchestrator.AddToFacebank(
            orchestrator_pb2.AddToFacebankRequest(ep_id=args.episode, identity_id=args.identity, name=args.name)
        )
    person = response.person
    if person.person_id:
        print(
            f"added {response.exemplars_added} exemplar(s) from {args.episode} {args.identity} to {person.name} "
            f"({person.person_id}) in show {person.show_id}; {_origins(person)}"
        )
    else:
        print(f"added no exemplar from {args.episode} {args.identity}")
    for rejected in response.rejected:
        print(f"  rejected {rejected.name}: {rejected.reason}")
    return 0


def _origins(person: storage_pb2.Person) -> str:
    """Exemplar counts by origin, e.g. exemplars=5 (review 3, seed 2); one stored without an origin
    (before origins were recorded) is a seed."""
    counts = Counter(e.origin or "seed" for e in person.exemplars)
    return f"exemplars={len(person.exemplars)} ({', '.join(f'{k} {v}' for k, v in sorted(counts.items()))})"


def cmd_facebank_list(args: argparse.Namespace) -> int:
    with session(args, ("storage",)) as s, translate_rpc_errors("storage"):
        people = s.storage.ListPeople(storage_pb2.ListPeopleRequest(show_id=args.show)).people
    for person in people:
        models = sorted({e.model_id for e in person.exemplars})
        print(f"{person.person_id:<24} {person.name:<28} {_origins(person)} models={','.join(models)}")
    return 0


def cmd_facebank_show(args: argparse.Namespace) -> int:
    with session(args, ("storage",)) as s, translate_rpc_errors("storage"):
        person = s.storage.GetPerson(storage_pb2.GetPersonRequest(show_id=args.show, person_id=args.person_id))
    print(f"{person.name} ({person.person_id}) in show {person.show_id}, enrolled {person.created_at}")
    for e in person.exemplars:
        origin = e.origin or "seed"
        added = f" added by {e.added_by} {e.added_at}" if e.added_by else ""
        print(f"  {e.exemplar_id}  {origin:<6} {e.source_name:<32} quality={e.quality:.2f} model={e.model_id}{added}")
    return 0


def cmd_facebank_remove_exemplar(args: argparse.Namespace) -> int:
    with session(args, ("storage",)) as s, translate_rpc_errors("storage"):
        person = s.storage.RemoveExemplar(
            storage_pb2.RemoveExemplarRequest(show_id=args.show, person_id=args.person_id, exemplar_id=args.exemplar_id)
        )
    print(f"removed exemplar {args.exemplar_id}; {person.name} keeps {len(person.exemplars)}")
    return 0


def cmd_facebank_reembed(args: argparse.Namespace) -> int:
    with session(args) as s, translate_rpc_errors("orchestrator"):
        result = s.orchestrator.ReembedFacebank(orchestrator_pb2.ReembedFacebankRequest(show_id=args.show))
    print(f"re-embedded {result.exemplars_reembedded} exemplar(s) of {result.people} person(s) with {result.model_id}")
    return 0


def cmd_facebank_remove(args: argparse.Namespace) -> int:
    with session(args, ("storage",)) as s, translate_rpc_errors("storage"):
        removed = s.storage.RemovePerson(storage_pb2.RemovePersonRequest(show_id=args.show, person_id=args.person_id))
    print(f"removed {args.person_id} and {removed.exemplars_removed} exemplar(s)")
    return 0


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    facebank = sub.add_parser("facebank", help="known people").add_subparsers(dest="facebank_command", required=True)
    add = facebank.add_parser("add", help="enrol a person from seed images")
    add.add_argument("--name", required=True)
    add.add_argument("--show", default="default")
    add.add_argument("--append", action="store_true", help="add exemplars to an existing person")
    add.add_argument("images", nargs="+")
    add.set_defaults(func=cmd_facebank_add)
    promote = facebank.add_parser(
        "promote", help="add the best faces of a reviewed identity to the facebank (the episode's show)"
    )
    promote.add_argument("episode")
    promote.add_argument("identity", help="identity id in the episode's current run, e.g. id_0003")
    promote.add_argument("--name", default="", help="the person (default: the identity's reviewed name)")
    promote.set_defaults(func=cmd_facebank_promote)
    fl = facebank.add_parser("list", help="list enrolled people (exemplars by origin: seed, review)")
    fl.add_argument("--show", default="default")
    fl.set_defaults(func=cmd_facebank_list)
    fs = facebank.add_parser("show", help="a person and their exemplars")
    fs.add_argument("person_id")
    fs.add_argument("--show", default="default")
    fs.set_defaults(func=cmd_facebank_show)
    fe = facebank.add_parser("remove-exemplar", help="purge one exemplar (embedding and crop) of a person")
    fe.add_argument("person_id")
    fe.add_argument("exemplar_id")
    fe.add_argument("--show", default="default")
    fe.set_defaults(func=cmd_facebank_remove_exemplar)
    fre = facebank.add_parser("reembed", help="re-embed exemplars made by another model with the current one")
    fre.add_argument("--show", default="default")
    fre.set_defaults(func=cmd_facebank_reembed)
    fr = facebank.add_parser("remove", help="remove a person and their exemplars")
    fr.add_argument("person_id")
    fr.add_argument("--show", default="default")
    fr.set_defaults(func=cmd_facebank_remove)
