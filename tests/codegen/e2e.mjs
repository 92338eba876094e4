// The generated client for tests/codegen/app.py against a real server, under node.
//
//   node e2e.mjs <generated module> <ws://host:port> <clients/js/package.json>
//
// tests/codegen/test_node_e2e.py runs it for the --lang js output and for the --lang ts output compiled
// by tsc. The last argument locates the `ws` package (node has no WebSocket before 22). Prints one line
// per check and exits 0 when all pass; any failure exits 1 with the reason.

import assert from "node:assert/strict";
import { createRequire } from "node:module";
import { pathToFileURL } from "node:url";

const [modulePath, base, packageJson] = process.argv.slice(2);
const { WebSocket } = createRequire(packageJson)("ws");
const { connect, CONTRACT } = await import(pathToFileURL(modulePath).href);

const WAIT_MS = 10000;
const clients = [];

function open(path, options = {}) {
  const client = connect(base + path, { WebSocket, reconnectOpts: { base: 20, cap: 100 }, ...options });
  const errors = [];
  client.onError((error) => errors.push(error));
  clients.push(client);
  return { client, errors };
}

/** Resolves with the next value a registration (on, onServerError, ...) hands its listener. */
function next(register) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("timed out waiting for an event")), WAIT_MS);
    const off = register((value) => {
      clearTimeout(timer);
      off();
      resolve(value);
    });
  });
}

async function until(condition, what) {
  const deadline = Date.now() + WAIT_MS;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error("timed out waiting for " + what);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

async function check(name, body) {
  await body();
  console.log("ok - " + name);
}

const bytes = (buffer) => Array.from(new Uint8Array(buffer));

try {
  const { client, errors } = open("/socket?token=abc");

  await check("connects with the contract fingerprint and existing query parameters", async () => {
    assert.match(client.raw.url, new RegExp("/socket\\?token=abc&ss_contract=" + CONTRACT + "$"));
    await until(() => client.serverContract !== null, "__hello");
    assert.equal(client.serverContract, CONTRACT);
    assert.equal(client.contractStatus, "current");
    assert.equal(typeof client.id, "string");
  });

  await check("a JSON event round trip: defaults left out are filled in", async () => {
    const reply = next((l) => client.on("chat", l));
    client.send.chat({ room: "r", text: "hi", author_id: 7, sent_at: "2024-05-01T12:00:00" });
    const m = await reply;
    assert.deepEqual(m, {
      room: "r",
      text: "hi",
      author_id: 7,
      sent_at: "2024-05-01T12:00:00",
      reply_to: null,
      color: "red",
      tags: [],
      attachments: [],
    });
  });

  await check("a JSON string payload is sent as JSON (quoted), not as raw text", async () => {
    const reply = next((l) => client.on("status", l));
    assert.equal(client.send.toggle("on"), true);
    assert.equal(await reply, "on");
    const again = next((l) => client.on("status", l));
    client.emit("toggle", "off");
    assert.equal(await again, "off");
  });

  await check("a text event is sent raw", async () => {
    const reply = next((l) => client.on("note", l));
    client.send.say('"quoted" as is');
    assert.equal(await reply, 'you said "quoted" as is');
  });

  await check("binary both ways, Blobs kept in order with the emits after them", async () => {
    const received = [];
    const off = client.on("blob", (buffer) => received.push(bytes(buffer)));
    client.send.upload(new Uint8Array([1, 2, 3]));
    client.send.upload(new Blob([new Uint8Array([4, 5])]));
    client.send.upload(new Uint8Array([6]).buffer);
    await until(() => received.length === 3, "three blobs");
    off();
    assert.deepEqual(received, [[3, 2, 1], [5, 4], [6]]);
  });

  await check("a null payload may be left out", async () => {
    const reply = next((l) => client.on("tree", l));
    client.send.ping();
    assert.deepEqual(await reply, { value: 1, children: [{ value: 2, children: [] }] });
  });

  await check("tagged unions, tuples, generics, pydantic by alias", async () => {
    const presence = next((l) => client.on("presence", l));
    client.send.action({ type: "Leave", room: "r" });
    assert.deepEqual(await presence, { type: "Leave", room: "r", reason: "" });
    const pet = next((l) => client.on("pet", l));
    client.send.pet({ kind: 2, name: "rex" });
    assert.deepEqual(await pet, { kind: 2, name: "rex", good: true });
    const moved = next((l) => client.on("moved", l));
    client.send.move([1]);
    assert.deepEqual(await moved, [1, 0]);
    const page = next((l) => client.on("page", l));
    client.send.page({ items: [1, 2] });
    assert.deepEqual(await page, { items: ["1", "2"], next: null });
    const profile = next((l) => client.on("profile", l));
    client.send.profile({ userName: "ann", friends: [{ userName: "bob" }] });
    assert.deepEqual(await profile, {
      userName: "ann",
      age: 0,
      color: "red",
      friends: [{ userName: "bob", age: 0, color: "red", friends: [], initial: "b" }],
      initial: "a",
    });
    const action = next((l) => client.on("paction", l));
    client.send.paction({ type: "leave" });
    assert.deepEqual(await action, { type: "leave" });
    const other = next((l) => client.on("other-message", l));
    client.send["other-message"]({ body: "b" });
    assert.deepEqual(await other, { body: "b", urgent: false });
  });

  await check("several listeners per event, each removable", async () => {
    const seen = [];
    const offA = client.on("note", (text) => seen.push("a:" + text));
    const offB = client.on("note", (text) => seen.push("b:" + text));
    client.send.say("1");
    await until(() => seen.length === 2, "two listeners");
    offA();
    client.send.say("2");
    await until(() => seen.length === 3, "one listener");
    offB();
    assert.deepEqual(seen, ["a:you said 1", "b:you said 1", "b:you said 2"]);
  });

  await check("__error frames reach onServerError, typed", async () => {
    const invalid = next((l) => client.onServerError(l));
    client.send.chat({ room: "", text: "hi", author_id: 1, sent_at: "2024-05-01T12:00:00" });
    const error = await invalid;
    assert.equal(error.event, "chat");
    assert.equal(error.code, "invalid_payload");
    assert.match(error.detail, /\$\.room/);
    const failed = next((l) => client.onServerError(l));
    client.send.fail(3);
    assert.deepEqual(await failed, { event: "fail", code: "handler_error", detail: "the handler for this event failed" });
    assert.ok(errors.some((e) => e.code === "server_error"));
  });

  await check("a payload of the wrong wire kind is refused locally", async () => {
    const before = errors.length;
    assert.equal(client.emit("say", 42), false);
    assert.equal(client.send.upload("not bytes"), false);
    assert.deepEqual(
      errors.slice(before).map((e) => [e.code, e.event]),
      [
        ["bad_data", "say"],
        ["bad_data", "upload"],
      ],
    );
  });

  /** The call's rejection; fails when it resolves. */
  async function failure(promise) {
    try {
      const value = await promise;
      throw new assert.AssertionError({ message: "the call succeeded with " + JSON.stringify(value) });
    } catch (error) {
      if (error instanceof assert.AssertionError) throw error;
      return error;
    }
  }

  await check("calls: the handler's return value is the reply, in every wire kind", async () => {
    assert.deepEqual(await client.call.add({ a: 1, b: 2 }), { sum: 3, note: "" });
    assert.deepEqual(await client.call.add({ a: 5 }), { sum: 5, note: "" });
    assert.equal(await client.call.upper("tea"), "TEA");
    assert.deepEqual(bytes(await client.call.reverse(new Uint8Array([1, 2, 3]))), [3, 2, 1]);
    assert.deepEqual(bytes(await client.call.reverse(new Blob([new Uint8Array([4, 5])]))), [5, 4]);
    assert.deepEqual(await client.call.whois("ann"), { userName: "ann", age: 0, color: "red", friends: [], initial: "a" });
    assert.equal(await client.call.count([1, 2, 3], { timeout: 5000 }), 3);
    assert.deepEqual(await client.call.anything(new Uint8Array(4)), { size: 4 });
    assert.equal(await client.call.ping(), null);
    assert.equal(await client.call.toggle("on"), null); // the JSON string payload is sent quoted
    const echoed = next((l) => client.on("chat", l));
    const acknowledged = client.call.chat({ room: "r", text: "hi", author_id: 7, sent_at: "2024-05-01T12:00:00" });
    assert.equal(await acknowledged, null, "a handler that returns None acknowledges");
    assert.equal((await echoed).text, "hi", "and what it emitted still arrives");
  });

  await check("a failed call rejects with ServerError: the application's code, message and data, or typed-ss's", async () => {
    const refused = await failure(client.call.refuse("kitchen"));
    assert.equal(refused.name, "ServerError");
    assert.deepEqual([refused.code, refused.message, refused.data], ["not_found", "no room kitchen", { room: "kitchen" }]);
    assert.equal(refused.event, "refuse");
    const invalid = await failure(client.call.add({ a: "one" }));
    assert.deepEqual([invalid.name, invalid.code], ["ServerError", "invalid_payload"]);
    assert.match(invalid.message, /\$\.a/);
    const crashed = await failure(client.call.fail(1));
    assert.deepEqual([crashed.name, crashed.code], ["ServerError", "handler_error"]);
    const refusedLocally = await failure(client.call.upper(42));
    assert.equal(refusedLocally.code, "bad_data", "a payload of the wrong wire kind is not sent");
  });

  await check("a call without a reply in time fails with CallTimeout; the late reply is dropped", async () => {
    const before = errors.length;
    const late = await failure(client.call.slow(0.5, { timeout: 20 }));
    assert.equal(late.name, "CallTimeout");
    assert.equal(late.event, "slow");
    // Handled after the slow one, so its late reply has arrived (and been dropped) by then.
    assert.equal(await client.call.upper("after"), "AFTER");
    assert.deepEqual(errors.slice(before), []);
  });

  await check("the server calls the client: handle answers, typed, in every wire kind", async () => {
    const seen = [];
    const offConfirm = client.handle.confirm(async (question) => {
      seen.push(question);
      return { yes: question.text === "tea?" };
    });
    assert.deepEqual(await client.call.ask_confirm("tea?"), { yes: true, reason: "" });
    assert.deepEqual(seen, [{ text: "tea?" }]);
    client.handle.greet((who) => "hello " + who);
    assert.equal(await client.call.ask_greet("ann"), "hello ann");
    client.handle.sign(async (data) => new Blob([new Uint8Array(data).reverse()]));
    assert.deepEqual(bytes(await client.call.ask_sign(new Uint8Array([1, 2, 3]))), [3, 2, 1]);
    client.handle.rate(() => ({ starCount: 4 }));
    assert.deepEqual(await client.call.ask_rate("?"), { starCount: 4, comment: "" });
    const pokes = [];
    client.handle.poke((n) => void pokes.push(n));
    assert.equal(await client.call.ask_poke(3), null);
    assert.deepEqual(pokes, [3]);
    offConfirm();
    const unanswered = await failure(client.call.ask_confirm("tea?"));
    assert.equal(unanswered.code, "handler_error", "the server's handler failed: its call got unknown_event");
  });

  await check("an answer that fails is an error reply; an event without a handler gets unknown_event", async () => {
    const off = client.handle.greet(() => {
      throw Object.assign(new Error("later"), { code: "busy", data: [1] });
    });
    assert.equal(await client.call.ask_failing("greet"), 'busy: later [1]');
    off();
    assert.equal(await client.call.ask_failing("greet"), 'unknown_event: no handler for event "greet" null');
    assert.equal(await client.call.ask_failing("mystery"), 'unknown_event: no handler for event "mystery" null');
  });

  await check("past max_calls a call fails at once with TooManyCalls; the others are answered", async () => {
    const limit = client.raw.maxCalls;
    assert.equal(typeof limit, "number");
    const waiting = Array.from({ length: limit }, (_, i) => client.call.count(Array(i).fill(0)));
    const refused = await failure(client.call.count([]));
    assert.deepEqual([refused.name, refused.code], ["TooManyCalls", "too_many_calls"]);
    assert.deepEqual(await Promise.all(waiting), Array.from({ length: limit }, (_, i) => i));
  });

  await check("calls fail with Disconnected when the connection closes, and when not connected", async () => {
    const { client: leaving } = open("/socket");
    await until(() => leaving.connected, "the connection");
    const waiting = leaving.call.slow(0.5, { timeout: 5000 });
    leaving.close();
    assert.equal((await failure(waiting)).name, "Disconnected");
    assert.equal((await failure(leaving.call.upper("x"))).name, "Disconnected");
  });

  await check("an out-of-date client is refused with 4010: reload needed, no reconnect", async () => {
    // reconnectCodes lists 4010 on purpose: the typed client must still not reconnect.
    const { client: stale, errors: staleErrors } = open("/refuse", { reconnectOpts: { reconnectCodes: [4010] } });
    const mismatch = next((l) => stale.onContractMismatch(l));
    const reload = next((l) => stale.onReloadNeeded(l));
    const info = await reload;
    assert.equal(info.code, "reload_needed");
    assert.equal(info.closeCode, 4010);
    assert.equal(info.clientContract, CONTRACT);
    assert.notEqual(info.serverContract, CONTRACT);
    assert.equal((await mismatch).serverContract, info.serverContract);
    assert.equal(stale.contractStatus, "stale");
    assert.ok(staleErrors.some((e) => e.code === "reload_needed" && e.closeCode === 4010));
    assert.equal(stale.raw.reconnectOpts.enabled, false, "closed for good");
    assert.equal(stale.connected, false);
  });

  await check("a server that only warns keeps the connection, and the client knows it is stale", async () => {
    const { client: stale } = open("/warn");
    const mismatch = await next((l) => stale.onContractMismatch(l));
    assert.equal(mismatch.clientContract, CONTRACT);
    assert.equal(stale.contractStatus, "stale");
    await until(() => stale.connected, "the connection");
  });
} catch (error) {
  console.error("not ok -", error && error.stack ? error.stack : error);
  process.exitCode = 1;
} finally {
  for (const client of clients) client.close();
}
