"use strict";
// Frame bytes in both directions, the reserved __hello/__error events, and malformed input.

const test = require("node:test");
const assert = require("node:assert/strict");
const { makeClient, bytes, binaryFrame } = require("../test-support/fake.js");

function connected(opts) {
  const client = makeClient(opts);
  client.ws().open();
  return client;
}

const enc = (s) => Array.from(Buffer.from(s, "utf8"));

// --- client -> server -----------------------------------------------------------------------------

test("a string goes as text: event 0x02 string", () => {
  const { ss, ws } = connected();
  ss.emit("join", "global");
  ss.emit("empty", "");
  assert.deepEqual(ws().sent, ["join\x02global", "empty\x02"]);
});

test("an object goes as JSON text", () => {
  const { ss, ws } = connected();
  ss.emit("message", { Room: "global", Message: "hi" });
  assert.deepEqual(ws().sent, ['message\x02{"Room":"global","Message":"hi"}']);
});

test("numbers, booleans, null and arrays go as JSON text", () => {
  const { ss, ws } = connected();
  ss.emit("a", 5);
  ss.emit("a", true);
  ss.emit("a", null);
  ss.emit("a", [1, "x"]);
  assert.deepEqual(ws().sent, ["a\x025", "a\x02true", "a\x02null", 'a\x02[1,"x"]']);
});

test("emit with no data sends an empty payload, not 'undefined'", () => {
  const { ss, ws } = connected();
  ss.emit("ping");
  ss.emit("ping", undefined);
  assert.deepEqual(ws().sent, ["ping\x02", "ping\x02"]);
});

test("an ArrayBuffer goes as a binary frame", () => {
  const { ss, ws } = connected();
  ss.emit("echobin", Uint8Array.of(1, 2, 3).buffer);
  assert.ok(ws().sent[0] instanceof ArrayBuffer);
  assert.deepEqual(bytes(ws().sent[0]), [...enc("echobin"), 2, 1, 2, 3]);
});

test("a Uint8Array goes as binary, only its own window of the buffer", () => {
  const { ss, ws } = connected();
  const backing = Uint8Array.of(9, 1, 2, 3, 9);
  ss.emit("bin", backing.subarray(1, 4));
  assert.deepEqual(bytes(ws().sent[0]), [...enc("bin"), 2, 1, 2, 3]);
});

test("a DataView and other typed arrays go as binary", () => {
  const { ss, ws } = connected();
  const buf = Uint8Array.of(7, 0xde, 0xad, 7).buffer;
  ss.emit("dv", new DataView(buf, 1, 2));
  ss.emit("u16", Uint16Array.of(0x0102));
  assert.deepEqual(bytes(ws().sent[0]), [...enc("dv"), 2, 0xde, 0xad]);
  assert.deepEqual(bytes(ws().sent[1]), [...enc("u16"), 2, ...new Uint8Array(Uint16Array.of(0x0102).buffer)]);
});

test("an empty ArrayBuffer is a binary frame with an empty payload", () => {
  const { ss, ws } = connected();
  ss.emit("e", new ArrayBuffer(0));
  assert.deepEqual(bytes(ws().sent[0]), [...enc("e"), 2]);
});

test("payload bytes 0x01 and 0x02 go through unchanged", () => {
  const { ss, ws } = connected();
  ss.emit("raw", Uint8Array.of(1, 2, 1));
  ss.emit("txt", "a\x01b\x02c");
  assert.deepEqual(bytes(ws().sent[0]), [...enc("raw"), 2, 1, 2, 1]);
  assert.equal(ws().sent[1], "txt\x02a\x01b\x02c");
});

test("a non-ASCII event name is UTF-8 in binary frames", () => {
  const { ss, ws } = connected();
  ss.emit("café😀", Uint8Array.of(5));
  assert.deepEqual(bytes(ws().sent[0]), [...enc("café😀"), 2, 5]);
});

test("bad event names and unencodable data fail locally", () => {
  const { ss, ws, errors } = connected();
  const cyclic = {};
  cyclic.self = cyclic;
  assert.equal(ss.emit("", "x"), false);
  assert.equal(ss.emit(42, "x"), false);
  assert.equal(ss.emit("a\x02b", "x"), false);
  assert.equal(ss.emit("cyc", cyclic), false);
  assert.equal(ss.emit("fn", () => {}), false);
  assert.equal(ss.emit("big", 10n), false);
  assert.deepEqual(ws().sent, []);
  assert.deepEqual(
    errors.map((e) => e.code),
    ["bad_event", "bad_event", "bad_event", "bad_data", "bad_data", "bad_data"],
  );
  assert.equal(errors[3].event, "cyc");
});

test("a send that throws is reported and returns false", () => {
  const { ss, ws, errors } = connected();
  ws().send = () => {
    throw new Error("boom");
  };
  assert.equal(ss.emit("a", "b"), false);
  assert.equal(errors[0].code, "send_failed");
  assert.equal(errors[0].cause.message, "boom");
});

// --- server -> client -----------------------------------------------------------------------------

function listen(ss, event) {
  const got = [];
  ss.on(event, (data) => got.push(data));
  return got;
}

test("an S frame gives the string", () => {
  const { ss, ws } = connected();
  const got = listen(ss, "echo");
  ws().receive("echo\x01S\x02hello");
  ws().receive("echo\x01S\x02");
  assert.deepEqual(got, ["hello", ""]);
});

test("a J frame gives the parsed JSON", () => {
  const { ss, ws } = connected();
  const got = listen(ss, "user");
  ws().receive('user\x01J\x02{"name":"ann"}');
  ws().receive("user\x01J\x02null");
  ws().receive("user\x01J\x0242");
  assert.deepEqual(got, [{ name: "ann" }, null, 42]);
});

test("a B frame gives an ArrayBuffer holding exactly the payload", () => {
  const { ss, ws } = connected();
  const got = listen(ss, "echobin");
  ws().receive(binaryFrame("echobin", "B", [0xde, 0xad]));
  ws().receive(binaryFrame("echobin", "B", []));
  assert.ok(got[0] instanceof ArrayBuffer);
  assert.deepEqual(bytes(got[0]), [0xde, 0xad]);
  assert.equal(got[1].byteLength, 0);
});

test("payloads keep 0x01 and 0x02 bytes after the first 0x02", () => {
  const { ss, ws } = connected();
  const got = listen(ss, "x");
  ws().receive("x\x01S\x02a\x01b\x02c");
  ws().receive("x\x02a\x01b"); // no header section: the original lost the 0x01 here
  ws().receive(binaryFrame("x", "B", [2, 1, 2]));
  assert.deepEqual(got.slice(0, 2), ["a\x01b\x02c", "a\x01b"]);
  assert.deepEqual(bytes(got[2]), [2, 1, 2]);
});

test("several flags are allowed; unknown ones are ignored", () => {
  const { ss, ws } = connected();
  const got = listen(ss, "x");
  ws().receive('x\x01ZJQ\x02{"a":1}');
  ws().receive("x\x01ZQ\x02plain");
  assert.deepEqual(got, [{ a: 1 }, "plain"]);
});

test("a non-ASCII event name is decoded as UTF-8 from binary frames", () => {
  const { ss, ws } = connected();
  const got = listen(ss, "café😀");
  ws().receive(binaryFrame("café😀", "B", [7]));
  ws().receive("café😀\x01S\x02text");
  assert.deepEqual(bytes(got[0]), [7]);
  assert.equal(got[1], "text");
});

test("a J flag on a binary frame is decoded as UTF-8 JSON", () => {
  const { ss, ws } = connected();
  const got = listen(ss, "j");
  ws().receive(binaryFrame("j", "J", Buffer.from('{"é":1}')));
  assert.deepEqual(got, [{ é: 1 }]);
});

test("a Node Buffer (binaryType not honoured) is read as binary", () => {
  const { ss, ws } = connected();
  const got = listen(ss, "b");
  ws().receive(Buffer.from([0x62, 1, 0x42, 2, 9]));
  assert.deepEqual(bytes(got[0]), [9]);
});

test("events nobody listens to are ignored quietly", () => {
  const { ws, errors } = connected();
  ws().receive("nobody\x01S\x02x");
  ws().receive("nobody\x01J\x02{bad json");
  assert.deepEqual(errors, []);
});

test("__hello sets id and maxMessageSize and is not dispatched", () => {
  const { ss, ws, errors } = connected();
  const got = listen(ss, "__hello");
  assert.equal(ss.id, null);
  assert.equal(ss.maxMessageSize, null);
  ws().receive('__hello\x01J\x02{"v":1,"id":"abc","max_message_size":1024,"future":true}');
  assert.equal(ss.id, "abc");
  assert.equal(ss.maxMessageSize, 1024);
  assert.deepEqual(got, []);
  assert.deepEqual(errors, []);
});

test("__hello sets contract and calls onHello with the payload", () => {
  const { ss, ws, errors } = connected();
  const hellos = [];
  ss.onHello(function (hello) {
    hellos.push([this.id, this.contract, hello.contract]);
  });
  assert.equal(ss.contract, null);
  ws().receive('__hello\x01J\x02{"v":1,"id":"abc","max_message_size":1024,"contract":"f00d"}');
  assert.deepEqual(hellos, [["abc", "f00d", "f00d"]]);
  ws().receive('__hello\x01J\x02{"v":1,"id":"def","max_message_size":1024}');
  assert.equal(ss.contract, null);
  assert.equal(hellos.length, 2);
  assert.deepEqual(errors, []);
});

test("the id is cleared on disconnect and replaced by the next __hello", () => {
  const { ss, ws, clock } = connected();
  ws().receive('__hello\x01J\x02{"v":1,"id":"one","max_message_size":64}');
  let idInCallback;
  ss.onDisconnect(function () {
    idInCallback = this.id;
  });
  ws().serverClose(1012);
  assert.equal(idInCallback, "one");
  assert.equal(ss.id, null);
  assert.equal(ss.maxMessageSize, 64); // the last limit we know of still applies to queued emits
  clock.fire();
  ws().open();
  ws().receive('__hello\x01J\x02{"v":1,"id":"two","max_message_size":128}');
  assert.equal(ss.id, "two");
  assert.equal(ss.maxMessageSize, 128);
});

test("__error reaches onError with the payload and is not dispatched", () => {
  const { ss, ws, errors } = connected();
  const got = listen(ss, "__error");
  const payload = { event: "join", code: "invalid_payload", detail: "Expected `str`, got `int`" };
  ws().receive("__error\x01J\x02" + JSON.stringify(payload));
  assert.deepEqual(got, []);
  assert.equal(errors.length, 1);
  const err = errors[0];
  assert.equal(err.code, "server_error");
  assert.equal(err.event, "join");
  assert.equal(err.serverCode, "invalid_payload");
  assert.equal(err.detail, payload.detail);
  assert.deepEqual(err.payload, payload);
});

test("malformed server frames are reported, never thrown", () => {
  const { ss, ws, errors } = connected();
  ss.on("x", () => assert.fail("must not be called"));
  const frames = [
    "x no delimiter",
    "\x01S\x02empty name",
    "\x02empty name",
    "x\x01J\x02",
    "x\x01J\x02{not json",
    new Uint8Array([0x78, 0x01, 0x42]).buffer,
    new Uint8Array([0x02, 0x01]).buffer,
    "__hello\x01J\x02",
    "__hello\x01J\x0242",
    "__error\x01J\x02null",
    { some: "blob" },
  ];
  for (const frame of frames) {
    assert.doesNotThrow(() => ws().receive(frame));
  }
  assert.deepEqual(
    errors.map((e) => e.code),
    [
      "bad_frame",
      "bad_frame",
      "bad_frame",
      "bad_json",
      "bad_json",
      "bad_frame",
      "bad_frame",
      "bad_json",
      "bad_frame",
      "bad_frame",
      "bad_frame",
    ],
  );
  assert.equal(errors[3].event, "x");
  assert.ok(errors[3].cause instanceof SyntaxError);
  assert.equal(ss.connected, true);
});

test("a handler that throws is reported, never thrown, and later frames still arrive", () => {
  const { ss, ws, errors } = connected();
  const boom = new Error("handler bug");
  const got = [];
  ss.on("x", (data) => {
    got.push(data);
    throw boom;
  });
  assert.doesNotThrow(() => ws().receive("x\x01S\x021"));
  assert.doesNotThrow(() => ws().receive("x\x01S\x022"));
  assert.deepEqual(got, ["1", "2"]);
  assert.equal(errors.length, 2);
  assert.equal(errors[0].code, "callback_error");
  assert.equal(errors[0].event, "x");
  assert.equal(errors[0].cause, boom);
});

test("onConnect and onDisconnect exceptions are reported, not thrown", () => {
  const { ss, ws, errors, clock } = makeClient();
  ss.onConnect(() => {
    throw new Error("c");
  });
  ss.onDisconnect(() => {
    throw new Error("d");
  });
  assert.doesNotThrow(() => ws().open());
  assert.doesNotThrow(() => ws().serverClose(1006));
  assert.deepEqual(
    errors.map((e) => [e.code, e.event]),
    [
      ["callback_error", "onConnect"],
      ["callback_error", "onDisconnect"],
    ],
  );
  assert.equal(clock.pending, 1, "the reconnect is still scheduled");
});

// --- maxMessageSize ---------------------------------------------------------------------------------

test("an emit larger than maxMessageSize fails locally with false and an error", () => {
  const { ss, ws, errors } = connected();
  ws().receive('__hello\x01J\x02{"v":1,"id":"i","max_message_size":10}');
  assert.equal(ss.emit("abc", "123456"), true); // 3 + 1 + 6 bytes: exactly the limit
  assert.equal(ss.emit("abc", "1234567"), false);
  assert.equal(ss.emit("abc", new Uint8Array(7)), false);
  assert.equal(ss.emit("abc", { k: 1 }), false); // {"k":1} is 7 bytes
  assert.equal(ss.emit("abc", [1]), true);
  assert.deepEqual(ws().sent, ["abc\x02123456", "abc\x02[1]"]);
  assert.deepEqual(
    errors.map((e) => [e.code, e.event, e.size, e.limit]),
    [
      ["too_big", "abc", 11, 10],
      ["too_big", "abc", 11, 10],
      ["too_big", "abc", 11, 10],
    ],
  );
  assert.equal(ws().readyState, 1, "the connection stays open");
});

test("the size limit counts UTF-8 bytes, not UTF-16 code units", () => {
  const { ss, ws, errors } = connected();
  ws().receive('__hello\x01J\x02{"v":1,"id":"i","max_message_size":8}');
  assert.equal(ss.emit("é", "éé"), true); // 2 + 1 + 4 = 7 bytes
  assert.equal(ss.emit("é", "ééé"), false); // 9 bytes in 5 code units
  assert.equal(ss.emit("e", "😀"), true); // 1 + 1 + 4 = 6
  assert.equal(ss.emit("e", "😀😀"), false); // 10
  assert.equal(ss.emit("e", "\ud800x"), true); // a lone surrogate is sent as U+FFFD: 1 + 1 + 3 + 1 = 6
  assert.deepEqual(
    errors.map((e) => e.size),
    [9, 10],
  );
  assert.equal(ws().sent.length, 3);
});

test("without a __hello there is no size limit", () => {
  const { ss, ws } = connected();
  assert.equal(ss.emit("big", "x".repeat(1 << 20)), true);
  assert.equal(ws().sent.length, 1);
});
