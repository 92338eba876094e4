// The chat page. It uses only the API the original Sacrificial-Socket client has (SS, onConnect,
// onDisconnect, on, emit), so it runs with either client; with the typed-ss client it also shows
// errors and the connection state.
(function (SS) {
  "use strict";

  var $ = function (id) { return document.getElementById(id); };
  var url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/socket";
  var ss = new SS(url);
  var room = $("room").value;

  function show(text, kind) {
    var item = document.createElement("li");
    item.className = kind || "message";
    item.textContent = text; // never innerHTML: messages come from other people
    $("messages").appendChild(item);
    item.scrollIntoView({ block: "end" });
  }

  function setStatus(online) {
    $("status").textContent = online ? "connected" : "reconnecting…";
    $("status").className = "status " + (online ? "online" : "offline");
  }

  ss.onConnect(function () {
    setStatus(true);
    ss.emit("join", room); // rooms do not survive a reconnect: join again
  });
  ss.onDisconnect(function () { setStatus(false); });
  if (ss.onError) {
    ss.onError(function (error) { show("error: " + (error && error.message || error), "error"); });
  }

  ss.on("joinedRoom", function (name) {
    room = name;
    $("current-room").textContent = name;
    show("you joined " + name, "notice");
  });
  ss.on("presence", function (p) {
    if (p.room === room) $("members").textContent = "(" + p.members + " here)";
  });
  ss.on("message", function (text) { show(text, "message"); });

  $("join-form").addEventListener("submit", function (event) {
    event.preventDefault();
    room = $("room").value.trim() || "global";
    ss.emit("join", room);
  });
  $("send-form").addEventListener("submit", function (event) {
    event.preventDefault();
    var text = $("text").value.trim();
    if (!text) return;
    ss.emit("message", { Room: room, Message: $("name").value.trim() + ": " + text });
    $("text").value = "";
  });
  $("clear").addEventListener("click", function () { $("messages").textContent = ""; });
})(window.SS);
