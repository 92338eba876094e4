// The Redis multihome page: every action of the original example, in text, binary and JSON, against
// whichever instance served the page. Open two instances in two tabs to watch casts cross over Redis.
(function (SS) {
  "use strict";

  var $ = function (id) { return document.getElementById(id); };
  var url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/socket";
  var ss = new SS(url);
  var encoder = new TextEncoder();
  var decoder = new TextDecoder("utf-8"); // replaces invalid bytes with U+FFFD instead of throwing
  var MAX_LOG = 500; // oldest entries go first: a long stress run must not grow the page without end
  var WEIRD_EVERY_MS = 100;
  var WEIRD_FOR_MS = 60000; // the stress toggle stops by itself after this long
  var rooms = new Set(); // rooms this page joined; joined again after a reconnect

  // --- the message log --------------------------------------------------------------------------

  function show(tag, text, kind) {
    var item = document.createElement("li");
    item.className = kind || "received";
    var time = document.createElement("time");
    time.textContent = new Date().toLocaleTimeString();
    var label = document.createElement("span");
    label.className = "tag";
    label.textContent = tag;
    var body = document.createElement("span");
    body.className = "text";
    body.textContent = text; // text, never markup: casts come from other people
    item.append(time, label, body);
    var log = $("messages");
    log.appendChild(item);
    while (log.childElementCount > MAX_LOG) log.removeChild(log.firstElementChild);
    if ($("autoscroll").checked) log.scrollTop = log.scrollHeight;
  }

  function describe(kind, data) {
    if (kind === "bin") {
      return data.byteLength + " bytes: " + decoder.decode(new Uint8Array(data));
    }
    if (kind === "json") return JSON.stringify(data);
    return String(data);
  }

  // Every event the server sends: echo, roomcast, broadcast and socketcast, each as text, bin and json.
  ["echo", "roomcast", "broadcast", "socketcast"].forEach(function (action) {
    [["", "text"], ["bin", "bin"], ["json", "json"]].forEach(function (variant) {
      var event = action + variant[0];
      ss.on(event, function (data) {
        show(event, describe(variant[1], data), action);
      });
    });
  });

  // --- connection state and the instance panel --------------------------------------------------

  function setStatus(text, online) {
    $("status").textContent = text;
    $("status").className = "status " + (online ? "online" : "offline");
  }

  function showRooms() {
    $("rooms").textContent = rooms.size ? Array.from(rooms).sort().join(", ") : "none";
  }

  $("instance").textContent = location.host;

  ss.onHello(function (hello) { // after onConnect: the id comes in the server's first frame
    $("socket-id").textContent = hello.id;
    show("ready", "connected to " + location.host + " as " + hello.id, "notice");
  });
  ss.onConnect(function () {
    setStatus("connected", true);
    rooms.forEach(function (room) { ss.emit("join", room); }); // rooms do not survive a reconnect
    refreshHealth();
  });
  ss.onDisconnect(function () {
    $("socket-id").textContent = "–";
    setStatus("reconnecting…", false);
    show("disconnected", "reconnecting…", "notice");
  });
  ss.onError(function (error) {
    show("error", (error && error.message) || String(error), "error");
  });

  function refreshHealth() {
    fetch("health", { cache: "no-store" })
      .then(function (response) { return response.json(); })
      .then(function (health) {
        var multihome = health.multihome;
        $("backend").textContent = multihome
          ? multihome.backend.state + " (instance " + String(multihome.instance).slice(0, 8) + ")"
          : "none";
        $("sockets").textContent = String(health.sockets);
      })
      .catch(function () {
        $("backend").textContent = "unknown (/health did not answer)";
      });
  }
  setInterval(function () {
    if (!document.hidden) refreshHealth();
  }, 5000);

  // --- actions ----------------------------------------------------------------------------------

  function value(id) { return $(id).value; }

  function send(action, text, room, socketId) {
    switch (action) {
      case "echo": case "broadcast":
        return ss.emit(action, text);
      case "echobin": case "broadcastbin":
        return ss.emit(action, encoder.encode(text)); // UTF-8, unlike the original's Latin-1 charCodeAt
      case "echojson": case "broadcastjson":
        return ss.emit(action, { message: text });
      case "join":
        rooms.add(room);
        showRooms();
        return ss.emit("join", room);
      case "leave":
        rooms.delete(room);
        showRooms();
        return ss.emit("leave", room);
      case "roomcast": // the JSON as text, as the original sent it
        return ss.emit(action, JSON.stringify({ room: room, data: text }));
      case "roomcastbin": // the same JSON as a binary frame
        return ss.emit(action, encoder.encode(JSON.stringify({ room: room, data: text })));
      case "roomcastjson":
        return ss.emit(action, { room: room, data: text });
      case "socketcast":
        return ss.emit(action, JSON.stringify({ socketId: socketId, data: text }));
      case "socketcastbin":
        return ss.emit(action, encoder.encode(JSON.stringify({ socketId: socketId, data: text })));
      case "socketcastjson":
        return ss.emit(action, { socketId: socketId, data: text });
    }
  }

  function fromForm(action) {
    if (action === "join" || action === "leave") {
      var room = value("in-room").trim();
      return room && send(action, "", room);
    }
    if (action.indexOf("echo") === 0) return value("in-echo") && send(action, value("in-echo"));
    if (action.indexOf("broadcast") === 0) return value("in-broadcast") && send(action, value("in-broadcast"));
    if (action.indexOf("roomcast") === 0) {
      var target = value("in-roomcast-room").trim();
      return target && value("in-roomcast-data") && send(action, value("in-roomcast-data"), target);
    }
    var socketId = value("in-socket-id").trim();
    if (!socketId) {
      show("socketcast", "enter a socket id first (another tab's, or yours: Target me)", "error");
      return;
    }
    return value("in-socketcast-data") && send(action, value("in-socketcast-data"), "", socketId);
  }

  document.querySelectorAll("button[data-action]").forEach(function (button) {
    button.addEventListener("click", function () { fromForm(button.dataset.action); });
  });

  $("use-id").addEventListener("click", function () {
    if (ss.id) $("in-socket-id").value = ss.id;
  });
  $("clear").addEventListener("click", function () { $("messages").textContent = ""; });
  setInterval(function () {
    if ($("clear-periodically").checked) $("messages").textContent = "";
  }, 60000);

  // --- Get Weird!: a random action every 100 ms, for at most a minute ---------------------------

  var ROOMS = ["lobby", "attic", "basement", "harbour", "library", "garden", "moon", "kitchen"];
  var PHRASES = [
    "hello from another instance",
    "have you tried turning Redis off and on again?",
    "the cat walked across the keyboard",
    "ça va ? très bien, merci",
    "Grüße aus Köln",
    "こんにちは、世界",
    "🐍 + 🟥 = ✨",
    "ping ping ping",
  ];
  var ACTIONS = [
    "echo", "echobin", "echojson", "join", "leave",
    "roomcast", "roomcastbin", "roomcastjson",
    "broadcast", "broadcastbin", "broadcastjson",
    "socketcast", "socketcastbin", "socketcastjson",
  ];
  var weird = null; // {tick, stopAt} while the stress test runs

  function pick(list) { return list[Math.floor(Math.random() * list.length)]; }

  function weirdTick() {
    var left = weird.stopAt - Date.now();
    if (left <= 0) {
      getNormal("stopped by itself after " + WEIRD_FOR_MS / 1000 + " s");
      return;
    }
    $("weird-left").textContent = Math.ceil(left / 1000) + " s left";
    if (!ss.connected) return; // do not pile up a queue while reconnecting
    var action = pick(ACTIONS);
    // Socketcasts go to the id in the form, else to this page itself: the only id it knows.
    var target = value("in-socket-id").trim() || ss.id;
    send(action, pick(PHRASES), pick(ROOMS), target);
  }

  function getWeird() {
    weird = { stopAt: Date.now() + WEIRD_FOR_MS, tick: setInterval(weirdTick, WEIRD_EVERY_MS) };
    $("weird").textContent = "Get Normal";
    $("weird").setAttribute("aria-pressed", "true");
    show("weird", "a random action every " + WEIRD_EVERY_MS + " ms, for " + WEIRD_FOR_MS / 1000 + " s", "notice");
  }

  function getNormal(why) {
    if (weird === null) return;
    clearInterval(weird.tick);
    weird = null;
    $("weird").textContent = "Get Weird!";
    $("weird").setAttribute("aria-pressed", "false");
    $("weird-left").textContent = "";
    show("normal", why, "notice");
  }

  $("weird").addEventListener("click", function () {
    if (weird === null) getWeird();
    else getNormal("stopped");
  });
})(window.SS);
