"""``typed-ss gen-client``: a typed TypeScript client generated from a server's contract, in stages.

1. Front ends describe each payload type, and the reply type of each event that can be called, in the
   IR (:mod:`~typed_ss.codegen.ir`):
   :mod:`~typed_ss.codegen.from_msgspec`, and :mod:`~typed_ss.codegen.from_pydantic` for payloads that
   use pydantic models. They report what they cannot describe with
   :class:`~typed_ss.codegen.errors.CodegenError`.
2. :mod:`~typed_ss.codegen.model` turns the contract into the client model: it routes each event to a
   front end, names the types (:mod:`~typed_ss.codegen.naming`) and resolves the references.
3. :mod:`~typed_ss.codegen.render` writes the generated module (``.ts``, or ``.js`` + ``.d.ts``) from the
   model, with :mod:`~typed_ss.codegen.typescript`, the TypeScript syntax of the IR.
4. :mod:`~typed_ss.codegen.runtime` adds the JavaScript the module runs on (the plain client and the
   typed runtime from ``clients/js``), and :mod:`~typed_ss.codegen.files` writes it all atomically,
   skipping unchanged files, or diffs it for ``--check``.

``--lang py`` renders the same model with :mod:`~typed_ss.codegen.python` instead: one Python module,
which runs on :mod:`typed_ss.client` (installed with typed-ss, so nothing is copied next to it).

What a payload type *is* (its wire kind, whether pydantic or msgspec describes it) is
:mod:`typed_ss.typeinfo`'s, shared with the server.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, TypeAlias

from typed_ss.codegen import runtime
from typed_ss.codegen.errors import CodegenError
from typed_ss.codegen.files import GeneratedFile
from typed_ss.codegen.ir import ClientModel
from typed_ss.codegen.model import build
from typed_ss.codegen.render import Lang, render

if TYPE_CHECKING:
    from typed_ss.contract import Contract

__all__ = ["AnyLang", "ClientModel", "CodegenError", "GeneratedFile", "Lang", "build", "generate"]

AnyLang: TypeAlias = Lang | Literal["py"]
"""Every language ``generate`` writes: the TypeScript renderer's (:data:`Lang`) and ``py``."""


def generate(
    contract: Contract, lang: AnyLang = "ts", source: str = "a typed-ss server"
) -> list[GeneratedFile]:
    """Every file of the typed client for ``contract``, sorted by name: the generated module and the
    runtime it imports. ``source`` names the app in the banner.

    Raises:
        CodegenError: a payload type has no TypeScript form (the message names the event and field).
    """
    if lang == "py":
        # Imported here: the TypeScript path never needs it.
        from typed_ss.codegen import python

        return python.render(build(contract), source)
    files = runtime.bundle() + render(build(contract), lang, source)
    return sorted(files, key=lambda f: f.name)
