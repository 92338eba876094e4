"""``@ss.on`` and the hook decorators: what registration refuses, and how each payload type is decoded.

Registration errors are raised when the decorator runs, so these tests need no server. Handlers that
mypy would reject on purpose are registered through ``Any`` (see ``register``), so this module still
passes ``mypy --strict``.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import random
from collections.abc import Callable
from typing import Annotated, Any, Literal

import msgspec
import pydantic
import pytest
from starlette.applications import Starlette
from starlette.requests import HTTPConnection
from starlette.routing import WebSocketRoute

from tests.support import connect_client, running
from typed_ss import (
    ConfigurationError,
    HandlerSignatureError,
    InvalidName,
    PayloadValidationError,
    Server,
    Socket,
)
from typed_ss.handlers import MAX_DETAIL_LENGTH, Decoder, build_decoder, inspect_handler


class Chat(msgspec.Struct):
    room: str
    text: str


class LoudChat(Chat):
    shout: bool = True


class Tree(msgspec.Struct):
    children: list[Tree]


class Envelope(msgspec.Struct):
    data: Any


@dataclasses.dataclass
class Point:
    x: int
    y: int


class Profile(pydantic.BaseModel):
    name: str
    age: int


class PydanticEnvelope(pydantic.BaseModel):
    data: Any


class Plain:
    """Neither msgspec nor pydantic can decode this."""

    def __init__(self, value: int) -> None:
        self.value = value


DEEP = 10_000


def deep_list(depth: int = DEEP) -> bytes:
    return b"[" * depth + b"]" * depth


def register(ss: Server, event: str, handler: object, *model: object) -> object:
    """``ss.on(event[, model])(handler)`` without mypy's opinion of ``handler``."""
    on: Any = ss.on
    result: object = on(event, *model)(handler)
    return result


def decoder(payload_type: object) -> Decoder:
    decode = build_decoder("e", payload_type)
    assert decode is not None, f"{payload_type!r} should need a decoder"
    return decode


def invalid(decode: Decoder, payload: bytes) -> PayloadValidationError:
    with pytest.raises(PayloadValidationError) as raised:
        decode(payload)
    assert raised.value.event == "e"
    return raised.value


# --- registration: signatures ----------------------------------------------------------------------


def sync_handler(sock: Socket, data: bytes) -> None: ...


async def one_param(sock: Socket) -> None: ...


async def three_params(sock: Socket, data: bytes, extra: int) -> None: ...


async def keyword_only_payload(sock: Socket, *, data: bytes) -> None: ...


async def async_generator(sock: Socket, data: bytes) -> Any:
    yield data


@pytest.mark.parametrize(
    ("handler", "says"),
    [
        pytest.param(sync_handler, "must be an `async def` function", id="sync-function"),
        pytest.param(lambda sock, data: None, "must be an `async def` function", id="lambda"),
        pytest.param(async_generator, "must be an `async def` function", id="async-generator"),
        pytest.param(one_param, "exactly two positional parameters", id="one-param"),
        pytest.param(three_params, "exactly two positional parameters", id="three-params"),
        pytest.param(keyword_only_payload, "exactly two positional parameters", id="keyword-only-payload"),
        pytest.param(print, "must be an `async def` function", id="builtin"),
    ],
)
def test_bad_signature_raises_at_decoration_time(handler: object, says: str) -> None:
    ss = Server()
    with pytest.raises(HandlerSignatureError) as raised:
        register(ss, "ev", handler)
    message = str(raised.value)
    assert says in message
    assert "'ev'" in message
    assert "async def handler(sock: Socket, payload: T) -> None" in message
    assert isinstance(raised.value, TypeError)
    assert "ev" not in ss.handlers


def test_signature_error_names_the_function_and_where_it_is() -> None:
    ss = Server()
    with pytest.raises(HandlerSignatureError) as raised:
        register(ss, "ev", three_params)
    assert "three_params at " in str(raised.value)
    assert f"{__file__}:" in str(raised.value)


def test_extra_parameters_with_defaults_are_accepted() -> None:
    ss = Server()

    async def with_default(sock: Socket, data: str, extra: int = 1) -> None: ...

    async def variadic(*args: Any) -> None: ...

    assert register(ss, "a", with_default) is with_default
    assert register(ss, "b", variadic) is variadic
    assert ss.handlers["a"].payload_type is str
    assert ss.handlers["b"].payload_type is bytes


def test_failed_registration_leaves_the_event_free() -> None:
    ss = Server()
    with pytest.raises(HandlerSignatureError):
        register(ss, "ev", sync_handler)

    @ss.on("ev")
    async def fixed(sock: Socket, data: bytes) -> None: ...

    assert ss.handlers["ev"].handler is fixed


# --- registration: annotations and explicit models -------------------------------------------------


def test_annotation_contradicting_the_explicit_model_is_refused() -> None:
    ss = Server()

    async def counts(sock: Socket, n: int) -> None: ...

    with pytest.raises(HandlerSignatureError, match="make them agree") as raised:
        register(ss, "ev", counts, Chat)
    assert "int" in str(raised.value)
    assert "Chat" in str(raised.value)

    async def wants_subclass(sock: Socket, msg: LoudChat) -> None: ...

    with pytest.raises(HandlerSignatureError, match="make them agree"):
        register(ss, "ev", wants_subclass, Chat)
    assert "ev" not in ss.handlers


@pytest.mark.parametrize(
    ("annotation", "explicit"),
    [(Chat, Chat), (Chat, LoudChat), (object, Chat), (Any, Chat)],
    ids=["same", "explicit-subclass", "object", "any"],
)
def test_explicit_model_agreeing_with_the_annotation_is_used(annotation: object, explicit: type[Any]) -> None:
    async def handler(sock: Socket, msg: Any) -> None: ...

    handler.__annotations__["msg"] = annotation
    spec = inspect_handler("ev", handler, explicit)
    assert spec.payload_type is explicit
    assert spec.decode is not None
    assert type(spec.decode(b'{"room":"r","text":"t"}')) is explicit


def test_unresolvable_annotation_points_to_the_explicit_form() -> None:
    # Under `from __future__ import annotations` the annotation is the string "Local", which cannot be
    # resolved from the module's globals.
    class Local(msgspec.Struct):
        x: int

    ss = Server()
    with pytest.raises(HandlerSignatureError) as raised:

        @ss.on("local")
        async def local(sock: Socket, msg: Local) -> None: ...

    assert "@ss.on(event, Model)" in str(raised.value)
    assert "Local" in str(raised.value)
    assert "local" not in ss.handlers

    @ss.on("local", Local)
    async def local_explicit(sock: Socket, msg: Local) -> None: ...

    spec = ss.handlers["local"]
    assert spec.payload_type is Local
    assert spec.decode is not None
    assert spec.decode(b'{"x": 3}') == Local(x=3)


@pytest.mark.parametrize(
    "payload_type", [Plain, list[Plain], dict[Plain, int]], ids=["plain-class", "list-of-plain", "dict-key"]
)
def test_payload_type_nobody_can_decode_is_refused(payload_type: object) -> None:
    ss = Server()

    async def handler(sock: Socket, value: Any) -> None: ...

    handler.__annotations__["value"] = payload_type
    with pytest.raises(HandlerSignatureError, match="cannot be decoded from JSON") as raised:
        register(ss, "ev", handler)
    assert "'ev'" in str(raised.value)
    with pytest.raises(HandlerSignatureError, match="cannot be decoded from JSON"):
        register(ss, "ev", handler, payload_type)
    assert "ev" not in ss.handlers


# --- registration: names ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("event", "says"),
    [
        pytest.param("__x", "reserved", id="reserved"),
        pytest.param("__hello", "reserved", id="reserved-hello"),
        pytest.param("", "must not be empty", id="empty"),
        pytest.param("a" * 129, "longer than 128 bytes", id="129-bytes"),
        pytest.param("é" * 65, "longer than 128 bytes", id="130-utf8-bytes-65-chars"),
        pytest.param("a\x01b", "delimiter", id="soh"),
        pytest.param("a\x02b", "delimiter", id="stx"),
    ],
)
def test_bad_event_names_raise_invalid_name(event: str, says: str) -> None:
    ss = Server()
    with pytest.raises(InvalidName, match=says):

        @ss.on(event)
        async def handler(sock: Socket, data: bytes) -> None: ...

    assert not ss.handlers


def test_event_names_at_the_limits_are_accepted() -> None:
    ss = Server(max_event_name_length=16)
    with pytest.raises(InvalidName):
        ss.on("a" * 17)
    for event in ("a" * 16, "é" * 8, "_x", "x__"):

        @ss.on(event)
        async def handler(sock: Socket, data: bytes) -> None: ...

    assert set(ss.handlers) == {"a" * 16, "é" * 8, "_x", "x__"}


def test_second_handler_for_an_event_is_refused() -> None:
    ss = Server()

    @ss.on("ev")
    async def first(sock: Socket, data: bytes) -> None: ...

    async def second(sock: Socket, data: str) -> None: ...

    with pytest.raises(ConfigurationError) as raised:
        ss.on("ev")(second)
    assert type(raised.value) is ConfigurationError
    assert "first" in str(raised.value)
    assert "one handler per event" in str(raised.value)
    assert ss.handlers["ev"].handler is first


# --- registration: hooks ---------------------------------------------------------------------------


async def socket_hook(sock: Socket) -> None: ...


async def other_socket_hook(sock: Socket) -> None: ...


async def auth_hook(request: HTTPConnection) -> object:
    return "user"


async def other_auth_hook(request: HTTPConnection) -> object:
    return "other"


def sync_hook(arg: Any) -> None: ...


HOOKS = ["on_connect", "on_disconnect", "authenticate"]


def hooks_for(name: str) -> tuple[Callable[..., Any], Callable[..., Any]]:
    return (auth_hook, other_auth_hook) if name == "authenticate" else (socket_hook, other_socket_hook)


@pytest.mark.parametrize("name", HOOKS)
def test_hook_registered_twice_is_refused(name: str) -> None:
    ss = Server()
    first, second = hooks_for(name)
    decorate: Callable[[object], object] = getattr(ss, name)
    assert decorate(first) is first
    with pytest.raises(ConfigurationError) as raised:
        decorate(second)
    assert type(raised.value) is ConfigurationError
    assert name in str(raised.value)
    assert first.__qualname__ in str(raised.value)


@pytest.mark.parametrize("name", HOOKS)
@pytest.mark.parametrize("hook", [sync_hook, lambda arg: None], ids=["sync-function", "lambda"])
def test_sync_hook_is_refused_and_leaves_the_slot_free(name: str, hook: object) -> None:
    ss = Server()
    decorate: Callable[[object], object] = getattr(ss, name)
    with pytest.raises(HandlerSignatureError, match="must be an `async def` function"):
        decorate(hook)
    first, _ = hooks_for(name)
    assert decorate(first) is first


# --- decorators return the function unchanged ------------------------------------------------------


def test_decorators_return_the_function_unchanged() -> None:
    ss = Server()

    async def handler(sock: Socket, msg: Chat) -> None: ...

    async def explicit(sock: Socket, msg: Chat) -> None: ...

    assert ss.on("a")(handler) is handler
    assert ss.on("b", Chat)(explicit) is explicit
    assert ss.on_connect(socket_hook) is socket_hook
    assert ss.on_disconnect(other_socket_hook) is other_socket_hook
    assert ss.authenticate(auth_hook) is auth_hook
    assert ss.handlers["a"].handler is handler
    assert ss.handlers["b"].handler is explicit


# --- other async callables -------------------------------------------------------------------------


class AsyncCallable:
    async def __call__(self, sock: Socket, text: str) -> None: ...


class AsyncCallableWithAttributes:
    prefix: str = ">"

    async def __call__(self, sock: Socket, text: str) -> None: ...


class Handlers:
    async def method(self, sock: Socket, msg: Chat) -> None: ...


async def prefixed(prefix: str, sock: Socket, text: str) -> None: ...


@pytest.mark.parametrize(
    "handler",
    [AsyncCallable(), AsyncCallableWithAttributes()],
    ids=["plain-class", "class-with-annotated-attributes"],
)
def test_object_with_async_call_is_accepted_and_decoded_from_its_annotation(handler: object) -> None:
    ss = Server()
    assert register(ss, "ev", handler) is handler
    spec = ss.handlers["ev"]
    assert spec.payload_type is str
    assert spec.decode is not None
    assert spec.decode("hé".encode()) == "hé"


def test_partial_of_async_function_is_accepted_and_decoded_from_its_annotation() -> None:
    ss = Server()
    handler = functools.partial(prefixed, ">")
    assert register(ss, "ev", handler) is handler
    assert ss.handlers["ev"].payload_type is str


def test_bound_async_method_is_accepted() -> None:
    ss = Server()
    handler = Handlers().method
    assert ss.on("ev")(handler) == handler
    assert ss.handlers["ev"].payload_type is Chat


# --- decoding: raw bytes and text ------------------------------------------------------------------


def test_bytes_are_passed_through() -> None:
    assert build_decoder("e", bytes) is None

    async def raw(sock: Socket, data: bytes) -> None: ...

    spec = inspect_handler("e", raw, None)
    assert (spec.payload_type, spec.decode) == (bytes, None)


def test_handler_without_annotation_gets_bytes() -> None:
    async def untyped(sock, data):  # type: ignore[no-untyped-def]
        pass

    spec = inspect_handler("e", untyped, None)
    assert (spec.payload_type, spec.decode) == (bytes, None)

    async def socket_only(sock: Socket, data) -> None:  # type: ignore[no-untyped-def]
        pass

    spec = inspect_handler("e", socket_only, None)
    assert (spec.payload_type, spec.decode) == (bytes, None)


def test_unannotated_payload_with_explicit_model_uses_the_model() -> None:
    async def untyped(sock, data):  # type: ignore[no-untyped-def]
        pass

    spec = inspect_handler("e", untyped, Chat)
    assert spec.payload_type is Chat
    assert spec.decode is not None
    assert spec.decode(b'{"room":"r","text":"t"}') == Chat("r", "t")


def test_str_is_strict_utf8() -> None:
    decode = decoder(str)
    assert decode(b"") == ""
    assert decode("héllo \U0001f600".encode()) == "héllo \U0001f600"
    assert decode(b'{"not": "json-decoded"}') == '{"not": "json-decoded"}'
    for bad, at in [
        (b"\xff", 0),
        (b"ok\xc3", 2),  # truncated two-byte sequence
        (b"a\xc0\xaf", 1),  # overlong encoding of "/"
        (b"ab\xed\xa0\x80", 2),  # an encoded UTF-16 surrogate
        (b"\xf4\x90\x80\x80", 0),  # past U+10FFFF
    ]:
        error = invalid(decode, bad)
        assert error.detail == f"payload is not valid UTF-8 at byte {at}"


# --- decoding: msgspec -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload_type", "good", "value", "bad", "where"),
    [
        pytest.param(
            Chat, b'{"room":"r","text":"t"}', Chat("r", "t"), b'{"room":1,"text":"t"}', "- at `$.room`",
            id="struct",
        ),
        pytest.param(
            Point, b'{"x":1,"y":2}', Point(1, 2), b'{"x":1}', "missing required field `y`", id="dataclass"
        ),
        pytest.param(int, b"42", 42, b'"42"', "Expected `int`, got `str`", id="int"),
        pytest.param(int, b"-7", -7, b"true", "Expected `int`, got `bool`", id="int-not-bool"),
        pytest.param(float, b"1.5", 1.5, b"null", "Expected `float`, got `null`", id="float"),
        pytest.param(list[int], b"[1,2,3]", [1, 2, 3], b'[1,"a"]', "$[1]", id="list-int"),
        pytest.param(dict[str, int], b'{"a":1}', {"a": 1}, b'{"a":"1"}', "$[...]", id="dict"),
        pytest.param(Literal["a", "b"], b'"b"', "b", b'"c"', "Invalid enum value 'c'", id="literal"),
        pytest.param(int | None, b"null", None, b'"x"', "Expected `int | null`", id="optional"),
        pytest.param(int | str, b'"x"', "x", b"[]", "Expected `int | str`", id="union"),
        pytest.param(Chat | None, b"null", None, b"{}", "missing required field", id="optional-struct"),
        pytest.param(Annotated[int, msgspec.Meta(ge=0)], b"0", 0, b"-1", "Expected `int` >= 0", id="meta-ge"),
        pytest.param(
            list[Annotated[str, msgspec.Meta(max_length=2)]], b'["ab"]', ["ab"], b'["abc"]',
            "Expected `str` of length <= 2 - at `$[0]`", id="meta-max-length",
        ),
    ],
)  # fmt: skip
def test_msgspec_types(payload_type: object, good: bytes, value: object, bad: bytes, where: str) -> None:
    decode = decoder(payload_type)
    decoded = decode(good)
    assert decoded == value
    assert type(decoded) is type(value)
    assert where in invalid(decode, bad).detail


@pytest.mark.parametrize(
    "payload",
    [b"", b"{", b"undefined", b"NaN", b'{"room":"r","text":"t"} trailing', b"\xff"],
    ids=["empty", "truncated", "undefined", "nan", "trailing-data", "not-utf8"],
)
def test_malformed_json_is_a_payload_error(payload: bytes) -> None:
    error = invalid(decoder(Chat), payload)
    assert error.detail
    assert "invalid payload for event 'e'" in str(error)


def test_struct_ignores_unknown_fields() -> None:
    assert decoder(Chat)(b'{"room":"r","text":"t","extra":[1,2]}') == Chat("r", "t")


def test_error_detail_does_not_echo_the_input() -> None:
    assert "SECRET" not in invalid(decoder(Chat), b'{"room":"SECRET","text":7}').detail
    assert "SECRET" not in invalid(decoder(Profile), b'{"name":"n","age":"SECRET"}').detail


# --- decoding: pydantic ----------------------------------------------------------------------------


def test_pydantic_model() -> None:
    decode = decoder(Profile)
    assert decode(b'{"name":"ann","age":3}') == Profile(name="ann", age=3)
    detail = invalid(decode, b'{"name":"ann","age":"old"}').detail
    assert "`$.age`" in detail
    assert "valid integer" in detail
    assert invalid(decode, b'{"name":"ann"}').detail == "Field required - at `$.age`"
    assert invalid(decode, b"undefined").detail


def test_pydantic_error_detail_lists_at_most_three_errors() -> None:
    class Wide(pydantic.BaseModel):
        a: int
        b: int
        c: int
        d: int
        e: int

    detail = invalid(decoder(Wide), b"{}").detail
    assert detail.count("Field required") == 3
    assert detail.endswith("and 2 more errors")


def test_list_of_pydantic_models_falls_back_to_a_type_adapter() -> None:
    decode = decoder(list[Profile])
    assert decode(b'[{"name":"a","age":1},{"name":"b","age":2}]') == [
        Profile(name="a", age=1),
        Profile(name="b", age=2),
    ]
    assert "`$[1].age`" in invalid(decode, b'[{"name":"a","age":1},{"name":"b","age":"x"}]').detail
    assert invalid(decode, b"{").detail


# --- decoding: nesting bombs -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload_type", "bomb", "fine"),
    [
        pytest.param(
            Envelope, b'{"data":' + deep_list() + b"}", b'{"data":[[1]]}', id="msgspec-struct-any-field"
        ),
        pytest.param(Any, deep_list(), b"[[1]]", id="msgspec-any"),
        pytest.param(list[Any], deep_list(), b"[[1]]", id="msgspec-list-any"),
        pytest.param(
            Tree, b'{"children":[' * DEEP + b"]}" * DEEP, b'{"children":[]}', id="msgspec-recursive-struct"
        ),
        pytest.param(
            PydanticEnvelope, b'{"data":' + deep_list() + b"}", b'{"data":[[1]]}', id="pydantic-model"
        ),
        pytest.param(
            list[PydanticEnvelope], b'[{"data":' + deep_list() + b"}]", b'[{"data":[[1]]}]',
            id="pydantic-type-adapter",
        ),
    ],
)  # fmt: skip
def test_deep_nesting_is_a_payload_error_not_a_recursion_error(
    payload_type: object, bomb: bytes, fine: bytes
) -> None:
    decode = decoder(payload_type)
    assert "nest" in invalid(decode, bomb).detail.lower() or "recursion" in invalid(decode, bomb).detail
    assert decode(fine)  # the decoder still works afterwards


def test_moderate_nesting_still_decodes() -> None:
    assert decoder(Envelope)(b'{"data":' + deep_list(50) + b"}") is not None
    assert decoder(PydanticEnvelope)(b'{"data":' + deep_list(50) + b"}") is not None


# --- the decoder is built once ---------------------------------------------------------------------


async def test_decoder_is_built_at_registration_not_per_message(monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[object] = []
    real_decoder = msgspec.json.Decoder

    def counting_decoder(*args: Any, **kwargs: Any) -> Any:
        built.append(args[0] if args else kwargs.get("type"))
        return real_decoder(*args, **kwargs)

    monkeypatch.setattr(msgspec.json, "Decoder", counting_decoder)
    ss = Server()

    @ss.on("chat")
    async def chat(sock: Socket, msg: Chat) -> None:
        await sock.emit("chat", msg)

    # The payload's decoder, and the check of the reply type (the handler's `-> None`).
    assert built == [Chat, type(None)]
    app = Starlette(routes=[WebSocketRoute("/socket", ss)], lifespan=ss.lifespan)
    async with running(app, ss) as url, connect_client(url) as client:
        for i in range(3):
            await client.send("chat", f'{{"room":"r","text":"{i}"}}')
            assert (await client.expect("chat")).json() == {"room": "r", "text": str(i)}
    assert built == [Chat, type(None)]


# --- the decoders' contract: PayloadValidationError and nothing else ------------------------------


@dataclasses.dataclass
class Named:
    name: str


class PydanticNamed(pydantic.BaseModel):
    name: str


def fail_on(value: int) -> None:
    """What the application validators below raise, by the value they validate."""
    failures: dict[int, Callable[[], BaseException]] = {
        1: lambda: KeyError("client\nkey"),
        2: lambda: OverflowError("too big"),
        3: lambda: ZeroDivisionError("internal detail"),
        # (A ValueError, UnicodeDecodeError included, is the validators' way to refuse a value:
        # msgspec and pydantic turn it into their validation error, with its message.)
        5: MemoryError,
    }
    if value in failures:
        raise failures[value]()


class CheckedStruct(msgspec.Struct):
    x: int

    def __post_init__(self) -> None:
        fail_on(self.x)


@dataclasses.dataclass
class CheckedDataclass:
    x: int

    def __post_init__(self) -> None:
        fail_on(self.x)


class CheckedModel(pydantic.BaseModel):
    x: int

    @pydantic.field_validator("x")
    @classmethod
    def check(cls, x: int) -> int:
        fail_on(x)
        return x


@pytest.mark.parametrize(
    ("payload_type", "payload"),
    [
        pytest.param(Chat, b'{"room":"\xff","text":"x"}', id="struct"),
        pytest.param(list[str], b'["ok","\xff"]', id="list-str"),
        pytest.param(dict[str, int], b'{"\xff":1}', id="dict-key"),
        pytest.param(Literal["a", "b"], b'"\xff"', id="literal"),
        pytest.param(int | str, b'"\xff"', id="union"),
        pytest.param(Named, b'{"name":"a\xc3"}', id="dataclass"),
        pytest.param(Envelope, b'{"data":["\xed\xa0\x80"]}', id="struct-any-field"),
        pytest.param(Any, b'{"k":"\xf4\x90\x80\x80"}', id="any"),
    ],
)
def test_invalid_utf8_inside_json_is_a_payload_error_for_msgspec(
    payload_type: object, payload: bytes
) -> None:
    error = invalid(decoder(payload_type), payload)
    with pytest.raises(UnicodeDecodeError) as exc:
        payload.decode()
    assert error.detail == f"payload is not valid UTF-8 at byte {exc.value.start}"


@pytest.mark.parametrize(
    ("payload_type", "payload"),
    [
        pytest.param(PydanticNamed, b'{"name":"\xff"}', id="pydantic-model"),
        pytest.param(list[PydanticNamed], b'[{"name":"\xff"}]', id="pydantic-type-adapter"),
    ],
)
def test_invalid_utf8_inside_json_is_a_payload_error_for_pydantic(
    payload_type: object, payload: bytes
) -> None:
    assert "invalid unicode code point" in invalid(decoder(payload_type), payload).detail


@pytest.mark.parametrize("payload_type", [CheckedStruct, CheckedDataclass, CheckedModel, list[CheckedModel]])
@pytest.mark.parametrize("value", [1, 2, 3], ids=["KeyError", "OverflowError", "ZeroDivisionError"])
def test_an_application_validator_that_raises_anything_is_a_payload_error(
    payload_type: object, value: int, caplog: pytest.LogCaptureFixture
) -> None:
    payload = b'{"x":%d}' % value
    if payload_type == list[CheckedModel]:
        payload = b"[" + payload + b"]"
    error = invalid(decoder(payload_type), payload)
    assert error.detail == "the payload could not be decoded"  # never the exception's own text
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    message = warnings[0].getMessage()
    assert "payload validator for event 'e' raised" in message
    assert "\n" not in message  # the exception's text may hold the client's input: quoted with %r


@pytest.mark.parametrize("payload_type", [CheckedStruct, CheckedDataclass, CheckedModel])
def test_memory_error_is_not_swallowed(payload_type: object) -> None:
    with pytest.raises(MemoryError):
        decoder(payload_type)(b'{"x":5}')


def test_error_details_are_printable_and_bounded() -> None:
    # pydantic's path quotes the client's dict key; msgspec quotes an unknown enum value.
    detail = invalid(decoder(dict[str, PydanticNamed]), b'{"a\\nb\\u2028c":{}}').detail
    assert detail.isprintable()
    assert "a\\nb\\u2028c" in detail
    detail = invalid(decoder(Literal["a"]), b'"' + b"x" * 100_000 + b'"').detail
    assert len(detail) <= MAX_DETAIL_LENGTH
    assert detail.endswith("...")


def mutations(rng: random.Random, valid: bytes, count: int) -> list[bytes]:
    """``count`` variations of ``valid``: bytes flipped, inserted (invalid UTF-8 among them),
    deleted, and truncations."""
    alphabet = [b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x00", b'"', b"\\", b"[", b"{", b"9" * 400, b"\\ud800"]
    out = []
    for _ in range(count):
        data = bytearray(valid)
        for _ in range(rng.randint(1, 4)):
            at = rng.randrange(len(data) + 1)
            roll = rng.random()
            if roll < 0.3 and data:
                data[min(at, len(data) - 1)] = rng.randrange(256)
            elif roll < 0.6:
                data[at:at] = rng.choice(alphabet)
            elif roll < 0.8 and data:
                del data[min(at, len(data) - 1)]
            else:
                del data[at:]
        out.append(bytes(data))
    return out


@pytest.mark.parametrize(
    ("payload_type", "valid"),
    [
        pytest.param(str, "héllo".encode(), id="str"),
        pytest.param(Chat, b'{"room":"r\xc3\xa9","text":"t"}', id="struct"),
        pytest.param(list[str], b'["a","b"]', id="list-str"),
        pytest.param(dict[str, int], b'{"a":1,"b":-2}', id="dict"),
        pytest.param(Literal["on", "off"], b'"on"', id="literal"),
        pytest.param(int | str | None, b"12345678901234567890", id="union"),
        pytest.param(Point, b'{"x":1,"y":2}', id="dataclass"),
        pytest.param(Tree, b'{"children":[{"children":[]}]}', id="recursive-struct"),
        pytest.param(Any, b'{"a":[1,2.5,"x",null,true]}', id="any"),
        pytest.param(Profile, b'{"name":"ann","age":3}', id="pydantic-model"),
        pytest.param(list[Profile], b'[{"name":"ann","age":3}]', id="pydantic-type-adapter"),
        pytest.param(CheckedStruct, b'{"x":1}', id="struct-with-post-init"),
        pytest.param(CheckedModel, b'{"x":3}', id="pydantic-with-validator"),
    ],
)
def test_decoders_raise_nothing_but_payload_errors_on_mutated_payloads(
    payload_type: object, valid: bytes
) -> None:
    decode = decoder(payload_type)
    details = []
    for payload in mutations(random.Random(f"{payload_type!r}"), valid, 400):
        try:
            decode(payload)
        except PayloadValidationError as exc:  # any other exception fails the test
            details.append(exc.detail)
    assert details  # the mutations do reach the error paths
    assert all(d.isprintable() and 0 < len(d) <= MAX_DETAIL_LENGTH for d in details)
    assert not [d for d in details if "codec" in d or "Traceback" in d]


@pytest.mark.parametrize("kind", [bytearray, memoryview])
def test_bytearray_and_memoryview_handlers_get_the_raw_payload_as_the_contract_says(kind: type) -> None:
    ss = Server()

    async def handler(sock: Socket, data: object) -> None:
        pass

    ss.on("raw", kind)(handler)
    spec = ss.handlers["raw"]
    assert ss.contract.direction("client_to_server")[0].kind == "binary"
    assert spec.decode is not None
    value = spec.decode(b"\x00\xff not json")
    assert isinstance(value, bytearray | memoryview)
    assert type(value) is kind
    assert bytes(value) == b"\x00\xff not json"
