"use strict";
// Calls both ways between the plain client and a real typed-ss server (tests/js_app.py, the shapes of
// tests/test_calls.py): handlers' return values of every wire kind as replies, typed errors, timeouts,
// max_calls, Disconnected, and the server's calls answered by onCall handlers. Never skipped: without the
// server (the repository's .venv) these tests fail.

const test = require("node:test");
const assert = require("node:assert/strict");
const { WebSocket } = require("ws");
const SS = require("../ss.js");
const { startServer } = require("../test-support/server.js");

const LIMIT = { timeout: 15000 };

let server = null;
test.before(async () => {
  server = await startServer();
});
test.after(async () => {
  if (server) await server.stop();
});

/** A client, connected and its __hello received; closed when its test ends. */
async function connected(t) {
  const errors = [];
  const ss = new SS(server.url, { WebSocket, reconnectOpts: { enabled: false } });
  ss.onError((err) => errors.push(err));
  t.after(() => ss.close());
  const hello = new Promise((resolve) => ss.onHello(resolve));
  await hello;
  return { ss, errors };
}

/** The call's rejection; fails when it resolves. */
async function failure(promise) {
  let value;
  try {
    value = await promise;
  } catch (error) {
    return error;
  }
  assert.fail(`the call succeeded with ${JSON.stringify(value)}`);
}

const bytes = (buffer) => Array.from(new Uint8Array(buffer));

test("a handler's return value is the reply, decoded by its wire kind", LIMIT, async (t) => {
  const { ss, errors } = await connected(t);
  assert.deepEqual(await ss.call("add", { a: 1, b: 2 }), { sum: 3 });
  assert.equal(await ss.call("upper", "tea"), "TEA");
  const reversed = await ss.call("reverse", new Uint8Array([0, 1, 255]));
  assert.ok(reversed instanceof ArrayBuffer);
  assert.deepEqual(bytes(reversed), [255, 1, 0]);
  assert.deepEqual(await ss.call("profile", "ann"), { name: "ann" });
  assert.equal(await ss.call("count", [1, 2, 3]), 3);
  const acked = new Promise((resolve) => ss.on("acked", resolve));
  assert.equal(await ss.call("ack", "x"), null, "a handler that returns None acknowledges");
  assert.equal(await acked, "x");
  assert.deepEqual(errors, []);
});

test("calls and their replies keep their order; concurrent calls each get their own reply", LIMIT, async (t) => {
  const { ss } = await connected(t);
  const words = ["a", "b", "c", "d", "e"];
  assert.deepEqual(await Promise.all(words.map((w) => ss.call("upper", w))), ["A", "B", "C", "D", "E"]);
});

test("an emit of a handler with a return value still gets no reply", LIMIT, async (t) => {
  const { ss, errors } = await connected(t);
  const acked = new Promise((resolve) => ss.on("acked", resolve));
  ss.emit("add", { a: 1, b: 2 }); // not a call: nothing comes back for it
  ss.emit("ack", "plain");
  assert.equal(await acked, "plain");
  assert.deepEqual(await ss.call("add", { a: 2, b: 2 }), { sum: 4 }, "the next call gets its own reply");
  assert.deepEqual(errors, []);
});

test("errors reach the caller as ServerError: the application's code, message and data, and typed-ss's", LIMIT, async (t) => {
  const { ss, errors } = await connected(t);
  const refused = await failure(ss.call("refuse", "tea"));
  assert.ok(refused instanceof SS.CallError);
  assert.equal(refused.name, "ServerError");
  assert.deepEqual([refused.code, refused.message, refused.data], ["not_found", "no room tea", { room: "tea" }]);
  const invalid = await failure(ss.call("add", { a: 1 }));
  assert.deepEqual([invalid.name, invalid.code], ["ServerError", "invalid_payload"]);
  assert.match(invalid.message, /`b`/);
  const crashed = await failure(ss.call("fail", ""));
  assert.deepEqual([crashed.code, crashed.message, crashed.data], ["handler_error", "the handler for this event failed", null]);
  const unknown = await failure(ss.call("nobody", "x"));
  assert.deepEqual([unknown.code, unknown.message], ["unknown_event", "no handler for event 'nobody'"]);
  assert.deepEqual(errors, [], "failed calls are their promises', and no __error is sent for them");
});

test("no reply in time: CallTimeout; the late reply is dropped and the connection stays", LIMIT, async (t) => {
  const { ss, errors } = await connected(t);
  const late = await failure(ss.call("slow", 0.5, { timeout: 20 }));
  assert.equal(late.name, "CallTimeout");
  assert.equal(late.event, "slow");
  // The socket's messages are handled in order: this reply comes after the late one.
  assert.equal(await ss.call("upper", "after"), "AFTER");
  assert.ok(ss.connected);
  assert.deepEqual(errors, []);
});

test("__hello's max_calls: past it a call fails at once with TooManyCalls, and the others are answered", LIMIT, async (t) => {
  const { ss } = await connected(t);
  assert.equal(ss.maxCalls, 64);
  const waiting = Array.from({ length: 64 }, (_, i) => ss.call("count", new Array(i).fill(0)));
  const refused = await failure(ss.call("count", []));
  assert.deepEqual([refused.name, refused.code], ["TooManyCalls", "too_many_calls"]);
  assert.deepEqual(await Promise.all(waiting), Array.from({ length: 64 }, (_, i) => i));
});

test("a call that waits fails with Disconnected when the connection closes; later ones at once", LIMIT, async (t) => {
  const { ss } = await connected(t);
  const waiting = ss.call("slow", 0.5);
  ss.close();
  const gone = await failure(waiting);
  assert.deepEqual([gone.name, gone.code], ["Disconnected", "disconnected"]);
  assert.equal((await failure(ss.call("upper", "x"))).name, "Disconnected");
});

test("the server's call is answered by onCall, in the handler that made it and in every kind", LIMIT, async (t) => {
  const { ss, errors } = await connected(t);
  const questions = [];
  ss.onCall("confirm", async (question) => {
    questions.push(question);
    return { yes: true };
  });
  ss.onCall("greet", (who) => `ann, asked ${who}`);
  ss.onCall("sign", (data) => new Uint8Array(data).reverse());
  assert.equal(await ss.call("ask", "confirm"), '{"yes": true}');
  assert.deepEqual(questions, [{ text: "tea?" }]);
  assert.equal(await ss.call("ask", "greet"), "ann, asked who?");
  assert.equal(await ss.call("ask", "sign"), "030201");
  assert.deepEqual(errors, []);
});

test("a failing onCall handler is an error reply for the server; no handler is unknown_event", LIMIT, async (t) => {
  const { ss, errors } = await connected(t);
  ss.onCall("busy", async () => {
    throw Object.assign(new Error("later"), { code: "busy", data: [1] });
  });
  ss.onCall("crash", () => {
    throw new Error("oops");
  });
  assert.deepEqual(JSON.parse(await ss.call("ask", "busy")), { code: "busy", message: "later", data: [1] });
  assert.deepEqual(JSON.parse(await ss.call("ask", "crash")), { code: "handler_error", message: "oops", data: null });
  assert.deepEqual(JSON.parse(await ss.call("ask", "nobody")), {
    code: "unknown_event",
    message: 'no handler for event "nobody"',
    data: null,
  });
  assert.deepEqual(errors.map((e) => [e.code, e.event]), [["callback_error", "crash"]]);
});
