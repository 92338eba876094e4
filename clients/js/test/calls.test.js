"use strict";
// Calls both ways (docs/protocol.md section 5) through a fake WebSocket and fake timers: ss.call and its
// failures, ss.onCall answering the server's calls, and frames without a call marker handled as before.

const test = require("node:test");
const assert = require("node:assert/strict");
const { SS, makeClient, bytes, binaryFrame } = require("../test-support/fake.js");

const hello = (fields) => "__hello\x01J\x02" + JSON.stringify(Object.assign({ v: 1, id: "abc" }, fields));

/** Resolves after pending promise callbacks have run. */
const settle = () => new Promise((resolve) => setImmediate(resolve));

/** A connected client (its __hello received, with `helloFields`). */
function connected(helloFields = {}, opts = {}) {
  const made = makeClient(opts);
  made.ws().open();
  made.ws().receive(hello(helloFields));
  return made;
}

/** Every call's outcome, recorded from the moment it is made, so that no rejection goes unhandled. */
const outcomes = new WeakMap();

/** ss.call, its outcome recorded. */
function call(ss, ...args) {
  const promise = ss.call(...args);
  const result = { state: "pending" };
  outcomes.set(promise, result);
  promise.then(
    (value) => Object.assign(result, { state: "value", value }),
    (error) => Object.assign(result, { state: "error", error }),
  );
  return promise;
}

/** The call's outcome once pending callbacks have run: {state: "value" | "error" | "pending", ...}. */
async function outcome(promise) {
  await settle();
  return outcomes.get(promise);
}

async function rejection(promise) {
  const result = await outcome(promise);
  assert.equal(result.state, "error", `expected a rejection, got ${result.state}`);
  return result.error;
}

async function resolution(promise) {
  const result = await outcome(promise);
  assert.equal(result.state, "value", `expected a value, got ${result.state}: ${result.error}`);
  return result.value;
}

// --- calling the server ---------------------------------------------------------------------------

test("call sends the payload marked c<id> and resolves with the J reply, parsed", async () => {
  const { ss, ws, errors } = connected();
  const added = call(ss, "add", { a: 1, b: 2 });
  assert.deepEqual(ws().sent, ['add\x01c1\x02{"a":1,"b":2}']);
  ws().receive('add\x01Jr1\x02{"sum":3}');
  assert.deepEqual(await resolution(added), { sum: 3 });
  assert.deepEqual(errors, []);
});

test("ids count up from 1; each reply settles its own call, in any order", async () => {
  const { ss, ws } = connected();
  const first = call(ss, "upper", "tea");
  const second = call(ss, "upper", "pot");
  const third = call(ss, "count", [1, 2]);
  assert.deepEqual(ws().sent, ["upper\x01c1\x02tea", "upper\x01c2\x02pot", "count\x01c3\x02[1,2]"]);
  ws().receive("count\x01Jr3\x022");
  ws().receive("upper\x01Sr2\x02POT");
  ws().receive("upper\x01Sr1\x02TEA");
  assert.deepEqual(await Promise.all([first, second, third]), ["TEA", "POT", 2]);
});

test("replies decode as on handlers receive data: J parsed, S a string, B an ArrayBuffer", async () => {
  const { ss, ws } = connected();
  const json = call(ss, "profile", "ann");
  const text = call(ss, "upper", "tea");
  const binary = call(ss, "reverse", new Uint8Array([0, 1, 255]));
  const ack = call(ss, "ack", "x");
  const jsonInBinary = call(ss, "count", "[1]");
  const stringJson = call(ss, "name", "x");
  // A binary call frame: the name, 0x01, c<id>, 0x02, the bytes.
  assert.deepEqual(bytes(ws().sent[2]), [...Buffer.from("reverse\x01c3\x02"), 0, 1, 255]);
  ws().receive('profile\x01Jr1\x02{"name":"ann"}');
  ws().receive("upper\x01Sr2\x02TEA");
  ws().receive(binaryFrame("reverse", "Br3", [255, 1, 0]));
  ws().receive("ack\x01Jr4\x02null");
  ws().receive(binaryFrame("count", "Jr5", Buffer.from("1")));
  ws().receive('name\x01Jr6\x02"quoted"');
  assert.deepEqual(await resolution(json), { name: "ann" });
  assert.equal(await resolution(text), "TEA");
  const reversed = await resolution(binary);
  assert.ok(reversed instanceof ArrayBuffer);
  assert.deepEqual(bytes(reversed), [255, 1, 0]);
  assert.equal(await resolution(ack), null);
  assert.equal(await resolution(jsonInBinary), 1);
  assert.equal(await resolution(stringJson), "quoted");
});

test("an S reply holds 0x01 and 0x02 in its payload unchanged", async () => {
  const { ss, ws } = connected();
  const echoed = call(ss, "echo", "a");
  ws().receive("echo\x01Sr1\x02a\x01b\x02c");
  assert.equal(await resolution(echoed), "a\x01b\x02c");
});

test("an error reply rejects with a ServerError carrying the server's code, message and data", async () => {
  const { ss, ws, errors } = connected();
  const refused = call(ss, "refuse", "tea");
  ws().receive('refuse\x01Je1\x02{"code":"not_found","message":"no room tea","data":{"room":"tea"}}');
  const error = await rejection(refused);
  assert.ok(error instanceof SS.CallError);
  assert.ok(error instanceof SS.SSError);
  assert.ok(error instanceof Error);
  assert.equal(error.name, "ServerError");
  assert.equal(error.code, "not_found");
  assert.equal(error.message, "no room tea");
  assert.deepEqual(error.data, { room: "tea" });
  assert.equal(error.event, "refuse");
  assert.deepEqual(errors, [], "a failed call is its promise's, not onError's");
});

test("typed-ss's own error codes arrive the same way; data defaults to null", async () => {
  const { ss, ws } = connected();
  const codes = ["invalid_payload", "handler_error", "unknown_event", "too_many_calls"];
  const calls = codes.map((_, i) => call(ss, "e" + i, "x"));
  codes.forEach((code, i) => ws().receive(`e${i}\x01Je${i + 1}\x02${JSON.stringify({ code, message: "m" })}`));
  for (const [i, call] of calls.entries()) {
    const error = await rejection(call);
    assert.deepEqual([error.name, error.code, error.message, error.data], ["ServerError", codes[i], "m", null]);
  }
});

test("an error reply that is not {code, ...} rejects with ServerError invalid_reply", async () => {
  const { ss, ws } = connected();
  const notObject = call(ss, "a", 1);
  const noCode = call(ss, "b", 1);
  ws().receive("a\x01Je1\x02[1]");
  ws().receive('b\x01Je2\x02{"message":"m"}');
  for (const call of [notObject, noCode]) {
    const error = await rejection(call);
    assert.equal(error.name, "ServerError");
    assert.equal(error.code, "invalid_reply");
  }
});

test("a J reply that does not parse rejects with bad_json", async () => {
  const { ss, ws } = connected();
  const broken = call(ss, "add", {});
  ws().receive("add\x01Jr1\x02{not json");
  const error = await rejection(broken);
  assert.equal(error.name, "SSError");
  assert.equal(error.code, "bad_json");
});

test("no reply within the timeout: CallTimeout (default 5000 ms); a late reply is dropped", async () => {
  const { ss, ws, clock, errors } = connected();
  const slow = call(ss, "slow", 1);
  assert.deepEqual(clock.delays, [5000]);
  assert.equal(SS.DEFAULT_CALL_TIMEOUT, 5000);
  assert.equal((await outcome(slow)).state, "pending");
  clock.fire();
  const error = await rejection(slow);
  assert.ok(error instanceof SS.CallError);
  assert.equal(error.name, "CallTimeout");
  assert.equal(error.code, "timeout");
  assert.equal(error.event, "slow");
  ws().receive("slow\x01Sr1\x02done"); // too late: nobody waits for it
  await settle();
  assert.deepEqual(errors, []);
});

test("the timeout option sets the timer; a reply cancels it; Infinity sets none", async () => {
  const { ss, ws, clock } = connected();
  const quick = call(ss, "a", 1, { timeout: 20 });
  call(ss, "b", 1, { timeout: Infinity });
  assert.deepEqual(clock.delays, [20]);
  assert.equal(clock.pending, 1);
  ws().receive("a\x01Jr1\x021");
  assert.equal(await resolution(quick), 1);
  assert.equal(clock.pending, 0, "the reply cancelled the timer");
});

test("a timeout that is not a number >= 0 rejects at once with bad_data and sends nothing", async () => {
  const { ss, ws } = connected();
  for (const timeout of [-1, NaN, "5"]) {
    const error = await rejection(call(ss, "a", 1, { timeout }));
    assert.equal(error.code, "bad_data");
  }
  assert.deepEqual(ws().sent, []);
});

test("a call while not connected fails at once with Disconnected and is never queued", async () => {
  const { ss, ws, errors } = makeClient();
  const early = await rejection(call(ss, "add", { a: 1 })); // still connecting
  assert.equal(early.name, "Disconnected");
  assert.equal(early.code, "disconnected");
  ws().open();
  assert.deepEqual(ws().sent, [], "the failed call was not queued");
  ws().serverClose(1001);
  assert.equal((await rejection(call(ss, "add", {}))).name, "Disconnected");
  assert.deepEqual(errors.map((e) => e.code), []);
});

test("calls that wait fail with Disconnected when the connection closes, and with close()", async () => {
  const { ss, ws, clock, FakeWebSocket } = connected();
  const waiting = [call(ss, "a", 1), call(ss, "b", 2)];
  ws().serverClose(1006);
  for (const call of waiting) assert.equal((await rejection(call)).name, "Disconnected");
  assert.equal(clock.pending, 1, "only the reconnect timer is left");
  clock.fire();
  FakeWebSocket.last().open();
  FakeWebSocket.last().receive(hello({}));
  const third = call(ss, "c", 3);
  assert.deepEqual(FakeWebSocket.last().sent, ["c\x01c3\x023"], "ids go on counting across connections");
  ss.close();
  assert.equal((await rejection(third)).name, "Disconnected", "close() fails them at once");
});

test("ids go on counting across connections, so an answer to a call of the last one settles nothing", async () => {
  const { ss, ws, clock, FakeWebSocket, errors } = connected();
  const lost = call(ss, "a", 1);
  ws().serverClose(1006);
  assert.equal((await rejection(lost)).name, "Disconnected");
  clock.fire();
  FakeWebSocket.last().open();
  const next = call(ss, "a", 2);
  assert.deepEqual(FakeWebSocket.last().sent, ["a\x01c2\x022"]);
  FakeWebSocket.last().receive("a\x01Jr1\x02111"); // for call 1, which failed already
  assert.equal((await outcome(next)).state, "pending");
  FakeWebSocket.last().receive("a\x01Jr2\x02222");
  assert.equal(await resolution(next), 222);
  assert.deepEqual(errors, []);
});

test("past max_calls from __hello a call fails at once with TooManyCalls, never queued", async () => {
  const { ss, ws } = connected({ max_calls: 2 });
  assert.equal(ss.maxCalls, 2);
  const first = call(ss, "ping", "?");
  const second = call(ss, "ping", "?");
  const third = call(ss, "ping", "?");
  const error = await rejection(third);
  assert.ok(error instanceof SS.CallError);
  assert.equal(error.name, "TooManyCalls");
  assert.equal(error.code, "too_many_calls");
  assert.equal(ws().sent.length, 2, "the third call was not sent");
  ws().receive("ping\x01Sr1\x02pong");
  assert.equal(await resolution(first), "pong");
  const fourth = call(ss, "ping", "?"); // one waits: room for another
  assert.equal((await outcome(fourth)).state, "pending");
  assert.deepEqual(ws().sent.slice(2), ["ping\x01c3\x02?"]);
  assert.equal((await outcome(second)).state, "pending");
});

test("without max_calls in __hello nothing is checked; a bad value counts as none", async () => {
  const { ss } = connected({ max_calls: "many" });
  assert.equal(ss.maxCalls, null);
  const calls = Array.from({ length: 100 }, () => call(ss, "x", 1));
  assert.equal((await outcome(calls[99])).state, "pending");
});

test("ids wrap from 2^31-1 to 1 and skip the ones that still wait", async () => {
  const { ss, ws } = connected();
  call(ss, "a", 1); // id 1, left waiting
  ss._lastCallId = 2147483646;
  call(ss, "b", 1);
  call(ss, "c", 1);
  assert.deepEqual(ws().sent, ["a\x01c1\x021", "b\x01c2147483647\x021", "c\x01c2\x021"]);
});

test("what a call cannot send rejects at once: bad_event, bad_data, too_big; onError hears nothing", async () => {
  const { ss, ws, errors } = connected({ max_message_size: 16 });
  const cycle = {};
  cycle.self = cycle;
  assert.equal((await rejection(call(ss, "", 1))).code, "bad_event");
  assert.equal((await rejection(call(ss, "a\x01b", 1))).code, "bad_event");
  assert.equal((await rejection(call(ss, "a", cycle))).code, "bad_data");
  assert.equal((await rejection(call(ss, "a", 10n))).code, "bad_data");
  const big = await rejection(call(ss, "a", "x".repeat(20)));
  assert.deepEqual([big.code, big.limit], ["too_big", 16]);
  assert.deepEqual(ws().sent, []);
  assert.deepEqual(errors, []);
});

test("a reply that names another event is a bad frame, and the call still waits", async () => {
  const { ss, ws, errors } = connected();
  const waiting = call(ss, "a", 1);
  ws().receive("b\x01Jr1\x021");
  assert.equal((await outcome(waiting)).state, "pending");
  assert.deepEqual(errors.map((e) => e.code), ["bad_frame"]);
  ws().receive("a\x01Jr1\x022");
  assert.equal(await resolution(waiting), 2);
});

// --- answering the server's calls ---------------------------------------------------------------

test("onCall answers a server call: the handler's resolved value is the r<id> reply, as JSON", async () => {
  const { ss, ws, errors } = connected();
  const seen = [];
  ss.onCall("confirm", async function (question) {
    seen.push([this === ss, question]);
    return { yes: true };
  });
  ws().receive('confirm\x01Jc3\x02{"text":"tea?"}');
  await settle();
  assert.deepEqual(seen, [[true, { text: "tea?" }]]);
  assert.deepEqual(ws().sent, ['confirm\x01r3\x02{"yes":true}']);
  assert.deepEqual(errors, []);
});

test("replies are framed by value: string as text, ArrayBuffer and typed arrays as binary, undefined as null", async () => {
  const { ss, ws } = connected();
  const replies = {
    text: () => "TEA",
    buffer: () => new Uint8Array([1, 2]).buffer,
    view: () => new Uint8Array([9, 8, 7]).subarray(1),
    nothing: () => undefined,
    number: async () => 3,
    nil: () => null,
    list: () => [1, "a"],
  };
  for (const [event, handler] of Object.entries(replies)) ss.onCall(event, handler);
  Object.keys(replies).forEach((event, i) => ws().receive(`${event}\x01Jc${i + 1}\x02null`));
  await settle();
  const [text, buffer, view, nothing, number, nil, list] = ws().sent;
  assert.equal(text, "text\x01r1\x02TEA");
  assert.deepEqual(bytes(buffer), [...Buffer.from("buffer\x01r2\x02"), 1, 2]);
  assert.deepEqual(bytes(view), [...Buffer.from("view\x01r3\x02"), 8, 7]);
  assert.equal(nothing, "nothing\x01r4\x02null");
  assert.equal(number, "number\x01r5\x023");
  assert.equal(nil, "nil\x01r6\x02null");
  assert.equal(list, 'list\x01r7\x02[1,"a"]');
});

test("the call's payload decodes as for on: S a string, B an ArrayBuffer, J parsed", async () => {
  const { ss, ws } = connected();
  const seen = [];
  ss.onCall("greet", (data) => {
    seen.push(data);
    return "ann";
  });
  ws().receive("greet\x01Sc1\x02who?");
  ws().receive(binaryFrame("greet", "Bc2", [1, 2, 3]));
  ws().receive('greet\x01Jc3\x02"json"');
  await settle();
  assert.equal(seen[0], "who?");
  assert.ok(seen[1] instanceof ArrayBuffer);
  assert.deepEqual(bytes(seen[1]), [1, 2, 3]);
  assert.equal(seen[2], "json");
  assert.deepEqual(ws().sent, ["greet\x01r1\x02ann", "greet\x01r2\x02ann", "greet\x01r3\x02ann"]);
});

test("a thrown error with a code is an error reply {code, message, data}", async () => {
  const { ss, ws, errors } = connected();
  ss.onCall("confirm", async () => {
    throw Object.assign(new Error("later"), { code: "busy", data: [1] });
  });
  ss.onCall("sync", () => {
    throw Object.assign(new Error("no"), { code: "refused" });
  });
  ws().receive('confirm\x01Jc3\x02{"text":"tea?"}');
  ws().receive("sync\x01Jc4\x02null");
  await settle();
  assert.deepEqual(ws().sent, [
    'sync\x01e4\x02{"code":"refused","message":"no","data":null}',
    'confirm\x01e3\x02{"code":"busy","message":"later","data":[1]}',
  ]);
  assert.deepEqual(errors, [], "an error with a code is an answer the handler chose");
});

test("an error without a code is a handler_error reply, and reported as callback_error", async () => {
  const { ss, ws, errors } = connected();
  ss.onCall("crash", () => {
    throw new TypeError("oops");
  });
  ss.onCall("reject", () => Promise.reject("plain string"));
  ws().receive("crash\x01Jc1\x02null");
  ws().receive("reject\x01Jc2\x02null");
  await settle();
  assert.deepEqual(ws().sent, [
    'crash\x01e1\x02{"code":"handler_error","message":"oops","data":null}',
    'reject\x01e2\x02{"code":"handler_error","message":"plain string","data":null}',
  ]);
  assert.deepEqual(errors.map((e) => [e.code, e.event]), [
    ["callback_error", "crash"],
    ["callback_error", "reject"],
  ]);
});

test("a call with no onCall handler gets an unknown_event error reply; offCall removes one", async () => {
  const { ss, ws } = connected();
  ss.on("confirm", () => assert.fail("a call never reaches on handlers"));
  ws().receive('confirm\x01Jc1\x02{"text":"tea?"}');
  ss.onCall("other", () => 1).offCall("other");
  ws().receive("other\x01Jc2\x02null");
  await settle();
  assert.deepEqual(ws().sent, [
    'confirm\x01e1\x02{"code":"unknown_event","message":"no handler for event \\"confirm\\"","data":null}',
    'other\x01e2\x02{"code":"unknown_event","message":"no handler for event \\"other\\"","data":null}',
  ]);
});

test("a reply with no JSON form is an error reply and a bad_data error; a bad J call gets invalid_payload", async () => {
  const { ss, ws, errors } = connected();
  ss.onCall("a", () => 10n);
  ss.onCall("b", () => assert.fail("not called for a payload that does not parse"));
  ss.onCall("c", () => {
    throw Object.assign(new Error("with bad data"), { code: "x", data: 10n });
  });
  ws().receive("a\x01Jc1\x02null");
  ws().receive("b\x01Jc2\x02{not json");
  ws().receive("c\x01Jc3\x02null");
  await settle();
  assert.deepEqual(ws().sent, [
    'b\x01e2\x02{"code":"invalid_payload","message":"the payload is not valid JSON","data":null}',
    'c\x01e3\x02{"code":"x","message":"with bad data","data":null}', // thrown at once
    'a\x01e1\x02{"code":"handler_error","message":"the reply has no JSON form","data":null}', // resolved later
  ]);
  assert.deepEqual(errors.map((e) => e.code), ["bad_json", "bad_data"]);
});

test("a reply larger than the server's limit is replaced by an error reply and reported too_big", async () => {
  const { ss, ws, errors } = connected({ max_message_size: 64 });
  ss.onCall("big", () => "x".repeat(100));
  ws().receive("big\x01Jc1\x02null");
  await settle();
  assert.equal(ws().sent.length, 1);
  assert.match(ws().sent[0], /^big\x01e1\x02\{"code":"handler_error","message":"the reply is \d+ bytes/);
  assert.deepEqual(errors.map((e) => e.code), ["too_big"]);
});

test("an answer ready after the connection closed is not sent on the next one", async () => {
  const { ss, ws, clock, FakeWebSocket } = connected();
  let answer;
  ss.onCall("confirm", () => new Promise((resolve) => (answer = resolve)));
  const first = ws();
  first.receive('confirm\x01Jc1\x02{"text":"tea?"}');
  first.serverClose(1006);
  clock.fire();
  FakeWebSocket.last().open();
  answer({ yes: true });
  await settle();
  assert.deepEqual(first.sent, []);
  assert.deepEqual(FakeWebSocket.last().sent, []);
});

test("onCall and offCall chain; one handler per event, the last one wins", async () => {
  const { ss, ws } = connected();
  assert.equal(ss.onCall("a", () => 1).onCall("a", () => 2).offCall("b"), ss);
  ws().receive("a\x01Jc1\x02null");
  await settle();
  assert.deepEqual(ws().sent, ["a\x01r1\x022"]);
});

test("calls both ways at once: the server's call is answered while ours waits", async () => {
  const { ss, ws } = connected();
  ss.onCall("confirm", () => ({ yes: true }));
  const ours = call(ss, "ask_me", "typed");
  ws().receive('confirm\x01Jc1\x02{"text":"tea?"}'); // the server's id 1, not ours
  await settle();
  ws().receive("ask_me\x01Jr1\x02null");
  assert.equal(await resolution(ours), null);
  assert.deepEqual(ws().sent, ["ask_me\x01c1\x02typed", 'confirm\x01r1\x02{"yes":true}']);
});

// --- frames without a call marker -----------------------------------------------------------------

test("frames without a call marker dispatch exactly as before", async () => {
  const { ss, ws, errors } = connected();
  const seen = [];
  ss.on("x", (data) => seen.push(data));
  ss.onCall("x", () => assert.fail("only calls reach onCall"));
  ws().receive("x\x01S\x02hi");
  ws().receive('x\x01J\x02{"a":1}');
  ws().receive("x\x02raw"); // no header at all
  ws().receive(binaryFrame("x", "B", [1]));
  ws().receive("x\x01SZ\x02unknown flags are ignored");
  await settle();
  assert.deepEqual(seen.slice(0, 3), ["hi", { a: 1 }, "raw"]);
  assert.deepEqual(bytes(seen[3]), [1]);
  assert.equal(seen[4], "unknown flags are ignored");
  assert.deepEqual(ws().sent, []);
  assert.deepEqual(errors, []);
  assert.equal(ss.emit("x", "plain"), true);
  assert.deepEqual(ws().sent, ["x\x02plain"], "emit frames carry no flags");
});

for (const flags of ["Jc0", "Jc01", "JcX", "Jc", "Jc2147483648", "Sr", "Je-1", "Jr12345678901", "c 1"]) {
  test(`a malformed call marker (${JSON.stringify(flags)}) is a bad frame: neither dispatched nor answered`, async () => {
    const { ss, ws, errors } = connected();
    ss.on("x", () => assert.fail("dispatched"));
    ss.onCall("x", () => assert.fail("answered"));
    const waiting = call(ss, "x", 1);
    ws().receive(`x\x01${flags}\x021`);
    await settle();
    assert.deepEqual(errors.map((e) => e.code), ["bad_frame"]);
    assert.deepEqual(ws().sent, ["x\x01c1\x021"]);
    assert.equal((await outcome(waiting)).state, "pending");
  });
}
