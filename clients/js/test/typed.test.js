"use strict";
// The typed runtime (ss-typed.js) that generated clients call, driven through a fake WebSocket: framing by
// wire kind, Blob ordering, listener lists, the contract check and close code 4010. The generated code is
// only a contract and a call to `connect`, so this is where the client's behaviour is pinned; the
// generated clients against a real server are tests/codegen/e2e.mjs and test/typed-chat.test.mjs.

const test = require("node:test");
const assert = require("node:assert/strict");
const { makeFakeWebSocket, makeClock, bytes } = require("../test-support/fake.js");
const typed = require("../ss-typed.js");

const FINGERPRINT = "0123456789abcdef0123456789abcdef";
const KINDS = { chat: "json", say: "text", upload: "binary", ping: "json" };

/** A typed client on a FakeWebSocket with a fake clock (the socket is opened by the test). */
function open(options = {}, contract = { fingerprint: FINGERPRINT, kinds: KINDS }) {
  const FakeWebSocket = makeFakeWebSocket();
  const clock = makeClock();
  const client = typed.connect(
    "ws://test/socket",
    contract,
    Object.assign(
      {
        WebSocket: FakeWebSocket,
        setTimeout: clock.setTimeout,
        clearTimeout: clock.clearTimeout,
        now: clock.now,
        random: () => 0.5,
      },
      options,
    ),
  );
  const errors = [];
  client.onError((error) => errors.push(error));
  return { client, errors, clock, FakeWebSocket, ws: () => FakeWebSocket.last() };
}

const hello = (fields) => "__hello\x01J\x02" + JSON.stringify(Object.assign({ v: 1, id: "abc" }, fields));

/** Resolves after pending promise callbacks (Blob reads) have run. */
const settle = () => new Promise((resolve) => setImmediate(resolve));

test("withContract adds ss_contract, keeping the query string and the fragment", () => {
  const { withContract } = typed;
  assert.equal(withContract("ws://h/s", "f"), "ws://h/s?ss_contract=f");
  assert.equal(withContract("ws://h/s?token=abc", "f"), "ws://h/s?token=abc&ss_contract=f");
  assert.equal(withContract("ws://h/s?", "f"), "ws://h/s?ss_contract=f");
  assert.equal(withContract("ws://h/s?a=1&", "f"), "ws://h/s?a=1&ss_contract=f");
  assert.equal(withContract("ws://h/s?a=1#frag?x", "f"), "ws://h/s?a=1&ss_contract=f#frag?x");
  assert.equal(withContract("ws://h/s", "a b&c"), "ws://h/s?ss_contract=a%20b%26c");
  assert.equal(typed.RELOAD_NEEDED_CODE, 4010);
});

test("connect opens the plain client with the fingerprint and passes its options through", () => {
  const { client, ws } = open({ reconnectOpts: { cap: 123 } });
  assert.equal(ws().url, "ws://test/socket?ss_contract=" + FINGERPRINT);
  assert.equal(client.raw.url, ws().url);
  assert.equal(client.raw.reconnectOpts.cap, 123);
  assert.equal(client.contract, FINGERPRINT);
  assert.equal(client.connected, false);
  ws().open();
  assert.equal(client.connected, true);
  assert.equal(client.id, null);
  ws().receive(hello({ contract: FINGERPRINT }));
  assert.equal(client.id, "abc");
});

test("JSON events are sent as JSON text: strings quoted, a missing payload as null", () => {
  const { client, ws, errors } = open();
  ws().open();
  assert.equal(client.send.chat({ text: "hi" }), true);
  assert.equal(client.emit("chat", "on"), true);
  assert.equal(client.send.ping(), true);
  assert.deepEqual(ws().sent, ['chat\x02{"text":"hi"}', 'chat\x02"on"', "ping\x02null"]);
  assert.deepEqual(errors, []);
});

test("a JSON payload with no JSON form is refused locally with bad_data", () => {
  const { client, ws, errors } = open();
  ws().open();
  const cycle = {};
  cycle.self = cycle;
  assert.equal(client.send.chat(cycle), false);
  assert.equal(client.send.chat(() => 1), false);
  assert.deepEqual(ws().sent, []);
  assert.deepEqual(
    errors.map((e) => [e.code, e.event]),
    [
      ["bad_data", "chat"],
      ["bad_data", "chat"],
    ],
  );
  assert.ok(errors[0].cause instanceof TypeError);
  assert.equal(errors[1].cause, undefined);
});

test("text events need a string and are sent raw; binary events need bytes", () => {
  const { client, ws, errors } = open();
  ws().open();
  assert.equal(client.send.say('"as is"'), true);
  assert.equal(client.send.say({ text: 1 }), false);
  assert.equal(client.send.upload(new Uint8Array([1, 2])), true);
  assert.equal(client.send.upload(new Uint8Array([3]).buffer), true);
  assert.equal(client.send.upload(new DataView(new Uint8Array([4]).buffer)), true);
  assert.equal(client.send.upload("not bytes"), false);
  assert.equal(ws().sent[0], 'say\x02"as is"');
  assert.deepEqual(bytes(ws().sent[1]), [...Buffer.from("upload\x02"), 1, 2]);
  assert.deepEqual(bytes(ws().sent[2]), [...Buffer.from("upload\x02"), 3]);
  assert.deepEqual(bytes(ws().sent[3]), [...Buffer.from("upload\x02"), 4]);
  assert.deepEqual(
    errors.map((e) => e.code),
    ["bad_data", "bad_data"],
  );
});

test("an event outside the contract follows the plain client's rules", () => {
  const { client, ws } = open();
  ws().open();
  client.emit("other", "raw text");
  client.emit("other", { a: 1 });
  assert.deepEqual(ws().sent, ["other\x02raw text", 'other\x02{"a":1}']);
});

test("a Blob is read asynchronously, and the emits made after it wait for it", async () => {
  const { client, ws, errors } = open();
  ws().open();
  let release;
  const blob = {
    size: 2,
    arrayBuffer: () => new Promise((resolve) => (release = () => resolve(new Uint8Array([9, 8]).buffer))),
  };
  assert.equal(client.send.upload(blob), true);
  assert.equal(client.send.chat({ after: true }), true);
  await settle();
  assert.deepEqual(ws().sent, [], "nothing overtakes the Blob");
  release();
  await settle();
  assert.deepEqual(bytes(ws().sent[0]), [...Buffer.from("upload\x02"), 9, 8]);
  assert.equal(ws().sent[1], 'chat\x02{"after":true}');
  // Once the queue is empty, emits go out at once again.
  client.send.say("now");
  assert.equal(ws().sent[2], "say\x02now");
  assert.deepEqual(errors, []);
});

test("a Blob that cannot be read is reported, and the emits behind it still go out", async () => {
  const { client, ws, errors } = open();
  ws().open();
  const broken = { size: 1, arrayBuffer: () => Promise.reject(new Error("gone")) };
  client.send.upload(broken);
  client.send.say("next");
  await settle();
  assert.deepEqual(ws().sent, ["say\x02next"]);
  assert.equal(errors.length, 1);
  assert.equal(errors[0].code, "bad_data");
  assert.equal(errors[0].cause.message, "gone");
});

test("send has one frozen sender per contract event and nothing else", () => {
  const { client } = open();
  assert.deepEqual(Object.keys(client.send).sort(), ["chat", "ping", "say", "upload"]);
  assert.ok(Object.isFrozen(client.send));
  assert.equal(Object.getPrototypeOf(client.send), null);
  assert.equal(client.send.toString, undefined);
});

test("any number of listeners per event; the last one off releases the plain client's handler", (t) => {
  const { client, ws } = open();
  ws().open();
  const rawOn = t.mock.method(client.raw, "on");
  const rawOff = t.mock.method(client.raw, "off");
  const got = [];
  const offA = client.on("news", (m) => got.push(["a", m]));
  const offB = client.on("news", (m) => got.push(["b", m]));
  assert.deepEqual(
    rawOn.mock.calls.map((call) => call.arguments[0]),
    ["news"],
    "one plain handler for any number of listeners",
  );
  ws().receive('news\x01J\x02{"n":1}');
  offA();
  offA(); // a second call does nothing
  ws().receive('news\x01J\x02{"n":2}');
  assert.deepEqual(got, [
    ["a", { n: 1 }],
    ["b", { n: 1 }],
    ["b", { n: 2 }],
  ]);
  assert.equal(rawOff.mock.callCount(), 0);
  offB();
  assert.deepEqual(
    rawOff.mock.calls.map((call) => call.arguments),
    [["news"]],
  );
  ws().receive('news\x01J\x02{"n":3}');
  assert.equal(got.length, 3);
  client.on("news", (m) => got.push(["c", m])); // a new first listener registers again
  assert.equal(rawOn.mock.callCount(), 2);
});

test("a listener that throws is reported as callback_error and the others still run", () => {
  const { client, ws, errors } = open();
  ws().open();
  const got = [];
  client.on("news", () => {
    throw new Error("boom");
  });
  client.on("news", (m) => got.push(m));
  ws().receive("news\x01S\x02x");
  assert.deepEqual(got, ["x"]);
  assert.equal(errors.length, 1);
  assert.equal(errors[0].code, "callback_error");
  assert.equal(errors[0].event, "news");
  assert.match(errors[0].message, /news listener threw: boom/);
});

test("without an onError listener errors are logged; a throwing onError listener is logged too", (t) => {
  const logged = [];
  t.mock.method(console, "error", (...args) => logged.push(args));
  const FakeWebSocket = makeFakeWebSocket();
  const client = typed.connect("ws://t/s", { fingerprint: FINGERPRINT, kinds: KINDS }, { WebSocket: FakeWebSocket });
  FakeWebSocket.last().open();
  client.send.say(1);
  assert.equal(logged.length, 1);
  assert.equal(logged[0][0], "typed-ss client:");
  assert.equal(logged[0][1].code, "bad_data");
  const off = client.onError(() => {
    throw new Error("listener broke");
  });
  client.send.say(2);
  assert.equal(logged.length, 3);
  assert.match(logged[2][0], /an onError listener threw/);
  off();
  client.close();
});

test("onConnect and onDisconnect listeners, any number, each removable", () => {
  const { client, ws, clock, errors } = open();
  const seen = [];
  client.onConnect(() => seen.push("connect 1"));
  const off = client.onConnect(() => seen.push("connect 2"));
  client.onDisconnect((event) => seen.push("disconnect " + event.code));
  ws().open();
  off();
  ws().serverClose(1012);
  clock.fire();
  ws().open();
  assert.deepEqual(seen, ["connect 1", "connect 2", "disconnect 1012", "connect 1"]);
  assert.deepEqual(errors, []);
});

test("__error frames reach onServerError typed, and onError too", () => {
  const { client, ws, errors } = open();
  ws().open();
  const got = [];
  client.onServerError((e) => got.push(e));
  ws().receive('__error\x01J\x02{"event":"chat","code":"invalid_payload","detail":"bad $.text","extra":1}');
  assert.deepEqual(got, [{ event: "chat", code: "invalid_payload", detail: "bad $.text" }]);
  assert.deepEqual(
    errors.map((e) => e.code),
    ["server_error"],
  );
});

test("contractStatus follows __hello; another fingerprint calls onContractMismatch", () => {
  const { client, ws } = open();
  const mismatches = [];
  client.onContractMismatch((m) => mismatches.push(m));
  assert.equal(client.contractStatus, "unknown");
  assert.equal(client.serverContract, null);
  ws().open();
  ws().receive(hello({ contract: FINGERPRINT }));
  assert.equal(client.contractStatus, "current");
  ws().receive(hello({ contract: "f".repeat(32) }));
  assert.equal(client.contractStatus, "stale");
  assert.equal(client.serverContract, "f".repeat(32));
  assert.deepEqual(mismatches, [{ clientContract: FINGERPRINT, serverContract: "f".repeat(32) }]);
  ws().receive(hello({}));
  assert.equal(client.contractStatus, "unknown", "a server that sends no fingerprint");
  assert.equal(mismatches.length, 1);
});

test("4010: onReloadNeeded after the onDisconnect listeners, and never a reconnect", () => {
  // Even when reconnectCodes lists 4010: only a reload helps.
  const { client, ws, clock, FakeWebSocket, errors } = open({ reconnectOpts: { reconnectCodes: [4010] } });
  const order = [];
  client.onDisconnect((event) => order.push("disconnect " + event.code));
  client.onReloadNeeded((info) => order.push(info));
  ws().open();
  ws().receive(hello({ contract: "e".repeat(32) }));
  ws().serverClose(4010);
  assert.deepEqual(order, [
    "disconnect 4010",
    { code: "reload_needed", closeCode: 4010, clientContract: FINGERPRINT, serverContract: "e".repeat(32) },
  ]);
  assert.equal(client.raw.reconnectOpts.enabled, false);
  assert.equal(clock.pending, 0);
  clock.fire();
  assert.equal(FakeWebSocket.instances.length, 1);
  assert.ok(errors.some((e) => e.code === "reload_needed"));
});

test("close() closes the plain client for good", () => {
  const { client, ws, clock } = open();
  ws().open();
  client.close();
  assert.deepEqual(ws().closeCalls, [1000]);
  ws().finishClose();
  assert.equal(clock.pending, 0);
  assert.equal(client.connected, false);
});

test("an empty contract: no senders, and every emit follows the plain client's rules", () => {
  const { client, ws } = open({}, { fingerprint: FINGERPRINT, kinds: {} });
  ws().open();
  assert.deepEqual(Object.keys(client.send), []);
  client.emit("x", "y");
  assert.deepEqual(ws().sent, ["x\x02y"]);
});

test("connection state recovery: offsets go back with the token, and onReconnect says how it went", () => {
  const { client, clock, FakeWebSocket } = open();
  const reconnects = [];
  const gaps = [];
  const said = [];
  client.onReconnect((event) => reconnects.push(event));
  client.onGap((gap) => gaps.push(gap));
  client.on("say", (text) => said.push(text));
  const first = FakeWebSocket.last();
  first.open();
  first.receive(hello({ session: "tok en" }));
  first.receive("say\x01So12.7\x02one"); // a kept frame: stream 12, offset 7
  first.receive("say\x01So34.9\x02two");
  first.receive('__gap\x01J\x02{"room":"r","lost":2}');
  first.serverClose(1006);
  clock.fire();
  const second = FakeWebSocket.last();
  assert.notEqual(second, first);
  assert.equal(second.url, "ws://test/socket?ss_contract=" + FINGERPRINT + "&ss_session=tok%20en&ss_offsets=12.7,34.9");
  second.open();
  second.receive(hello({ session: "tok en", recovered: true, rooms: ["r"] }));
  second.receive("say\x01So12.8\x02three");
  assert.deepEqual(said, ["one", "two", "three"]);
  assert.deepEqual(gaps, [{ room: "r", lost: 2 }]);
  assert.deepEqual(reconnects, [{ recovered: true, rooms: ["r"] }]);
  second.serverClose(1006);
  clock.fire();
  const third = FakeWebSocket.last();
  assert.ok(third.url.endsWith("&ss_offsets=12.8,34.9"));
  third.open();
  third.receive(hello({ session: "new", recovered: false }));
  assert.deepEqual(reconnects[1], { recovered: false, rooms: [] });
  third.serverClose(1006);
  clock.fire();
  assert.ok(FakeWebSocket.last().url.endsWith("ss_session=new&ss_offsets=")); // a fresh session: no offsets
});
