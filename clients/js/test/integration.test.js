"use strict";
// The client against a real typed-ss server: tests/js_app.py, served by `python -m tests.serve` with the
// repository's .venv Python on 127.0.0.1 (`make test` creates the .venv first). Never skipped: without
// the server these tests fail.

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

/** A client with fast reconnects; closed when its test ends. */
function client(t, opts = {}, url = server.url) {
  const errors = [];
  const ss = new SS(url, Object.assign({ WebSocket, reconnectOpts: { base: 20, cap: 100 } }, opts));
  ss.onError((err) => errors.push(err));
  t.after(() => ss.close());
  return { ss, errors };
}

/** The next value an `on`-style registration hands its callback. */
function nextEvent(ss, event) {
  return new Promise((resolve) => ss.on(event, resolve));
}

async function until(check, what) {
  for (let i = 0; i < 500; i++) {
    if (check()) return;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  assert.fail(`timed out waiting for ${what}`);
}

test("__hello gives the socket id and the server's limit", LIMIT, async (t) => {
  const { ss, errors } = client(t);
  const whoami = nextEvent(ss, "whoami");
  ss.emit("whoami");
  const id = await whoami;
  assert.match(id, /^[A-Za-z0-9_-]{32}$/);
  assert.equal(ss.id, id);
  assert.equal(ss.maxMessageSize, 4096);
  assert.equal(ss.connected, true);
  assert.deepEqual(errors, []);
});

test("S, B and J frames round-trip, queued before the connection opened", LIMIT, async (t) => {
  const { ss, errors } = client(t);
  const text = nextEvent(ss, "echo_text");
  const bin = nextEvent(ss, "echo");
  const chat = nextEvent(ss, "echo_chat");
  assert.equal(ss.connected, false);
  ss.emit("echo_text", "héllo ☃");
  ss.emit("echo", Uint8Array.of(0, 1, 2, 255));
  ss.emit("echo_chat", { room: "r", text: "hi" });
  assert.equal(await text, "héllo ☃");
  assert.deepEqual(Array.from(new Uint8Array(await bin)), [0, 1, 2, 255]);
  assert.deepEqual(await chat, { room: "r", text: "hi" });
  assert.deepEqual(errors, []);
});

test("a non-ASCII event name works in binary frames both ways", LIMIT, async (t) => {
  const { ss } = client(t);
  const reply = nextEvent(ss, "écho");
  ss.emit("écho", Uint8Array.of(7, 8));
  assert.deepEqual(Array.from(new Uint8Array(await reply)), [7, 8]);
});

test("emit with no data sends an empty payload", LIMIT, async (t) => {
  const { ss } = client(t);
  const reply = nextEvent(ss, "echo");
  ss.emit("echo");
  assert.equal((await reply).byteLength, 0);
});

test("__error reaches onError for an invalid payload and for a failing handler", LIMIT, async (t) => {
  const { ss, errors } = client(t);
  ss.emit("echo_chat", { room: 1 });
  ss.emit("fail");
  await until(() => errors.length >= 2, "two __error events");
  assert.deepEqual(
    errors.map((e) => [e.code, e.event, e.serverCode]),
    [
      ["server_error", "echo_chat", "invalid_payload"],
      ["server_error", "fail", "handler_error"],
    ],
  );
  assert.match(errors[0].detail, /\$/);
  assert.equal(ss.connected, true);
});

test("an emit over max_message_size fails locally and the connection stays up", LIMIT, async (t) => {
  const { ss, errors } = client(t);
  await until(() => ss.maxMessageSize !== null, "__hello");
  assert.equal(ss.emit("echo", new Uint8Array(5000)), false);
  assert.equal(errors[0].code, "too_big");
  const reply = nextEvent(ss, "echo_text");
  ss.emit("echo_text", "still here");
  assert.equal(await reply, "still here");
});

test("the server's 1009 is reported and the client reconnects", LIMIT, async (t) => {
  const { ss, errors } = client(t);
  await until(() => ss.id !== null, "__hello");
  const firstId = ss.id;
  const codes = [];
  ss.onDisconnect((ev) => codes.push(ev.code));
  ss.maxMessageSize = null; // skip the local check, as an original client would
  ss.emit("echo", new Uint8Array(5000));
  await until(() => ss.id !== null && ss.id !== firstId, "a new connection");
  assert.deepEqual(codes, [1009]);
  assert.ok(errors.some((e) => e.code === "message_too_big"));
});

for (const [code, reconnects] of [
  [1000, false],
  [1008, false],
  [4001, false],
  [4008, true],
  [1011, true],
]) {
  test(`a server close with ${code} ${reconnects ? "reconnects" : "does not reconnect"}`, LIMIT, async (t) => {
    // The decision is made inside the close event, so "was a reconnect timer set?" needs no waiting.
    let timersSet = 0;
    const { ss } = client(t, {
      setTimeout: (fn, ms) => {
        timersSet++;
        return setTimeout(fn, ms);
      },
    });
    let connects = 0;
    const closed = new Promise((resolve) => ss.onDisconnect((ev) => resolve(ev.code)));
    ss.onConnect(() => connects++);
    ss.emit("kick", code);
    assert.equal(await closed, code);
    assert.equal(timersSet, reconnects ? 1 : 0);
    if (reconnects) {
      await until(() => connects === 2 && ss.connected, "the reconnect");
    } else {
      assert.equal(ss.emit("echo", "x"), false);
    }
  });
}

test("a server that closes every connection at once gets backed-off reconnects, not the base rate", LIMIT, async (t) => {
  // Each connection opens and is closed with 1011 right away, as when an on_connect hook raises.
  const delays = [];
  const { ss } = client(t, {
    reconnectOpts: { base: 20, cap: 1000 },
    random: () => 0.999999,
    setTimeout: (fn, ms) => {
      delays.push(ms);
      return setTimeout(fn, ms);
    },
  });
  let connects = 0;
  ss.onConnect(function () {
    connects++;
    this.emit("kick", 1011);
  });
  await until(() => connects === 5, "five connections");
  assert.deepEqual(delays.slice(0, 4), [19, 39, 79, 159]);
});

test("after a reconnect, onConnect re-joins the room before queued emits go out", LIMIT, async (t) => {
  // A roomcast reaches the sender only if it is a member, and the server handles one socket's
  // messages in order: the client hears its own queued "say" only if its "join" went first.
  const { ss } = client(t);
  ss.onConnect(function () {
    this.emit("join", "lobby");
  });
  const heard = [];
  ss.on("said", (msg) => heard.push(msg.text));
  await nextEvent(ss, "joined");
  ss.onDisconnect(function () {
    this.emit("say", { room: "lobby", text: "after reconnect" }); // not connected: queued
  });
  ss.emit("kick", 1011);
  await until(() => heard.length === 1, "the roomcast");
  assert.deepEqual(heard, ["after reconnect"]);
});

test("a server restart (SIGTERM, 1012): backed-off attempts while down, then a reconnect that flushes the queue", LIMIT, async (t) => {
  const first = await startServer();
  t.after(first.stop);
  const { ss, errors } = client(t, { reconnectOpts: { base: 20, cap: 60 } }, first.url);
  await until(() => ss.id !== null, "__hello");
  const firstId = ss.id;
  const closed = new Promise((resolve) => ss.onDisconnect((ev) => resolve(ev.code)));
  first.child.kill("SIGTERM");
  assert.equal(await closed, 1012);
  await first.exited;
  await until(() => errors.filter((e) => e.code === "connect_failed").length >= 2, "failed attempts");
  assert.equal(ss.connected, false);

  // Emitted while the server is down: queued, then sent in order once the client is back.
  ss.emit("echo_text", "queued 1");
  ss.emit("echo_text", "queued 2");
  const echoes = [];
  ss.on("echo_text", (text) => echoes.push(text));
  const second = await startServer(first.port);
  t.after(second.stop);
  await until(() => ss.connected && ss.id !== null && ss.id !== firstId, "the reconnect to the restarted server");
  await until(() => echoes.length === 2, "the queued emits");
  assert.deepEqual(echoes, ["queued 1", "queued 2"]);
});
