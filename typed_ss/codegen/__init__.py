"""``typed-ss gen-client``: a typed TypeScript client generated from a server's contract.

- :mod:`~typed_ss.codegen.model` walks the contract into named TypeScript types (received and sent
  shapes), with :mod:`~typed_ss.codegen.pydantic` for pydantic models;
- :mod:`~typed_ss.codegen.typescript` is the small type AST those are made of;
- :mod:`~typed_ss.codegen.render` writes the module (``.ts``, or ``.js`` + ``.d.ts``) and copies the
  plain client next to it;
- :mod:`~typed_ss.codegen.files` writes files atomically, skips unchanged ones, and diffs for ``--check``.
"""

from __future__ import annotations

from typed_ss.codegen.model import ClientModel, CodegenError, build
from typed_ss.codegen.render import GeneratedFile, Lang, render
from typed_ss.contract import Contract

__all__ = ["ClientModel", "CodegenError", "GeneratedFile", "Lang", "build", "generate"]


def generate(contract: Contract, lang: Lang = "ts", source: str = "a typed-ss server") -> list[GeneratedFile]:
    """Every file of the typed client for ``contract``; ``source`` names the app in the banner.

    Raises:
        CodegenError: a payload type has no TypeScript form (the message names the event and field).
    """
    return render(build(contract), lang, source)
