"""TypeScript syntax: how the IR (:mod:`~typed_ss.codegen.ir`) is written as TypeScript types.

The renderer writes the generated module with it, and :func:`~typed_ss.codegen.model.canonical_types`
writes the same text for the contract fingerprint, so what is hashed is what the generated code says.
It also knows the language's identifiers and reserved words, which naming has to avoid.
"""

from __future__ import annotations

import json
import re

from typed_ss.codegen import ir

__all__ = [
    "RESERVED_WORDS",
    "doc_comment",
    "is_identifier",
    "property_name",
    "write",
    "write_declaration",
]

_IDENTIFIER = re.compile(r"[A-Za-z_$][A-Za-z0-9_$]*")

RESERVED_WORDS = frozenset(
    [
        "break",
        "case",
        "catch",
        "class",
        "const",
        "continue",
        "debugger",
        "default",
        "delete",
        "do",
        "else",
        "enum",
        "export",
        "extends",
        "false",
        "finally",
        "for",
        "function",
        "if",
        "import",
        "in",
        "instanceof",
        "new",
        "null",
        "return",
        "super",
        "switch",
        "this",
        "throw",
        "true",
        "try",
        "typeof",
        "var",
        "void",
        "while",
        "with",
        "as",
        "implements",
        "interface",
        "let",
        "package",
        "private",
        "protected",
        "public",
        "static",
        "yield",
        "any",
        "boolean",
        "number",
        "string",
        "symbol",
        "object",
        "bigint",
        "never",
        "unknown",
        "undefined",
        "await",
        "async",
        "type",
        "declare",
        "readonly",
        "keyof",
        "infer",
        "is",
        "asserts",
        "module",
        "namespace",
        "require",
        "global",
        "of",
    ]
)
"""TypeScript's reserved words and the type keywords: neither a type nor a tuple label may be one."""


def is_identifier(text: str) -> bool:
    """Whether ``text`` can stand unquoted as a property name or tuple label."""
    return _IDENTIFIER.fullmatch(text) is not None


def property_name(name: str) -> str:
    """A property key: bare when it is an identifier, else a JSON (and so TS) string literal."""
    return name if is_identifier(name) else json.dumps(name, ensure_ascii=False)


def doc_comment(text: str | None, indent: str = "") -> str:
    """A JSDoc block for ``text`` (``""`` for none), every line prefixed by ``indent``; ``*/`` inside
    the text is escaped so it cannot end the comment."""
    if not text or not text.strip():
        return ""
    lines = [line.rstrip() for line in text.strip().replace("*/", "*\\/").splitlines()]
    if len(lines) == 1:
        return f"{indent}/** {lines[0]} */\n"
    body = "".join(f"{indent} *{' ' + line if line else ''}\n" for line in lines)
    return f"{indent}/**\n{body}{indent} */\n"


def write(node: ir.Node) -> str:
    """``node`` as a TypeScript type.

    Raises:
        RuntimeError: ``node`` still holds a :class:`~typed_ss.codegen.ir.Ref` (it was not named).
    """
    if isinstance(node, ir.Keyword):
        return node.name
    if isinstance(node, ir.Literal):
        return json.dumps(node.value, ensure_ascii=False)
    if isinstance(node, ir.Name):
        return node.text
    if isinstance(node, ir.Ref):
        raise RuntimeError(f"unresolved reference to {node.key!r}")
    if isinstance(node, ir.Array):
        return f"{_tight(node.item)}[]"
    if isinstance(node, ir.Tuple):
        return _tuple(node)
    if isinstance(node, ir.Union):
        return " | ".join(write(member) for member in node.members)
    if isinstance(node, ir.Object):
        parts = [_prop(prop) for prop in node.props]
        if node.index is not None:
            parts.append(f"[key: string]: {write(node.index)}")
        return f"{{ {'; '.join(parts)} }}" if parts else "{}"
    if isinstance(node, ir.Generic):
        return f"{node.name}<{', '.join(write(arg) for arg in node.args)}>"
    if isinstance(node, ir.Template):
        return f"`${{{write(node.of)}}}`"
    raise TypeError(f"not a type node: {node!r}")


def write_declaration(declaration: ir.Declaration) -> str:
    """``export interface`` for an object, ``export type`` for anything else, with its JSDoc."""
    doc = doc_comment(declaration.doc)
    body = declaration.type
    if isinstance(body, ir.Object) and body.props:
        return f"{doc}export interface {declaration.name} {{\n{_object_body(body, '  ')}}}\n"
    if isinstance(body, ir.Object):
        return f"{doc}export interface {declaration.name} {{}}\n"
    return f"{doc}export type {declaration.name} = {write(body)};\n"


def _tight(node: ir.Node) -> str:
    """``node`` written so that a postfix (``[]``, ``?``) applies to the whole type: a union binds
    looser than either, so it is parenthesised."""
    text = write(node)
    return f"({text})" if isinstance(node, ir.Union) else text


def _tuple(node: ir.Tuple) -> str:
    """``[number, string]``, or labelled ``[x: number, y?: number]`` when every label is an identifier."""
    labelled = (
        bool(node.elements)
        and node.rest is None
        and all(
            e.label is not None and is_identifier(e.label) and e.label not in RESERVED_WORDS
            for e in node.elements
        )
    )
    parts = []
    for element in node.elements:
        if labelled:
            parts.append(f"{element.label}{'?' if element.optional else ''}: {write(element.type)}")
        elif element.optional:
            parts.append(f"{_tight(element.type)}?")
        else:
            parts.append(write(element.type))
    if node.rest is not None:
        parts.append(f"...{_tight(node.rest)}[]")
    return f"[{', '.join(parts)}]"


def _object_body(node: ir.Object, indent: str) -> str:
    """The members, one per line (each with its JSDoc), for an ``interface`` declaration."""
    lines = [f"{doc_comment(prop.comment, indent)}{indent}{_prop(prop)};\n" for prop in node.props]
    if node.index is not None:
        lines.append(f"{indent}[key: string]: {write(node.index)};\n")
    return "".join(lines)


def _prop(prop: ir.Prop) -> str:
    return f"{property_name(prop.name)}{'?' if prop.optional else ''}: {write(prop.type)}"
