"use strict";
// The client over a real WebSocket: the npm `ws` package on both ends, over loopback. This checks what a
// fake cannot: the subprotocol negotiation, binaryType, real close codes and the error events `ws` emits.

const test = require("node:test");
const assert = require("node:assert/strict");
const { once } = require("node:events");
const { WebSocket, WebSocketServer } = require("ws");
const SS = require("../ss.js");

/** A sac-sock server on 127.0.0.1, random port; `onConnection(socket)` runs for each client. */
async function startServer(onConnection) {
  const server = new WebSocketServer({
    host: "127.0.0.1",
    port: 0,
    handleProtocols: (protocols) => (protocols.has("sac-sock") ? "sac-sock" : false),
  });
  const sockets = [];
  server.on("connection", (socket) => {
    sockets.push(socket);
    onConnection(socket);
  });
  await once(server, "listening");
  const url = `ws://127.0.0.1:${server.address().port}/socket`;
  const stop = () =>
    new Promise((resolve) => {
      for (const s of server.clients) s.terminate();
      server.close(resolve);
    });
  return { url, sockets, stop };
}

/** Resolves with the next value `register` hands to its callback. */
function next(register) {
  return new Promise((resolve) => register(resolve));
}

/** A client on the `ws` package; closed when the test ends, pass or fail, so no retry loop outlives it. */
function client(t, url, opts = {}) {
  const errors = [];
  const ss = new SS(url, Object.assign({ WebSocket, reconnectOpts: { base: 5, cap: 20 } }, opts));
  ss.onError((err) => errors.push(err));
  t.after(() => ss.close());
  return { ss, errors };
}

// A hung test fails instead of hanging the run.
const LIMIT = { timeout: 5000 };

test("frames both ways over ws, with the sac-sock subprotocol", LIMIT, async (t) => {
  const received = [];
  const server = await startServer((socket) => {
    assert.equal(socket.protocol, "sac-sock");
    socket.send('__hello\x01J\x02{"v":1,"id":"sock-1","max_message_size":4096}');
    socket.on("message", (data, isBinary) => {
      received.push([isBinary, Buffer.from(data)]);
      if (received.length === 3) {
        socket.send("echo\x01S\x02héllo");
        socket.send(Buffer.from([0x62, 0xc3, 0xa9, 1, 0x42, 2, 0xde, 0xad])); // "bé" B
        socket.send('json\x01J\x02{"a":[1,2]}');
      }
    });
  });
  t.after(server.stop);
  const { ss, errors } = client(t, server.url);
  const got = [];
  const done = new Promise((resolve) => {
    ss.on("echo", (d) => got.push(d));
    ss.on("bé", (d) => got.push(Array.from(new Uint8Array(d))));
    ss.on("json", (d) => {
      got.push(d);
      resolve();
    });
  });
  ss.emit("text", "hi");
  ss.emit("obj", { k: "é" });
  ss.emit("bé", Uint8Array.of(1, 2));
  await next((cb) => ss.onConnect(cb));
  await done;
  assert.equal(ss.id, "sock-1");
  assert.equal(ss.maxMessageSize, 4096);
  assert.deepEqual(got, ["héllo", [0xde, 0xad], { a: [1, 2] }]);
  assert.deepEqual(
    received.map(([bin, buf]) => [bin, bin ? Array.from(buf) : buf.toString("utf8")]),
    [
      [false, "text\x02hi"],
      [false, 'obj\x02{"k":"é"}'],
      [true, [0x62, 0xc3, 0xa9, 2, 1, 2]],
    ],
  );
  ss.close();
  assert.deepEqual(errors, []);
});

test("a 1012 from the server reconnects; a 1000 does not", LIMIT, async (t) => {
  let connections = 0;
  const server = await startServer((socket) => {
    connections++;
    socket.close(connections === 1 ? 1012 : 1000);
  });
  t.after(server.stop);
  const { ss } = client(t, server.url);
  const codes = [];
  const finished = new Promise((resolve) => {
    ss.onDisconnect((ev) => {
      codes.push(ev.code);
      if (ev.code === 1000) resolve();
    });
  });
  await finished;
  assert.deepEqual(codes, [1012, 1000]);
  assert.equal(connections, 2);
  assert.equal(ss.emit("x"), false);
});

test("close() while connecting does not crash on ws's error event", LIMIT, async (t) => {
  const server = await startServer(() => {});
  t.after(server.stop);
  const { ss } = client(t, server.url);
  ss.close(); // ws emits "error" for a close during the handshake: it must have a listener
  await new Promise((resolve) => setTimeout(resolve, 20));
  assert.equal(ss.connected, false);
});

test("with nothing listening, attempts fail and back off until close()", LIMIT, async (t) => {
  const probe = await startServer(() => {});
  const url = probe.url;
  await probe.stop(); // the port is now closed
  const delays = [];
  const { ss, errors } = client(t, url, {
    setTimeout: (fn, ms) => {
      delays.push(ms);
      return setTimeout(fn, 1);
    },
    random: () => 0.999,
    reconnectOpts: { base: 10, cap: 40 },
  });
  while (delays.length < 4) await new Promise((resolve) => setTimeout(resolve, 5));
  ss.close();
  assert.deepEqual(delays.slice(0, 4), [9, 19, 39, 39]);
  assert.ok(errors.every((e) => e.code === "connect_failed"));
});
