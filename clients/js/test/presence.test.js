"use strict";
// Presence (a server with presence= on) in the plain client (onPresence, members) and in the typed runtime
// (onPresence listeners, members), driven through a fake WebSocket. Against a real server: the generated
// clients in tests/codegen/e2e_presence.mjs.

const test = require("node:test");
const assert = require("node:assert/strict");
const SS = require("../ss.js");
const typed = require("../ss-typed.js");
const { makeFakeWebSocket } = require("../test-support/fake.js");

const HELLO = '__hello\x01J\x02{"v":1,"id":"me","max_message_size":4096,"max_calls":8}';
const LISTED = { members: [{ socket: "a", instance: "i1", presence: { name: "ann" } }], missing: ["i2"], truncated: false };

/** A plain client, connected (its __hello received), reporting its errors to `errors`. */
function plain() {
  const FakeWebSocket = makeFakeWebSocket();
  const ss = new SS("ws://test/socket", { WebSocket: FakeWebSocket, reconnectOpts: { enabled: false } });
  const errors = [];
  ss.onError((error) => errors.push(error));
  const ws = FakeWebSocket.last();
  ws.open();
  ws.receive(HELLO);
  return { ss, ws, errors };
}

/** A typed client, connected. */
function typedClient() {
  const FakeWebSocket = makeFakeWebSocket();
  const client = typed.connect(
    "ws://test/socket",
    { fingerprint: "f".repeat(32), kinds: { join: "text" } },
    { WebSocket: FakeWebSocket, reconnectOpts: { enabled: false } },
  );
  const errors = [];
  client.onError((error) => errors.push(error));
  const ws = FakeWebSocket.last();
  ws.open();
  ws.receive(HELLO);
  return { client, ws, errors };
}

const presence = (body) => "__presence\x01J\x02" + JSON.stringify(body);

test("onPresence gets each __presence event; the payload may be null or left out", () => {
  const { ss, ws, errors } = plain();
  const events = [];
  ss.onPresence(function (event) {
    assert.equal(this, ss);
    events.push(event);
  });
  ws.receive(presence({ room: "chat:1", change: "joined", socket: "s1", presence: { name: "ann" } }));
  ws.receive(presence({ room: "chat:1", change: "left", socket: "s1", presence: null, more: 1 }));
  ws.receive(presence({ room: "chat:1", change: "joined", socket: "s2" }));
  assert.deepEqual(events, [
    { room: "chat:1", change: "joined", socket: "s1", presence: { name: "ann" } },
    { room: "chat:1", change: "left", socket: "s1", presence: null },
    { room: "chat:1", change: "joined", socket: "s2", presence: null },
  ]);
  assert.deepEqual(errors, []);
});

test("a malformed __presence is reported as bad_frame and reaches no listener, nor `on`", () => {
  const { ss, ws, errors } = plain();
  const events = [];
  ss.onPresence((event) => events.push(event));
  ss.on("__presence", (data) => events.push(data)); // reserved: handled by onPresence only
  ws.receive(presence({ room: "chat:1", change: "moved", socket: "s1", presence: null }));
  ws.receive(presence({ room: 1, change: "joined", socket: "s1", presence: null }));
  ws.receive(presence({ room: "chat:1", change: "joined", presence: null }));
  ws.receive("__presence\x01J\x02[1]");
  ws.receive("__presence\x01J\x02{oops");
  assert.deepEqual(events, []);
  assert.deepEqual(
    errors.map((e) => e.code),
    ["bad_frame", "bad_frame", "bad_frame", "bad_frame", "bad_json"],
  );
});

test("without an onPresence callback the events are dropped; a throwing one is reported", () => {
  const { ss, ws, errors } = plain();
  ws.receive(presence({ room: "r", change: "joined", socket: "s", presence: null }));
  assert.deepEqual(errors, []);
  ss.onPresence(() => {
    throw new Error("boom");
  });
  ws.receive(presence({ room: "r", change: "joined", socket: "s", presence: null }));
  assert.equal(errors.length, 1);
  assert.equal(errors[0].code, "callback_error");
  assert.match(errors[0].message, /onPresence callback threw: boom/);
});

test("members calls __members with the room and resolves with the reply", async () => {
  const { ss, ws } = plain();
  const listed = ss.members("chat:1", { timeout: 1000 });
  assert.deepEqual(ws.sent, ['__members\x01c1\x02{"room":"chat:1"}']);
  ws.receive("__members\x01Jr1\x02" + JSON.stringify(LISTED));
  assert.deepEqual(await listed, LISTED);
});

test("members rejects as calls do: forbidden, unknown_event, not connected, a bad room", async () => {
  const { ss, ws } = plain();
  const refused = ss.members("chat:1");
  ws.receive('__members\x01Je1\x02{"code":"forbidden","message":"not a member","data":null}');
  await assert.rejects(refused, (error) => {
    assert.equal(error.name, "ServerError");
    assert.equal(error.code, "forbidden");
    assert.equal(error.event, "__members");
    return true;
  });
  const unknown = ss.members("chat:1");
  ws.receive('__members\x01Je2\x02{"code":"unknown_event","message":"no handler","data":null}');
  await assert.rejects(unknown, { name: "ServerError", code: "unknown_event" });
  for (const room of ["", 1, undefined, null]) {
    await assert.rejects(ss.members(/** @type {any} */ (room)), { name: "SSError", code: "bad_data" });
  }
  assert.equal(ws.sent.length, 2); // the bad rooms sent nothing
  ws.serverClose(1006);
  await assert.rejects(ss.members("chat:1"), { name: "Disconnected" });
});

test("the typed runtime: any number of onPresence listeners, each removable", () => {
  const { client, ws, errors } = typedClient();
  const first = [];
  const second = [];
  const offFirst = client.onPresence((event) => first.push(event));
  client.onPresence((event) => second.push(event.socket));
  ws.receive(presence({ room: "chat:1", change: "joined", socket: "s1", presence: { name: "ann" } }));
  offFirst();
  offFirst(); // again: nothing
  ws.receive(presence({ room: "chat:1", change: "left", socket: "s1", presence: { name: "ann" } }));
  assert.deepEqual(first, [{ room: "chat:1", change: "joined", socket: "s1", presence: { name: "ann" } }]);
  assert.deepEqual(second, ["s1", "s1"]);
  client.onPresence(() => {
    throw new Error("listener");
  });
  ws.receive(presence({ room: "chat:1", change: "joined", socket: "s2", presence: null }));
  assert.deepEqual(second, ["s1", "s1", "s2"]); // the others still run
  assert.equal(errors.length, 1);
  assert.equal(errors[0].code, "callback_error");
});

test("the typed runtime: members resolves with the reply, and rejects a bad room before sending", async () => {
  const { client, ws } = typedClient();
  const listed = client.members("chat:1");
  assert.deepEqual(ws.sent, ['__members\x01c1\x02{"room":"chat:1"}']);
  ws.receive("__members\x01Jr1\x02" + JSON.stringify(LISTED));
  assert.deepEqual(await listed, LISTED);
  const refused = client.members("chat:2", { timeout: 50 });
  ws.receive('__members\x01Je2\x02{"code":"forbidden","message":"no","data":null}');
  await assert.rejects(refused, { name: "ServerError", code: "forbidden" });
  await assert.rejects(client.members(""), { name: "SSError", code: "bad_data" });
  assert.equal(ws.sent.length, 2);
});
