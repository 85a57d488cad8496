"""docs/api.md from the protos' own comments: every service, RPC, message, field and enum.

    python -m tools.protodoc --out docs/api.md          # write it (make protos does)
    python -m tools.protodoc --check docs/api.md        # exit 1 if it is stale (make test does)

protoc (grpc_tools) parses protos/ into a descriptor set with source info; the comments come from
there, so what the reference says is exactly what the .proto files say.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from google.protobuf import descriptor_pb2

PROTO_ROOT = Path("protos")
HEADER = """# faceflow gRPC API reference

Generated from `protos/faceflow/v1/*.proto` by `python -m tools.protodoc` (`make protos`); do not
edit by hand. Every RPC needs a token (docs/security.md); the role each one needs is in
`services/common/access.py`. Python callers: the `faceflow-client` package (client/README.md).
"""
# FieldDescriptorProto.Type -> proto type name, for scalar fields.
SCALARS = {
    number: name.removeprefix("TYPE_").lower() for name, number in descriptor_pb2.FieldDescriptorProto.Type.items()
}
# Paths into FileDescriptorProto (descriptor.proto field numbers), for SourceCodeInfo lookups.
MESSAGE, ENUM, SERVICE = 4, 5, 6
MESSAGE_FIELD, MESSAGE_NESTED, MESSAGE_ENUM = 2, 3, 4
ENUM_VALUE, SERVICE_METHOD = 2, 2


def descriptor_set(root: Path) -> descriptor_pb2.FileDescriptorSet:
    from grpc_tools import protoc

    protos = sorted(str(p.relative_to(root)) for p in (root / "faceflow").rglob("*.proto"))
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "set.pb"
        code = protoc.main(
            ["protoc", f"-I{root}", "--include_source_info", f"--descriptor_set_out={out}", *protos]
        )
        if code != 0:
            raise SystemExit(f"protoc failed on {root} ({code})")
        return descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())


def _comments(file: descriptor_pb2.FileDescriptorProto) -> dict[tuple[int, ...], str]:
    found = {}
    for location in file.source_code_info.location:
        text = (location.leading_comments or location.trailing_comments).strip()
        if text:
            # One line, and no bare "|": the comment goes into a table cell.
            found[tuple(location.path)] = " ".join(line.strip() for line in text.splitlines()).replace("|", "\\|")
    return found


def _local(type_name: str, package: str) -> str:
    return type_name.removeprefix(f".{package}.")


def _type(field: descriptor_pb2.FieldDescriptorProto, package: str) -> str:
    name = _local(field.type_name, package) if field.type_name else SCALARS[field.type]
    if field.label == descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED:
        return f"repeated {name}"
    return name


def _anchor(name: str) -> str:
    return name.lower().replace(".", "")


def _message(
    message: descriptor_pb2.DescriptorProto, path: tuple[int, ...], prefix: str, package: str, notes: dict
) -> Iterator[str]:
    name = f"{prefix}{message.name}"
    yield f"### {name}"
    yield ""
    if path in notes:
        yield notes[path]
        yield ""
    if message.field:
        oneofs = [o.name for o in message.oneof_decl]
        yield "| field | type | number | description |"
        yield "|---|---|---:|---|"
        for index, field in enumerate(message.field):
            note = notes.get((*path, MESSAGE_FIELD, index), "")
            if field.HasField("oneof_index") and not field.proto3_optional:
                note = f"(oneof `{oneofs[field.oneof_index]}`) {note}".strip()
            yield f"| `{field.name}` | `{_type(field, package)}` | {field.number} | {note} |"
        yield ""
    for index, nested in enumerate(message.nested_type):
        if not nested.options.map_entry:
            yield from _message(nested, (*path, MESSAGE_NESTED, index), f"{name}.", package, notes)
    for index, enum in enumerate(message.enum_type):
        yield from _enum(enum, (*path, MESSAGE_ENUM, index), f"{name}.", notes)


def _enum(enum: descriptor_pb2.EnumDescriptorProto, path: tuple[int, ...], prefix: str, notes: dict) -> Iterator[str]:
    yield f"### {prefix}{enum.name} (enum)"
    yield ""
    if path in notes:
        yield notes[path]
        yield ""
    yield "| value | number | description |"
    yield "|---|---:|---|"
    for index, value in enumerate(enum.value):
        yield f"| `{value.name}` | {value.number} | {notes.get((*path, ENUM_VALUE, index), '')} |"
    yield ""


def render(files: descriptor_pb2.FileDescriptorSet) -> str:
    lines = [HEADER]
    for file in sorted(files.file, key=lambda f: f.name):
        notes = _comments(file)
        package = file.package
        lines += [f"## {file.name}", ""]
        for s_index, service in enumerate(file.service):
            lines += [f"### service {package}.{service.name}", ""]
            if (SERVICE, s_index) in notes:
                lines += [notes[(SERVICE, s_index)], ""]
            lines += ["| rpc | request | response | description |", "|---|---|---|---|"]
            for m_index, method in enumerate(service.method):
                request = ("stream " if method.client_streaming else "") + _local(method.input_type, package)
                response = ("stream " if method.server_streaming else "") + _local(method.output_type, package)
                note = notes.get((SERVICE, s_index, SERVICE_METHOD, m_index), "")
                lines.append(
                    f"| `{method.name}` | [{request}](#{_anchor(request.split()[-1])}) | "
                    f"[{response}](#{_anchor(response.split()[-1])}) | {note} |"
                )
            lines.append("")
        for index, message in enumerate(file.message_type):
            lines += list(_message(message, (MESSAGE, index), "", package, notes))
        for index, enum in enumerate(file.enum_type):
            lines += list(_enum(enum, (ENUM, index), "", notes))
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--out", type=Path, help="write the reference here")
    group.add_argument("--check", type=Path, help="fail if this file is not what the protos give")
    parser.add_argument("--protos", type=Path, default=PROTO_ROOT)
    args = parser.parse_args(argv)
    text = render(descriptor_set(args.protos))
    if args.out:
        args.out.write_text(text)
        return 0
    if not args.check.is_file() or args.check.read_text() != text:
        print(f"{args.check} is stale: run `make protos` and commit it", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
