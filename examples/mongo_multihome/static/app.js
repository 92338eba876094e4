// The chat page of the MongoDB multihome demo: the chat demo's page, plus the instance it is
// connected to and the instance each line and presence notice comes from.
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
    ss.emit("join", room); // rooms do not survive a reconnect (perhaps to another instance): join again
  });
  ss.onDisconnect(function () { setStatus(false); });
  if (ss.onError) {
    ss.onError(function (error) { show("error: " + (error && error.message || error), "error"); });
  }

  ss.on("welcome", function (w) { $("instance").textContent = w.instance; });
  ss.on("joinedRoom", function (name) {
    room = name;
    $("current-room").textContent = name;
    show("you joined " + name, "notice");
  });
  ss.on("refused", function (text) { show(text, "error"); });
  ss.on("presence", function (p) {
    if (p.room === room) show(p.text + " (on " + p.instance + ")", "notice");
  });
  ss.on("message", function (line) { show("[" + line.instance + "] " + line.text, "message"); });

  $("join-form").addEventListener("submit", function (event) {
    event.preventDefault();
    ss.emit("join", $("room").value.trim() || "global");
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
