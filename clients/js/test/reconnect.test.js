"use strict";
// The reconnect state machine, the backoff, and the send queue. Timers and randomness are injected, so
// nothing here waits for real time.

const test = require("node:test");
const assert = require("node:assert/strict");
const { makeClient, makeClock, makeFakeWebSocket } = require("../test-support/fake.js");

// --- backoff ------------------------------------------------------------------------------------------

test("with the server down, delays grow by the factor and stop at the cap", () => {
  // random() just below 1 shows each attempt's ceiling: base * factor^n, at most cap.
  const { ws, clock, FakeWebSocket } = makeClient({
    reconnectOpts: { base: 100, factor: 2, cap: 1000 },
    random: () => 0.999999,
  });
  for (let i = 0; i < 8; i++) {
    ws().serverClose(1006); // the attempt fails
    assert.equal(clock.pending, 1);
    clock.fire();
  }
  assert.deepEqual(clock.delays, [99, 199, 399, 799, 999, 999, 999, 999]);
  assert.equal(FakeWebSocket.instances.length, 9);
});

test("full jitter: each delay is random() times the ceiling", () => {
  const rolls = [0, 0.5, 0.25, 0.1];
  const { ws, clock } = makeClient({
    reconnectOpts: { intervalMS: 1000, cap: 30000 },
    random: () => rolls.shift(),
  });
  for (let i = 0; i < 4; i++) {
    ws().serverClose(1006);
    clock.fire();
  }
  // ceilings 1000, 2000, 4000, 8000
  assert.deepEqual(clock.delays, [0, 1000, 1000, 800]);
});

test("every delay stays under the cap, whatever random() gives", () => {
  let seed = 42;
  const lcg = () => {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    return seed / 2147483648;
  };
  const { ws, clock } = makeClient({ reconnectOpts: { base: 50, cap: 700, factor: 3 }, random: lcg });
  for (let i = 0; i < 200; i++) {
    ws().serverClose(1006);
    clock.fire();
  }
  assert.equal(clock.delays.length, 200);
  for (const d of clock.delays) {
    assert.ok(d >= 0 && d < 700, `delay ${d}`);
  }
});

test("a connection that stays open resetAfterMS (default 5000) resets the backoff", () => {
  const { ss, ws, clock } = makeClient({ reconnectOpts: { base: 100, cap: 10000 }, random: () => 0.999999 });
  assert.equal(ss.reconnectOpts.resetAfterMS, 5000);
  ws().serverClose(1006);
  clock.fire();
  ws().serverClose(1006);
  clock.fire();
  ws().open();
  clock.advance(5000);
  ws().serverClose(1012);
  assert.deepEqual(clock.delays, [99, 199, 99]);
});

test("a connection closed before resetAfterMS does not reset the backoff", () => {
  // A server whose on_connect fails accepts and then closes at once with 1011: the waits keep growing.
  const { ws, clock, FakeWebSocket } = makeClient({
    reconnectOpts: { base: 100, cap: 1000 },
    random: () => 0.999999,
  });
  for (let i = 0; i < 6; i++) {
    ws().open();
    clock.advance(4999);
    ws().serverClose(1011);
    clock.fire();
  }
  assert.deepEqual(clock.delays, [99, 199, 399, 799, 999, 999]);
  assert.equal(FakeWebSocket.instances.length, 7);
});

test("the backoff starts over after a stable connection, and grows again after it", () => {
  const { ws, clock } = makeClient({
    reconnectOpts: { base: 100, cap: 10000, resetAfterMS: 1000 },
    random: () => 0.999999,
  });
  ws().open();
  ws().serverClose(1011); // at once
  clock.fire();
  ws().open();
  ws().serverClose(1011); // at once
  clock.fire();
  ws().open();
  clock.advance(1000); // stable
  ws().serverClose(1012);
  clock.fire();
  ws().open();
  clock.advance(10);
  ws().serverClose(1011);
  assert.deepEqual(clock.delays, [99, 199, 99, 199]);
});

test("time spent waiting or connecting does not count towards resetAfterMS", () => {
  const { ws, clock } = makeClient({ reconnectOpts: { base: 100, resetAfterMS: 1000 }, random: () => 0.999999 });
  ws().open();
  ws().serverClose(1011);
  clock.advance(5000); // the wait
  clock.fire();
  clock.advance(5000); // the handshake
  ws().open();
  ws().serverClose(1011);
  assert.deepEqual(clock.delays, [99, 199]);
});

test("resetAfterMS 0 resets the backoff after every open", () => {
  const { ws, clock } = makeClient({ reconnectOpts: { base: 100, resetAfterMS: 0 }, random: () => 0.999999 });
  ws().serverClose(1006);
  clock.fire();
  ws().serverClose(1006);
  clock.fire();
  ws().open();
  ws().serverClose(1011);
  assert.deepEqual(clock.delays, [99, 199, 99]);
});

test("the default clock is used when none is injected", () => {
  const { ss, ws, clock } = makeClient({ now: undefined, reconnectOpts: { base: 100 }, random: () => 0.999999 });
  ws().open();
  ws().serverClose(1011); // a real clock: far less than 5000 ms later
  clock.fire();
  ws().open();
  ws().serverClose(1011);
  assert.deepEqual(clock.delays, [99, 199]);
  assert.equal(ss.connected, false);
});

test("failed attempts are reported as connect_failed", () => {
  const { ws, clock, errors } = makeClient();
  ws().serverClose(1006);
  clock.fire();
  ws().serverClose(1006);
  assert.deepEqual(
    errors.map((e) => [e.code, e.closeCode]),
    [
      ["connect_failed", 1006],
      ["connect_failed", 1006],
    ],
  );
});

test("a WebSocket constructor that throws on a retry is reported and retried", () => {
  const Fake = makeFakeWebSocket();
  let failNext = false;
  class Flaky extends Fake {
    constructor(url, protocols) {
      if (failNext) {
        failNext = false;
        throw new Error("too many sockets");
      }
      super(url, protocols);
    }
  }
  const { clock, errors } = makeClient({ WebSocket: Flaky });
  Fake.last().serverClose(1006);
  failNext = true;
  clock.fire(); // this attempt throws
  assert.equal(Fake.instances.length, 1);
  assert.equal(errors.at(-1).code, "connect_failed");
  assert.equal(errors.at(-1).cause.message, "too many sockets");
  assert.equal(clock.pending, 1, "and the next attempt is scheduled");
  clock.fire();
  assert.equal(Fake.instances.length, 2);
});

// --- which close codes reconnect ------------------------------------------------------------------

function closeWith(code) {
  const client = makeClient();
  client.ws().open();
  client.ws().serverClose(code);
  return client;
}

for (const code of [1001, 1006, 1011, 1012, 1013, 1005, 1002, 4008]) {
  test(`reconnects after close code ${code}`, () => {
    const { clock, FakeWebSocket } = closeWith(code);
    assert.equal(clock.pending, 1);
    clock.fire();
    assert.equal(FakeWebSocket.instances.length, 2);
  });
}

for (const code of [1000, 1008, 4000, 4001, 4999, 3000]) {
  test(`does not reconnect after close code ${code}`, () => {
    const { ss, clock, FakeWebSocket } = closeWith(code);
    assert.equal(clock.pending, 0);
    assert.equal(FakeWebSocket.instances.length, 1);
    assert.equal(ss.emit("x", "y"), false, "the client is closed for good");
  });
}

test("1009 reconnects and reports message_too_big", () => {
  const { clock, errors } = closeWith(1009);
  assert.equal(clock.pending, 1);
  assert.deepEqual(
    errors.map((e) => [e.code, e.closeCode]),
    [["message_too_big", 1009]],
  );
});

test("4010 does not reconnect and reports reload_needed", () => {
  const { ss, clock, errors } = closeWith(4010);
  assert.equal(clock.pending, 0);
  assert.deepEqual(
    errors.map((e) => [e.code, e.closeCode]),
    [["reload_needed", 4010]],
  );
  assert.equal(ss.emit("x", "y"), false, "the client is closed for good");
});

test("reconnectCodes adds codes that reconnect, even over the defaults", () => {
  for (const code of [4100, 1000]) {
    const { ws, clock } = makeClient({ reconnectOpts: { reconnectCodes: [4100, 1000] } });
    ws().open();
    ws().serverClose(code);
    assert.equal(clock.pending, 1, `code ${code}`);
  }
});

test("enabled: false never reconnects", () => {
  const { ws, clock, FakeWebSocket } = makeClient({ reconnectOpts: { enabled: false } });
  ws().open();
  ws().serverClose(1012);
  assert.equal(clock.pending, 0);
  assert.equal(FakeWebSocket.instances.length, 1);
});

test("a reconnect attempt opens with the same url and subprotocol", () => {
  const { ws, clock, FakeWebSocket } = closeWith(1012);
  clock.fire();
  assert.equal(FakeWebSocket.instances[1].url, "ws://test/socket");
  assert.equal(ws().protocols, "sac-sock");
  assert.equal(ws().binaryType, "arraybuffer");
});

test("close() during the backoff wait cancels the reconnect", () => {
  const { ss, ws, clock, FakeWebSocket } = makeClient();
  let connects = 0;
  ss.onConnect(() => connects++);
  ws().open();
  ws().serverClose(1006);
  assert.equal(clock.pending, 1);
  ss.close();
  assert.equal(clock.pending, 0);
  assert.equal(clock.fire(), 0);
  assert.equal(FakeWebSocket.instances.length, 1);
  assert.equal(connects, 1);
});

test("events from a replaced WebSocket are ignored", () => {
  const { ss, clock, FakeWebSocket } = makeClient();
  const got = [];
  ss.on("x", (d) => got.push(d));
  const first = FakeWebSocket.last();
  first.open();
  first.serverClose(1006);
  clock.fire();
  first.receive("x\x01S\x02stale");
  first.onclose({ code: 1000 });
  assert.deepEqual(got, []);
  assert.equal(clock.pending, 0);
  assert.equal(FakeWebSocket.instances.length, 2);
});

// --- onConnect / onDisconnect semantics -------------------------------------------------------------

test("onDisconnect fires once per connected->disconnected transition, not for failed attempts", () => {
  const { ss, ws, clock } = makeClient();
  const log = [];
  ss.onConnect(() => log.push("connect"));
  ss.onDisconnect((ev) => log.push(`disconnect ${ev.code}`));
  ws().serverClose(1006); // the first attempt fails: nothing
  clock.fire();
  ws().open();
  ws().serverClose(1012);
  clock.fire();
  ws().serverClose(1006); // failed attempt
  clock.fire();
  ws().serverClose(1006); // failed attempt
  clock.fire();
  ws().open();
  ss.close();
  ws().finishClose();
  assert.deepEqual(log, ["connect", "disconnect 1012", "connect", "disconnect 1000"]);
});

test("onDisconnect never fires when no connection ever succeeded", () => {
  const { ss, ws } = makeClient({ reconnectOpts: { enabled: false } });
  let disconnects = 0;
  ss.onDisconnect(() => disconnects++);
  ws().serverClose(1006);
  assert.equal(disconnects, 0);
});

test("replayOnConnect true: onConnect runs on every reconnect", () => {
  const { ss, ws, clock } = makeClient();
  let connects = 0;
  ss.onConnect(() => connects++);
  ws().open();
  ws().serverClose(1012);
  clock.fire();
  ws().open();
  assert.equal(connects, 2);
});

test("replayOnConnect false: onConnect runs only on the first successful connection", () => {
  const { ss, ws, clock } = makeClient({ reconnectOpts: { replayOnConnect: false } });
  let connects = 0;
  ss.onConnect(() => connects++);
  ws().serverClose(1006); // the first connection comes through a retry: it still counts as the first
  clock.fire();
  ws().open();
  ws().serverClose(1012);
  clock.fire();
  ws().open();
  assert.equal(connects, 1);
  assert.equal(ss.connected, true);
});

test("onDisconnect can call close() to stop reconnecting", () => {
  const { ss, ws, clock } = makeClient();
  ss.onDisconnect(function () {
    this.close();
  });
  ws().open();
  ws().serverClose(1012);
  assert.equal(clock.pending, 0);
});

// --- the send queue -------------------------------------------------------------------------------

test("emits while connecting are queued and flushed in order on open", () => {
  const { ss, ws } = makeClient();
  assert.equal(ss.emit("a", "1"), true);
  assert.equal(ss.emit("b", { n: 2 }), true);
  assert.equal(ss.emit("c", Uint8Array.of(3)), true);
  assert.deepEqual(ws().sent, []);
  ws().open();
  assert.equal(ws().sent.length, 3);
  assert.deepEqual(ws().sent.slice(0, 2), ["a\x021", 'b\x02{"n":2}']);
  assert.deepEqual(Array.from(new Uint8Array(ws().sent[2])), [0x63, 2, 3]);
});

test("emits while reconnecting are queued for the next connection", () => {
  const { ss, ws, clock } = makeClient();
  ws().open();
  ws().serverClose(1006);
  ss.emit("during-wait", "1");
  clock.fire();
  ss.emit("during-connect", "2");
  ws().open();
  assert.deepEqual(ws().sent, ["during-wait\x021", "during-connect\x022"]);
});

test("what onConnect sends goes before the queue", () => {
  const { ss, ws } = makeClient();
  ss.onConnect(function () {
    this.emit("join", "room");
  });
  ss.emit("message", "hi");
  ws().open();
  assert.deepEqual(ws().sent, ["join\x02room", "message\x02hi"]);
});

test("the queue is snapshotted: later changes to the data do not leak in", () => {
  const { ss, ws } = makeClient();
  const data = { v: 1 };
  ss.emit("a", data);
  data.v = 2;
  ws().open();
  assert.deepEqual(ws().sent, ['a\x02{"v":1}']);
});

test("overflow drops the oldest and reports it", () => {
  const { ss, ws, errors } = makeClient({ maxQueue: 3 });
  for (let i = 1; i <= 5; i++) {
    assert.equal(ss.emit("n", String(i)), true);
  }
  assert.deepEqual(
    errors.map((e) => [e.code, e.event, e.data]),
    [
      ["queue_overflow", "n", "1"],
      ["queue_overflow", "n", "2"],
    ],
  );
  ws().open();
  assert.deepEqual(ws().sent, ["n\x023", "n\x024", "n\x025"]);
});

test("the default queue bound is 1000", () => {
  const { ss, ws, errors } = makeClient();
  for (let i = 0; i < 1001; i++) ss.emit("n", String(i));
  assert.equal(errors.length, 1);
  ws().open();
  assert.equal(ws().sent.length, 1000);
  assert.equal(ws().sent[0], "n\x021");
});

test("maxQueue 0 drops every emit made while not connected", () => {
  const { ss, ws, errors } = makeClient({ maxQueue: 0 });
  assert.equal(ss.emit("a", "1"), false);
  ws().open();
  assert.deepEqual(ws().sent, []);
  assert.equal(errors[0].code, "not_connected");
});

test("volatile emits are dropped when not connected and sent when connected", () => {
  const { ss, ws, errors, clock } = makeClient();
  assert.equal(ss.emit("cursor", { x: 1 }, { volatile: true }), false);
  ws().open();
  assert.equal(ss.emit("cursor", { x: 2 }, { volatile: true }), true);
  ws().serverClose(1006);
  assert.equal(ss.emit("cursor", { x: 3 }, { volatile: true }), false);
  clock.fire();
  ws().open();
  assert.deepEqual(ws().sent, []);
  assert.deepEqual(
    errors.map((e) => [e.code, e.data && e.data.x]),
    [
      ["not_connected", 1],
      ["not_connected", 3],
    ],
  );
});

test("queued emits are dropped and reported when the client closes for good", () => {
  const { ss, ws, errors } = makeClient();
  ws().open();
  ws().serverClose(1006);
  ss.emit("a", "1");
  ss.emit("b", "2");
  ss.close();
  assert.equal(errors.length, 1);
  assert.equal(errors[0].code, "closed");
  assert.deepEqual(errors[0].dropped, [
    { event: "a", data: "1" },
    { event: "b", data: "2" },
  ]);
});

test("queued emits are dropped when the server closes with a final code", () => {
  const { ss, ws, errors } = makeClient();
  ss.emit("a", "1");
  ws().open();
  ws().readyState = 2; // closing: no longer connected, so this emit is queued
  ss.emit("b", "2");
  ws().serverClose(1008);
  assert.deepEqual(
    errors.map((e) => e.code),
    ["closed"],
  );
  assert.deepEqual(errors[0].dropped, [{ event: "b", data: "2" }]);
});

test("queued emits are checked again at flush against the current size limit", () => {
  const { ss, ws, clock, errors } = makeClient();
  ws().open();
  ws().receive('__hello\x01J\x02{"v":1,"id":"i","max_message_size":1000}');
  ws().serverClose(1012);
  ss.emit("small", "x");
  ss.emit("big", "x".repeat(100));
  ss.maxMessageSize = 10; // as if a __hello had lowered it meanwhile
  clock.fire();
  ws().open();
  assert.deepEqual(ws().sent, ["small\x02x"]);
  assert.deepEqual(
    errors.map((e) => [e.code, e.event]),
    [["too_big", "big"]],
  );
});

test("a queued text emit is measured in UTF-8 bytes when the limit shrinks", () => {
  const { ss, ws, clock, errors } = makeClient();
  ws().open();
  ws().receive('__hello\x01J\x02{"v":1,"id":"i","max_message_size":100}');
  ws().serverClose(1012);
  ss.emit("e", "é".repeat(10)); // 12 code units, 22 bytes: fits 100 without being counted
  ss.maxMessageSize = 15; // between the two counts
  clock.fire();
  ws().open();
  assert.deepEqual(ws().sent, []);
  assert.deepEqual(
    errors.map((e) => [e.code, e.size, e.limit]),
    [["too_big", 22, 15]],
  );
});

test("a close() from onConnect stops the flush", () => {
  const { ss, ws, errors } = makeClient();
  ss.onConnect(function () {
    this.close();
  });
  ss.emit("a", "1");
  ws().open();
  assert.deepEqual(ws().sent, []);
  ws().finishClose();
  assert.equal(errors.at(-1).code, "closed");
});

test("injected timer and random functions are called unbound, as a browser's setTimeout needs", () => {
  const thisValues = [];
  const record = (fn) =>
    function (...args) {
      thisValues.push(this);
      return fn(...args);
    };
  const clock = makeClock();
  const { ss, ws } = makeClient({
    setTimeout: record(clock.setTimeout),
    clearTimeout: record(clock.clearTimeout),
    random: record(() => 0.5),
    now: record(clock.now),
  });
  ws().open(); // now
  ws().serverClose(1006); // now, random, then setTimeout
  ss.close(); // clearTimeout
  assert.deepEqual(thisValues, [undefined, undefined, undefined, undefined, undefined]);
});
