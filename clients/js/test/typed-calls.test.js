"use strict";
// The typed runtime's calls (ss-typed.js: client.call.<event>, client.handle.<event>) through a fake
// WebSocket: payloads and replies framed by the contract's wire kinds, Blob ordering, handler lifetimes.
// The same against a real server: tests/codegen/e2e.mjs and tests/browser/test_calls_page.py.

const test = require("node:test");
const assert = require("node:assert/strict");
const { makeFakeWebSocket, makeClock, bytes, binaryFrame } = require("../test-support/fake.js");
const typed = require("../ss-typed.js");
const SS = require("../ss.js");

const CONTRACT = {
  fingerprint: "0123456789abcdef0123456789abcdef",
  kinds: { add: "json", toggle: "json", upper: "text", reverse: "binary", ping: "json" },
  replyKinds: { confirm: "json", choose: "json", greet: "text", sign: "binary" },
};

/** A connected typed client on a FakeWebSocket (its __hello received). */
function open(contract = CONTRACT) {
  const FakeWebSocket = makeFakeWebSocket();
  const clock = makeClock();
  const client = typed.connect("ws://test/socket", contract, {
    WebSocket: FakeWebSocket,
    setTimeout: clock.setTimeout,
    clearTimeout: clock.clearTimeout,
    now: clock.now,
  });
  const errors = [];
  client.onError((error) => errors.push(error));
  const ws = () => FakeWebSocket.last();
  ws().open();
  ws().receive("__hello\x01J\x02" + JSON.stringify({ v: 1, id: "abc", contract: contract.fingerprint, max_calls: 64 }));
  return { client, errors, clock, ws };
}

/** Resolves after pending promise callbacks (Blob reads) have run. */
const settle = () => new Promise((resolve) => setImmediate(resolve));

/** A Blob-like whose bytes are read asynchronously, as a browser's. */
function blob(values) {
  return { size: values.length, arrayBuffer: () => new Promise((resolve) => setImmediate(() => resolve(new Uint8Array(values).buffer))) };
}

async function failure(promise) {
  let value;
  try {
    value = await promise;
  } catch (error) {
    return error;
  }
  assert.fail(`the call succeeded with ${JSON.stringify(value)}`);
}

test("call.<event> exists for each event the client sends, and is frozen", () => {
  const { client } = open();
  assert.deepEqual(Object.keys(client.call).sort(), ["add", "ping", "reverse", "toggle", "upper"]);
  assert.ok(Object.isFrozen(client.call));
  assert.deepEqual(Object.keys(client.handle).sort(), ["choose", "confirm", "greet", "sign"]);
  assert.ok(Object.isFrozen(client.handle));
});

test("a call frames its payload by wire kind: JSON text (strings quoted, nothing as null), raw text, binary", async () => {
  const { client, ws } = open();
  const calls = [
    client.call.add({ a: 1 }),
    client.call.toggle("on"),
    client.call.ping(),
    client.call.upper("tea"),
    client.call.reverse(new Uint8Array([1, 2])),
  ];
  const sent = ws().sent;
  assert.deepEqual(sent.slice(0, 4), ['add\x01c1\x02{"a":1}', 'toggle\x01c2\x02"on"', "ping\x01c3\x02null", "upper\x01c4\x02tea"]);
  assert.deepEqual(bytes(sent[4]), [...Buffer.from("reverse\x01c5\x02"), 1, 2]);
  ws().receive('add\x01Jr1\x02{"sum":1}');
  ws().receive("toggle\x01Jr2\x02null");
  ws().receive("ping\x01Jr3\x02null");
  ws().receive("upper\x01Sr4\x02TEA");
  ws().receive(binaryFrame("reverse", "Br5", [2, 1]));
  const [sum, toggled, pong, upper, reversed] = await Promise.all(calls);
  assert.deepEqual([sum, toggled, pong, upper], [{ sum: 1 }, null, null, "TEA"]);
  assert.deepEqual(bytes(reversed), [2, 1]);
});

test("a call whose payload does not fit its wire kind is refused locally with bad_data, not reported", async () => {
  const { client, ws, errors } = open();
  const cycle = {};
  cycle.self = cycle;
  for (const refused of [client.call.upper(42), client.call.reverse("bytes"), client.call.add(cycle)]) {
    const error = await failure(refused);
    assert.ok(error instanceof SS.SSError);
    assert.equal(error.code, "bad_data");
  }
  assert.deepEqual(ws().sent, []);
  assert.deepEqual(errors, []);
});

test("a Blob payload is read first, and emits and calls after it wait for it, in order", async () => {
  const { client, ws } = open();
  const first = client.call.reverse(blob([1, 2, 3]));
  client.send.upper("after the blob");
  const second = client.call.add({ a: 2 });
  assert.deepEqual(ws().sent, [], "nothing overtakes the Blob");
  await settle();
  await settle();
  const sent = ws().sent;
  assert.equal(sent.length, 3);
  assert.deepEqual(bytes(sent[0]), [...Buffer.from("reverse\x01c1\x02"), 1, 2, 3]);
  assert.deepEqual(sent.slice(1), ["upper\x02after the blob", 'add\x01c2\x02{"a":2}']);
  ws().receive(binaryFrame("reverse", "Br1", [3, 2, 1]));
  ws().receive('add\x01Jr2\x02{"sum":2}');
  assert.deepEqual(bytes(await first), [3, 2, 1]);
  assert.deepEqual(await second, { sum: 2 });
});

test("a Blob that cannot be read fails its call with bad_data and lets the next ones go", async () => {
  const { client, ws } = open();
  const broken = { size: 1, arrayBuffer: () => Promise.reject(new Error("gone")) };
  const failed = client.call.reverse(broken);
  const next = client.call.upper("x");
  const error = await failure(failed);
  assert.equal(error.code, "bad_data");
  await settle();
  assert.deepEqual(ws().sent, ["upper\x01c1\x02x"]);
  ws().receive("upper\x01Sr1\x02X");
  assert.equal(await next, "X");
});

test("call errors come from the plain client: ServerError, CallTimeout, Disconnected", async () => {
  const { client, ws, clock } = open();
  const refused = client.call.add({ a: "x" });
  ws().receive('add\x01Je1\x02{"code":"invalid_payload","message":"Expected `int`","data":null}');
  const error = await failure(refused);
  assert.deepEqual([error.name, error.code, error.message, error.data], ["ServerError", "invalid_payload", "Expected `int`", null]);
  const slow = client.call.upper("x", { timeout: 10 });
  assert.deepEqual(clock.delays, [5000, 10], "the default timeout, then the one given");
  clock.fire();
  assert.equal((await failure(slow)).name, "CallTimeout");
  const cut = client.call.upper("y");
  ws().serverClose(1006);
  assert.equal((await failure(cut)).name, "Disconnected");
});

test("handle.<event> answers the server's calls, the reply framed by the reply's wire kind", async () => {
  const { client, ws, errors } = open();
  const questions = [];
  client.handle.confirm(async (question) => {
    questions.push(question);
    return { yes: true };
  });
  client.handle.choose(() => "tea"); // a JSON string: sent quoted
  client.handle.greet((who) => "hello " + who);
  client.handle.sign((data) => new Uint8Array(data).reverse());
  ws().receive('confirm\x01Jc1\x02{"text":"tea?"}');
  ws().receive('choose\x01Jc2\x02["tea","coffee"]');
  ws().receive("greet\x01Sc3\x02ann");
  ws().receive(binaryFrame("sign", "Bc4", [1, 2, 3]));
  await settle();
  assert.deepEqual(questions, [{ text: "tea?" }]);
  const sent = ws().sent;
  assert.deepEqual(sent.slice(0, 3), ['confirm\x01r1\x02{"yes":true}', 'choose\x01r2\x02"tea"', "greet\x01r3\x02hello ann"]);
  assert.deepEqual(bytes(sent[3]), [...Buffer.from("sign\x01r4\x02"), 3, 2, 1]);
  assert.deepEqual(errors, []);
});

test("a JSON reply left out is null; a Blob reply is read; a reply of the wrong kind is a handler_error", async () => {
  const { client, ws, errors } = open();
  client.handle.confirm(() => undefined);
  client.handle.sign(() => blob([9]));
  client.handle.greet(() => 42);
  ws().receive('confirm\x01Jc1\x02{"text":"?"}');
  ws().receive(binaryFrame("sign", "Bc2", [1]));
  ws().receive("greet\x01Sc3\x02x");
  await settle();
  await settle();
  const sent = ws().sent;
  assert.equal(sent.length, 3);
  const text = sent.filter((frame) => typeof frame === "string").sort();
  assert.deepEqual(text, [
    "confirm\x01r1\x02null",
    'greet\x01e3\x02{"code":"handler_error","message":"the reply to \\"greet\\" was not sent: a text reply must be a string","data":null}',
  ]);
  const binary = sent.find((frame) => typeof frame !== "string");
  assert.deepEqual(bytes(binary), [...Buffer.from("sign\x01r2\x02"), 9]);
  assert.deepEqual(errors.map((e) => [e.code, e.event]), [["callback_error", "greet"]]);
});

test("a handler's error with a code is the error reply; unsubscribing leaves unknown_event", async () => {
  const { client, ws } = open();
  const off = client.handle.confirm(() => {
    throw Object.assign(new Error("later"), { code: "busy", data: { retry: 5 } });
  });
  ws().receive('confirm\x01Jc1\x02{"text":"?"}');
  await settle();
  off();
  off(); // a second call does nothing
  ws().receive('confirm\x01Jc2\x02{"text":"?"}');
  await settle();
  assert.deepEqual(ws().sent, [
    'confirm\x01e1\x02{"code":"busy","message":"later","data":{"retry":5}}',
    'confirm\x01e2\x02{"code":"unknown_event","message":"no handler for event \\"confirm\\"","data":null}',
  ]);
});

test("one handler per event: a second replaces the first, and the first's unsubscribe leaves it", async () => {
  const { client, ws } = open();
  const offFirst = client.handle.greet(() => "first");
  client.handle.greet(() => "second");
  offFirst();
  ws().receive("greet\x01Sc1\x02x");
  await settle();
  assert.deepEqual(ws().sent, ["greet\x01r1\x02second"]);
});

test("server calls never reach on listeners, and events never reach handle", async () => {
  const { client, ws } = open();
  const heard = [];
  client.on("confirm", (payload) => heard.push(payload));
  client.handle.confirm(() => ({ yes: false }));
  ws().receive('confirm\x01J\x02{"text":"an event"}');
  ws().receive('confirm\x01Jc1\x02{"text":"a call"}');
  await settle();
  assert.deepEqual(heard, [{ text: "an event" }]);
  assert.deepEqual(ws().sent, ['confirm\x01r1\x02{"yes":false}']);
});

test("a contract without replyKinds (an older generated client) has no handle entries and still works", () => {
  const { client, ws } = open({ fingerprint: CONTRACT.fingerprint, kinds: { upper: "text" } });
  assert.deepEqual(Object.keys(client.handle), []);
  assert.equal(client.send.upper("x"), true);
  assert.deepEqual(ws().sent, ["upper\x02x"]);
});
